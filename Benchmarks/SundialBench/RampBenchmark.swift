import Foundation

/// Raises the create rate step by step against a running Sundial — each step a spine run of
/// `stepSeconds` worth of timers — until a step breaks a limit (fire lag, create latency, the
/// rate it could not reach, a lost timer), and reports the knee: the last rate that held.
public struct RampBenchmark: Sendable {
    public struct Limits: Sendable, Codable {
        public var fireLagP95Ms = 500.0
        public var fireLagP99Ms = 1000.0
        public var createP99Ms = 50.0
        /// A step whose achieved create rate is below this share of the asked one broke.
        public var achievedShare = 0.95

        public init() {}
    }

    public struct Parameters: Sendable {
        public var spine: SpineBenchmark.Parameters
        public var startRate = 500.0
        public var stepRate = 500.0
        public var maxRate = 6000.0
        public var stepSeconds = 30.0
        public var limits = Limits()

        public init(spine: SpineBenchmark.Parameters) { self.spine = spine }

        /// The rates tried, in order.
        public var rates: [Double] {
            guard startRate > 0, stepRate > 0, maxRate >= startRate else { return [] }
            return Array(stride(from: startRate, through: maxRate, by: stepRate))
        }
    }

    public struct Step: Sendable, Codable {
        public var askedRate: Double
        public var report: SpineBenchmark.Report
        /// Why the step broke, nil if it held.
        public var broke: String?
    }

    public struct Report: Sendable, Codable {
        public var limits: Limits
        public var steps: [Step]
        /// The highest asked rate that held every limit; nil if the first step broke.
        public var kneeRate: Double?
    }

    public let parameters: Parameters

    public init(_ parameters: Parameters) { self.parameters = parameters }

    /// The limits a step's report breaks, in words; nil if it held them all.
    public static func breach(_ report: SpineBenchmark.Report, askedRate: Double, limits: Limits) -> String? {
        var broken: [String] = []
        if report.lost > 0 { broken.append("\(report.lost) lost") }
        if report.createRatePerSecondAchieved < askedRate * limits.achievedShare {
            broken.append(String(format: "achieved %.0f of %.0f creates/s", report.createRatePerSecondAchieved, askedRate))
        }
        if report.createLatencyMs.p99 > limits.createP99Ms {
            broken.append(String(format: "create p99 %.0f ms > %.0f", report.createLatencyMs.p99, limits.createP99Ms))
        }
        if report.fireLagMs.p95 > limits.fireLagP95Ms {
            broken.append(String(format: "fire lag p95 %.0f ms > %.0f", report.fireLagMs.p95, limits.fireLagP95Ms))
        }
        if report.fireLagMs.p99 > limits.fireLagP99Ms {
            broken.append(String(format: "fire lag p99 %.0f ms > %.0f", report.fireLagMs.p99, limits.fireLagP99Ms))
        }
        return broken.isEmpty ? nil : broken.joined(separator: "; ")
    }

    /// Runs the steps until one breaks (or the last rate held).
    public func run(progress: @Sendable (String) -> Void) async throws -> Report {
        let p = parameters
        var steps: [Step] = []
        var knee: Double?
        for rate in p.rates {
            var spine = p.spine
            spine.rate = rate
            spine.count = max(1, Int(rate * p.stepSeconds))
            spine.queue = "\(p.spine.queue)-\(Int(rate))"
            progress(String(format: "step: %.0f creates/s for %.0f s", rate, p.stepSeconds))
            let report = try await SpineBenchmark(spine).run { progress("  " + $0) }
            let broke = Self.breach(report, askedRate: rate, limits: p.limits)
            steps.append(Step(askedRate: rate, report: report, broke: broke))
            progress(Self.row(steps.last!))
            if broke != nil { break }
            knee = rate
        }
        return Report(limits: p.limits, steps: steps, kneeRate: knee)
    }

    static func row(_ step: Step) -> String {
        let r = step.report
        return String(
            format: "%6.0f  %8.0f  %8.1f  %8.1f  %8.1f  %5d  %@", step.askedRate, r.createRatePerSecondAchieved,
            r.createLatencyMs.p99, r.fireLagMs.p95, r.fireLagMs.p99, r.lost, step.broke ?? "held")
    }
}

extension RampBenchmark.Report {
    public var text: String {
        var lines = ["  asked  achieved  create99   lag p95   lag p99   lost  verdict (ms)"]
        lines += steps.map(RampBenchmark.row)
        if let knee = kneeRate {
            lines.append(String(format: "knee: %.0f creates/s held every limit", knee))
        } else {
            lines.append("knee: none — the first step already broke a limit")
        }
        let cpu = steps.last(where: { $0.broke == nil })?.report.cpuSecondsPer1000Timers
        if let cpu, !cpu.isEmpty { lines.append("CPU at the knee:\n" + ProcessCPU.table(cpu)) }
        return lines.joined(separator: "\n")
    }
}
