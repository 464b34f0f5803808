import Testing

@testable import SundialBench

/// The ramp benchmark's verdicts: which step broke which limit, and the rates it tries.
struct RampBenchmarkTests {
    static func report(achieved: Double, createP99: Double, lagP95: Double, lagP99: Double, lost: Int = 0)
        -> SpineBenchmark.Report
    {
        SpineBenchmark.Report(
            scenario: "test", machine: "test", created: 1000, createErrors: 0, createRatePerSecondAchieved: achieved,
            createLatencyMs: .init([1, createP99]), received: 1000 - lost, lost: lost, duplicates: 0, tenants: 1,
            createdBeyondHorizon: nil, fireLagMs: .init([lagP95, lagP99]), workStreamLagMs: nil, reportedLagMs: nil,
            dispatchThroughputPerSecondPeak: 0, lagOverTime: [], cpuSecondsPer1000Timers: nil)
    }

    @Test func aStepWithinEveryLimitHolds() {
        let held = Self.report(achieved: 990, createP99: 40, lagP95: 300, lagP99: 300)
        #expect(RampBenchmark.breach(held, askedRate: 1000, limits: .init()) == nil)
    }

    @Test func eachLimitBreaksAStepOnItsOwn() throws {
        let limits = RampBenchmark.Limits()
        let cases: [(SpineBenchmark.Report, String)] = [
            (Self.report(achieved: 900, createP99: 40, lagP95: 300, lagP99: 300), "achieved 900 of 1000"),
            (Self.report(achieved: 1000, createP99: 60, lagP95: 300, lagP99: 300), "create p99 60 ms"),
            (Self.report(achieved: 1000, createP99: 40, lagP95: 600, lagP99: 600), "fire lag p95 600 ms"),
            (Self.report(achieved: 1000, createP99: 40, lagP95: 1200, lagP99: 1200), "fire lag p99 1200 ms"),
            (Self.report(achieved: 1000, createP99: 40, lagP95: 300, lagP99: 300, lost: 1), "1 lost"),
        ]
        for (report, expected) in cases {
            let verdict = try #require(RampBenchmark.breach(report, askedRate: 1000, limits: limits))
            #expect(verdict.contains(expected), "\(verdict)")
        }
    }

    @Test func ratesClimbFromStartToMaxByStep() {
        var parameters = RampBenchmark.Parameters(spine: .init(natsURL: "nats://127.0.0.1:1"))
        parameters.startRate = 500
        parameters.stepRate = 750
        parameters.maxRate = 2500
        #expect(parameters.rates == [500, 1250, 2000])
        parameters.maxRate = 100
        #expect(parameters.rates.isEmpty)
    }
}
