import CoreMetrics
import Foundation
import Logging
import Prometheus
@testable import SundialMetricsServer
import SundialObservability
import Testing

/// Issue 13: the operations listener's answers, counters mirrored from totals, bounded queue
/// labels, and JSON log lines — pure parts, without a process or a socket.
@Suite("Operations: /metrics, health, JSON logs")
struct OperationsEndpointTests {
    @Test func routesAnswerMetricsHealthAndReadiness() {
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(name: "sundial_test_total").increment(by: Int64(3))
        let (status, type, body) = MetricsEndpoint.route(method: "GET", target: "/metrics", registry: registry, ready: { true })
        #expect(status == "200 OK" && type.hasPrefix("text/plain; version=0.0.4"))
        #expect(String(decoding: body, as: UTF8.self).contains("sundial_test_total 3"))
        #expect(MetricsEndpoint.route(method: "GET", target: "/healthz", registry: registry, ready: { false }).0 == "200 OK")
        #expect(MetricsEndpoint.route(method: "GET", target: "/readyz", registry: registry, ready: { true }).0 == "200 OK")
        #expect(MetricsEndpoint.route(method: "GET", target: "/readyz?x=1", registry: registry, ready: { false }).0.hasPrefix("503"))
        #expect(MetricsEndpoint.route(method: "POST", target: "/metrics", registry: registry, ready: { true }).0.hasPrefix("405"))
        #expect(MetricsEndpoint.route(method: "GET", target: "/nope", registry: registry, ready: { true }).0.hasPrefix("404"))
        #expect(MetricsEndpoint.Configuration(address: "127.0.0.1:9464").parsed?.port == 9464)
        #expect(MetricsEndpoint.Configuration(address: "nonsense").parsed == nil)
        #expect(MetricsEndpoint.Configuration(address: "127.0.0.1:99999").parsed == nil)
    }

    @Test func queueLabelsAreBounded() {
        let budget = LabelBudget(maximumQueues: 2)
        #expect(budget.queue("a") == "a" && budget.queue("b") == "b" && budget.queue("c") == "other")
        #expect(budget.queue("a") == "a")
        #expect(budget.bounded([("tier", "new"), ("queue", "d")]).map(\.1) == ["new", "other"])
    }

    @Test func jsonLogLinesCarryLevelTimeServiceInstanceAndMetadata() throws {
        let line = JSONLogHandler.line(
            time: Date(timeIntervalSince1970: 1_800_000_000.25), level: .warning, service: "dispatcher", instance: "h:1",
            logger: "sundial", message: "a \"quoted\"\nmessage", source: "SundialDispatcher",
            metadata: ["queue": "emails", "n": .stringConvertible(3), "list": ["a", "b"]])
        #expect(line.hasSuffix("\n") && line.dropLast().contains("\n") == false)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["level"] as? String == "warning")
        #expect(object["service"] as? String == "dispatcher" && object["instance"] as? String == "h:1")
        #expect(object["message"] as? String == "a \"quoted\"\nmessage")
        #expect((object["time"] as? String)?.hasPrefix("2027-01-15T08:00:00.25") == true)
        let metadata = try #require(object["metadata"] as? [String: Any])
        #expect(metadata["queue"] as? String == "emails" && metadata["n"] as? String == "3")
        #expect(metadata["list"] as? [String] == ["a", "b"])
    }
}
