#if canImport(Glibc)
    import Glibc
#endif
import Foundation
import SundialContract
import SundialExecutor
import SundialLocalCluster
import SundialProto
import SundialTestSupport
import Testing

/// Issue 13: a real `sundial serve` process serves /metrics, /healthz and /readyz; every metric
/// the Grafana dashboard and the alert rules query is among what it serves after some work;
/// no series is labelled by tenant; and `SUNDIAL_LOG_FORMAT=json` writes one JSON object per line.
@Suite("Integration: metrics and health of a live process", .serialized)
struct MetricsIntegrationTests {
    static var binary: URL { TestNATS.packageRoot.appendingPathComponent(".build/debug/sundial") }

    /// `GET path` on loopback: (status code, body). A small client of our own (one request,
    /// `Connection: close`), bounded to 2 s.
    static func get(port: Int, _ path: String) -> (Int, String)? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return nil }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
            return nil
        }
        var response = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while response.count < 64 << 20 {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            response.append(contentsOf: chunk[..<n])
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let statusLine = text.split(separator: "\r\n").first, let code = Int(statusLine.split(separator: " ").dropFirst().first ?? ""),
            let bodyStart = text.range(of: "\r\n\r\n")
        else { return nil }
        return (code, String(text[bodyStart.upperBound...]))
    }

    /// Metric names (`sundial_…`) a deploy file queries.
    static func names(in file: String) throws -> Set<String> {
        let text = try String(contentsOf: TestNATS.packageRoot.appendingPathComponent(file), encoding: .utf8)
        let regex = try NSRegularExpression(pattern: "\\bsundial_[a-z0-9_]+")
        let matches = regex.matches(in: text, range: NSRange(text.startIndex..., in: text))
        return Set(matches.compactMap { Range($0.range, in: text).map { String(text[$0]) } })
    }

    @Test("a live process serves every metric the dashboard and the alert rules use; health and JSON logs")
    func liveMetrics() async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binary.path) else {
            throw TestFailure("\(Self.binary.path) missing: `make test` builds it before running the tests")
        }
        var options = TestSystem.Options()
        // A server of its own: the process's services answer `$SRV` discovery, which is not
        // namespaced, and must not answer other tests' discovery requests.
        let server = try await TestNATS.privateServer()  // stopped at the end, or at exit
        options.nats = server
        options.ingest = false
        options.planner = false
        options.dispatcher = false
        try await withTestSystem("metrics", options) { system in
            let port = try FreePort.allocate()
            let logs = try TestPostgres.temporaryDirectory("metrics-logs").appendingPathComponent("serve.log")
            let env = try await system.serviceEnvironment([
                "SUNDIAL_METRICS_ADDRESS": "127.0.0.1:\(port)", "SUNDIAL_LOG_FORMAT": "json",
                "SUNDIAL_LOG_LEVEL": "info", "SUNDIAL_GOVERNOR_CAPACITY": "100", "SUNDIAL_GOVERNOR_PERIOD": "200ms",
                "SUNDIAL_GOVERNOR_LEASE_TTL": "1s",
            ])
            let process = try ChildProcess.spawn(
                executable: Self.binary.path, arguments: ["serve"], environment: env, output: .file(logs.path))
            do {
                try await eventually("/healthz answers", timeout: .seconds(30)) { Self.get(port: port, "/healthz")?.0 == 200 }
                try await eventually("/readyz is ready", timeout: .seconds(30)) { Self.get(port: port, "/readyz")?.0 == 200 }
                // Some work: a timer fired, dispatched, executed; a refused request.
                let worker = try await system.worker(queue: "metrics")
                let client = system.client(tenant: "acme")
                try await eventually("ingest answers", timeout: .seconds(20)) { (try? await client.raw(.get, [])) != nil }
                let created = try await client.create(.delay(.milliseconds(500), queue: "metrics", payload: "m"))
                let jobs = try await collectJobs(worker, count: 1, timeout: .seconds(20))
                #expect(jobs.first?.0.timerID == created.timer.id)
                if let job = jobs.first?.0 { try await worker.complete(job) }
                _ = try? await client.get("not-a-timer-id")

                let wanted = try Self.names(in: "deploy/prometheus/sundial-alerts.yml")
                    .union(Self.names(in: "deploy/grafana/sundial-dashboard.json"))
                #expect(wanted.count >= 20, "\(wanted.sorted())")
                @Sendable func missing() -> Set<String>? {
                    guard let (code, body) = Self.get(port: port, "/metrics"), code == 200 else { return nil }
                    let served = Set(body.split(separator: "\n").filter { !$0.hasPrefix("#") }.map {
                        String($0.prefix { $0 != "{" && $0 != " " })
                    })
                    return wanted.subtracting(served)
                }
                do {
                    try await eventually("every metric the dashboard and the rules use is served", timeout: .seconds(40)) {
                        missing()?.isEmpty == true
                    }
                } catch {
                    Issue.record("not served: \(missing()?.sorted() ?? ["(no answer)"])")
                    throw error
                }
                // The job's success is mirrored within a sampling period (5 s).
                try await eventually("the success is counted", timeout: .seconds(20)) {
                    Self.get(port: port, "/metrics")?.1.contains("sundial_results_total{outcome=\"succeeded\"} 1") == true
                }
                let body = Self.get(port: port, "/metrics")?.1 ?? ""
                #expect(!body.contains("tenant="), "no series is labelled by tenant")
                #expect(body.contains("sundial_requests_total{method=\"Create\",code=\"200\"}") || body.contains("sundial_requests_total{code=\"200\",method=\"Create\"}"))
            } catch {
                process.signal(SIGKILL)
                _ = await process.waitForExit()
                throw error
            }
            process.signal(SIGTERM)
            #expect(await process.waitForExit() == 0)
            let lines = try String(contentsOf: logs, encoding: .utf8).split(separator: "\n")
            #expect(!lines.isEmpty)
            for line in lines.prefix(50) {
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                #expect(object?["level"] != nil && object?["time"] != nil && object?["instance"] != nil)
                #expect(object?["service"] as? String == "ingest+planner+dispatcher+governor")
            }
        }
        await server.stop()
    }
}
