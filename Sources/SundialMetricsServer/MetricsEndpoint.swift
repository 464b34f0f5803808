#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Foundation
import Logging
import Prometheus
import ServiceLifecycle
import Synchronization
import SundialThreads

/// The process's HTTP listener for operations: `GET /metrics` (Prometheus text),
/// `/healthz` (the process runs) and `/readyz` (`ready()`: the caller's judgement — for the
/// services, connected to NATS, Postgres not failing fast, and the services launched).
/// Deliberately tiny — one connection at a time on a dedicated thread, `Connection: close`,
/// a request of at most 8 KiB read within 2 s in all — because its only clients are a scraper
/// and a kubelet; a framework would double the clean build.
public final class MetricsEndpoint: Service, Sendable {
    public struct Configuration: Sendable {
        /// `host:port`; port 0 picks a free one (see `boundPort`).
        public var address: String
        public init(address: String = "0.0.0.0:9464") {
            self.address = address
        }

        /// (host, port) or nil when malformed.
        public var parsed: (host: String, port: UInt16)? {
            guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]) else {
                return nil
            }
            let host = String(address[..<colon])
            return (host.isEmpty ? "0.0.0.0" : host, port)
        }
    }

    public enum EndpointError: Error, CustomStringConvertible {
        case address(String)
        case socket(String, Int32)
        public var description: String {
            switch self {
            case .address(let a): "metrics address \(a) is not host:port with an IPv4 host"
            case .socket(let what, let errno): "metrics listener: \(what) failed (errno \(errno))"
            }
        }
    }

    private let registry: PrometheusCollectorRegistry
    private let ready: @Sendable () -> Bool
    private let logger: Logger
    private let fd: Int32
    /// The port bound (the configured one, or the one picked for port 0).
    public let boundPort: UInt16
    private let host: String
    private let stopping = Atomic<Bool>(false)
    private let thread = DedicatedThread(name: "sundial-metrics-http")

    /// Binds at once, so a taken port is a startup error, not a silent gap in monitoring.
    public init(
        configuration: Configuration, registry: PrometheusCollectorRegistry, logger: Logger,
        ready: @escaping @Sendable () -> Bool
    ) throws {
        guard let (host, port) = configuration.parsed else { throw EndpointError.address(configuration.address) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { throw EndpointError.address(configuration.address) }
        #if canImport(Glibc)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
            let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw EndpointError.socket("socket", errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            let code = errno
            close(fd)
            throw EndpointError.socket("bind/listen on \(configuration.address)", code)
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        // Non-blocking: a connection aborted between poll and accept must not block the loop.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        self.fd = fd
        self.boundPort = UInt16(bigEndian: actual.sin_port)
        self.host = host
        self.registry = registry
        self.ready = ready
        self.logger = logger
    }

    public func run() async throws {
        logger.info("metrics on http://\(host):\(boundPort)/metrics (also /healthz, /readyz)")
        let serving = Task { [self] in
            await thread.run { self.serve() }
        }
        // Stop on a graceful shutdown and on cancellation (another service of the group ended):
        // the serving thread is not a child task, so cancellation must be passed on by hand.
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await serving.value
            } onGracefulShutdown: { [self] in
                stopping.store(true, ordering: .releasing)
            }
        } onCancel: { [self] in
            stopping.store(true, ordering: .releasing)
        }
        // A cancelled task (no graceful shutdown) must stop the loop too.
        stopping.store(true, ordering: .releasing)
        await serving.value
        close(fd)
        thread.shutdown()
    }

    /// The accept loop: polls so a stop is noticed within 200 ms.
    private func serve() {
        while !stopping.load(ordering: .acquiring) {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 200) > 0 else { continue }
            let client = accept(fd, nil, nil)
            guard client >= 0 else {
                // Out of descriptors (or similar): the connection stays queued and poll would
                // return at once, so wait a little instead of spinning.
                if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { usleep(100_000) }
                continue
            }
            var timeout = timeval(tv_sec: 0, tv_usec: 500_000)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            answer(client)
            close(client)
        }
    }

    private func answer(_ client: Int32) {
        var request = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 2048)
        // The whole request within 2 s (each read waits at most 0.5 s): a client that trickles
        // bytes cannot hold the listener longer.
        let deadline = ContinuousClock.now + .seconds(2)
        while request.count < 8192, ContinuousClock.now < deadline {
            let n = chunk.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            request.append(contentsOf: chunk[..<n])
            if request.firstRange(of: [13, 10, 13, 10]) != nil { break }  // end of the header
        }
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self).split(separator: " ")
        let (status, type, body) = Self.route(
            method: line.first.map(String.init) ?? "", target: line.count > 1 ? String(line[1]) : "",
            registry: registry, ready: ready)
        var head = "HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        head.makeContiguousUTF8()
        write(client, Array(head.utf8) + body)
    }

    private func write(_ client: Int32, _ bytes: [UInt8]) {
        var offset = 0
        // The whole answer within 2 s (each send waits at most 0.5 s): a client that reads
        // slowly cannot hold the listener longer.
        let deadline = ContinuousClock.now + .seconds(2)
        while offset < bytes.count, ContinuousClock.now < deadline {
            let n = bytes[offset...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return }
            offset += n
        }
    }

    /// What a request gets (pure, for tests): status line, content type, body.
    static func route(
        method: String, target: String, registry: PrometheusCollectorRegistry, ready: () -> Bool
    ) -> (String, String, [UInt8]) {
        let path = target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? target
        guard method == "GET" || method == "HEAD" else {
            return ("405 Method Not Allowed", "text/plain", Array("GET only\n".utf8))
        }
        switch path {
        case "/metrics":
            var out: [UInt8] = []
            registry.emit(into: &out)
            return ("200 OK", "text/plain; version=0.0.4; charset=utf-8", method == "HEAD" ? [] : out)
        case "/healthz":
            return ("200 OK", "text/plain", Array("ok\n".utf8))
        case "/readyz":
            return ready()
                ? ("200 OK", "text/plain", Array("ready\n".utf8))
                : ("503 Service Unavailable", "text/plain", Array("not ready: NATS or Postgres unreachable, or starting\n".utf8))
        default:
            return ("404 Not Found", "text/plain", Array("/metrics, /healthz, /readyz\n".utf8))
        }
    }
}
