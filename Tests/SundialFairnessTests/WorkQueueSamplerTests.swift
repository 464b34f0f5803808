import Testing

@testable import SundialFairness

@Suite("WorkQueueSampler: each queue measured from its own live executors")
struct WorkQueueSamplerTests {
    typealias Sampler = WorkQueueSampler<ManualClock>
    typealias Consumer = Sampler.Consumer

    static func consumer(
        _ queue: String, pending: UInt64 = 0, ackPending: UInt64 = 0, waiting: UInt64 = 0, ackFloor: UInt64 = 0
    ) -> Consumer {
        Consumer(name: "executor-\(queue)", queue: queue, pending: pending, ackPending: ackPending, waiting: waiting, ackFloor: ackFloor)
    }

    @Test func aQueueNobodyTakesFromIsCountedNotMeasured() {
        let clock = ManualClock()
        var sampler = Sampler(idleAfter: .seconds(10))
        // From the first sight only a consumer with a pull waiting (or acks) is live.
        var sample = sampler.observe([Self.consumer("dead", pending: 1000), Self.consumer("live", pending: 5, waiting: 1)], now: clock.now)
        #expect(sample.live == ["live": .init(consumedTotal: 0, backlog: 5)])
        #expect(sample.deadQueues == ["dead": 1000])
        clock.advance(by: .seconds(11))
        sample = sampler.observe(
            [Self.consumer("dead", pending: 1000), Self.consumer("live", pending: 3, waiting: 1, ackFloor: 40)], now: clock.now)
        #expect(sample.live == ["live": .init(consumedTotal: 40, backlog: 3)])
        #expect(sample.deadQueues == ["dead": 1000])
    }

    @Test func eachQueueHasItsOwnConsumptionAndAnIdleLiveQueueStaysLive() {
        let clock = ManualClock()
        var sampler = Sampler(idleAfter: .seconds(10))
        _ = sampler.observe([Self.consumer("a", waiting: 1, ackFloor: 100), Self.consumer("b", waiting: 1, ackFloor: 7)], now: clock.now)
        clock.advance(by: .seconds(1))
        let sample = sampler.observe(
            [Self.consumer("a", pending: 50, ackFloor: 900), Self.consumer("b", pending: 2, waiting: 1, ackFloor: 17)],
            now: clock.now)
        #expect(sample.live["a"] == .init(consumedTotal: 800, backlog: 50))
        #expect(sample.live["b"] == .init(consumedTotal: 10, backlog: 2))
        // Executors waiting with nothing to do are live (a queue with spare capacity).
        clock.advance(by: .seconds(5))
        #expect(sampler.observe([Self.consumer("a", waiting: 3, ackFloor: 950)], now: clock.now).live["a"]?.backlog == 0)
    }

    @Test func executorsThatVanishAndComeBackAreLiveAgainAndConsumptionStaysMonotonic() {
        let clock = ManualClock()
        var sampler = Sampler(idleAfter: .seconds(10))
        _ = sampler.observe([Self.consumer("q", pending: 100, waiting: 1, ackFloor: 500)], now: clock.now)
        clock.advance(by: .seconds(20))
        var sample = sampler.observe([Self.consumer("q", pending: 100, ackFloor: 500)], now: clock.now)
        #expect(sample.live.isEmpty && sample.deadQueues == ["q": 100])
        // A pull arrives: live again; then acks move the floor.
        clock.advance(by: .seconds(1))
        sample = sampler.observe([Self.consumer("q", pending: 100, waiting: 2, ackFloor: 500)], now: clock.now)
        #expect(sample.live["q"]?.backlog == 100)
        clock.advance(by: .seconds(1))
        sample = sampler.observe([Self.consumer("q", pending: 60, ackFloor: 540)], now: clock.now)
        #expect(sample.live["q"]?.consumedTotal == 40)
        // Recreated under the same name with a lower floor: the total does not go back.
        sample = sampler.observe([Self.consumer("q", pending: 60, waiting: 1, ackFloor: 3)], now: clock.now)
        #expect(sample.live["q"]?.consumedTotal == 40)
        sample = sampler.observe([Self.consumer("q", pending: 50, ackFloor: 13)], now: clock.now)
        #expect(sample.live["q"]?.consumedTotal == 50)
        // Deleted: the queue is gone from the sample (and its count starts over if it returns).
        sample = sampler.observe([], now: clock.now)
        #expect(sample.live.isEmpty && sample.deadQueues.isEmpty)
    }
}
