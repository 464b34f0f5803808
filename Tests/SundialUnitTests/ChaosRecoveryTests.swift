import Testing

@testable import SundialBench

/// How long a fault hurt, as `sundial bench chaos` reports it.
struct ChaosRecoveryTests {
    typealias Sample = ChaosRecovery.Sample

    @Test func noBadSampleInTheWindowIsNoHarm() {
        let samples = [Sample(at: 5, good: false), Sample(at: 12, good: true), Sample(at: 31, good: false)]
        #expect(ChaosRecovery.seconds(faultAt: 10, windowEnd: 30, samples: samples) == 0)
    }

    @Test func recoveryEndsAtTheLastBadSample() {
        let samples = [
            Sample(at: 10.5, good: false), Sample(at: 11, good: true), Sample(at: 14.25, good: false),
            Sample(at: 15, good: true), Sample(at: 25, good: true),
        ]
        #expect(ChaosRecovery.seconds(faultAt: 10, windowEnd: 30, samples: samples) == 4.25)
    }

    @Test func harmUntilTheWindowEndsIsNotARecovery() {
        let tooLate = [Sample(at: 11, good: false), Sample(at: 28, good: false), Sample(at: 29, good: true)]
        #expect(ChaosRecovery.seconds(faultAt: 10, windowEnd: 30, samples: tooLate) == nil)
        // Settled long enough, but nothing good was seen after it: not shown to recover either.
        let silent = [Sample(at: 11, good: false)]
        #expect(ChaosRecovery.seconds(faultAt: 10, windowEnd: 30, samples: silent) == nil)
        #expect(ChaosRecovery.seconds(faultAt: 10, windowEnd: 30, settle: 1, samples: tooLate) == 18)
    }
}
