import CoreMetrics
import Prometheus
import SundialObservability

/// Installs Prometheus as the process's swift-metrics backend (once, at the server entry
/// point) with Sundial's histogram buckets, and returns the registry `MetricsEndpoint` serves.
public enum MetricsBootstrap {
    public static func prometheus() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [
            MetricName.fireLag: MetricName.lagBuckets,
            MetricName.requestDuration: MetricName.requestBuckets,
        ]
        MetricsSystem.bootstrap(factory)
        return registry
    }
}
