import Testing

@testable import SundialFairness

@Suite("WorkQueueSampler: capacity counts only queues with live executors")
struct WorkQueueSamplerTests {
    typealias Sampler = WorkQueueSampler<ManualClock>
    typealias Consumer = Sampler.Consumer

    static func consumer(
        _ queue: String, pending: UInt64 = 0, ackPending: UInt64 = 0, waiting: UInt64 = 0, ackFloor: UInt64 = 0
    ) -> Consumer {
        Consumer(name: "executor-\(queue)", queue: queue, pending: pending, ackPending: ackPending, waiting: waiting, ackFloor: ackFloor)
    }

    @Test func aQueueNobodyTakesFromLeavesTheBacklogAfterTheIdleTime() {
        let clock = ManualClock()
        var sampler = Sampler(idleAfter: .seconds(10))
        // From the first sight only a consumer with a pull waiting (or acks) counts.
        var sample = sampler.observe([Self.consumer("dead", pending: 1000), Self.consumer("live", pending: 5, waiting: 1)], now: clock.now)
        #expect(sample.backlog == 5)
        #expect(sample.deadQueues == ["dead": 1000])
        clock.advance(by: .seconds(11))
        sample = sampler.observe(
            [Self.consumer("dead", pending: 1000), Self.consumer("live", pending: 3, waiting: 1, ackFloor: 40)], now: clock.now)
        #expect(sample.backlog == 3)
        #expect(sample.liveQueues == ["live"])
        #expect(sample.deadQueues == ["dead": 1000])
        #expect(sample.consumedTotal == 40)
    }

    @Test func executorsThatComeBackCountAgainAndConsumptionStaysMonotonic() {
        let clock = ManualClock()
        var sampler = Sampler(idleAfter: .seconds(10))
        _ = sampler.observe([Self.consumer("q", pending: 100, waiting: 1, ackFloor: 500)], now: clock.now)
        clock.advance(by: .seconds(20))
        var sample = sampler.observe([Self.consumer("q", pending: 100, ackFloor: 500)], now: clock.now)
        #expect(sample.backlog == 0 && sample.deadQueues == ["q": 100])
        // A pull arrives: live again; then acks move the floor.
        clock.advance(by: .seconds(1))
        sample = sampler.observe([Self.consumer("q", pending: 100, waiting: 2, ackFloor: 500)], now: clock.now)
        #expect(sample.backlog == 100)
        clock.advance(by: .seconds(1))
        sample = sampler.observe([Self.consumer("q", pending: 60, ackFloor: 540)], now: clock.now)
        #expect(sample.consumedTotal == 40)
        // The consumer is deleted and recreated: the total never goes back.
        sample = sampler.observe([], now: clock.now)
        #expect(sample.consumedTotal == 40 && sample.backlog == 0)
        sample = sampler.observe([Self.consumer("q", pending: 60, ackFloor: 3)], now: clock.now)
        #expect(sample.consumedTotal == 40)
        sample = sampler.observe([Self.consumer("q", pending: 50, ackFloor: 13)], now: clock.now)
        #expect(sample.consumedTotal == 50)
    }
}
