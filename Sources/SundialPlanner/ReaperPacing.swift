import SundialStore

/// When the reaper runs its next batch (pure): straight on, with a short pause, while a walk
/// is in progress; after `idle` once it has caught up or another reaper holds the lock; after
/// failures, backing off from 1 s, doubling, up to `idle`.
public struct ReaperPacing: Sendable, Hashable {
    /// Between two batches of one walk: keeps the reaper's share of the database small.
    public var pause: Duration = .milliseconds(50)
    /// After a complete walk, or while another instance reaps.
    public var idle: Duration = .seconds(60)
    private var failures = 0

    public init(pause: Duration = .milliseconds(50), idle: Duration = .seconds(60)) {
        self.pause = pause
        self.idle = idle
    }

    public mutating func next(after outcome: RetentionStore.BatchOutcome) -> Duration {
        failures = 0
        switch outcome {
        case .walked: return pause
        case .busy, .caughtUp: return idle
        }
    }

    /// After a partition pass: straight on while a partition's timers are being deleted.
    public mutating func next(after pass: RetentionStore.PartitionPass) -> Duration {
        failures = 0
        switch pass {
        case .done(let work) where work.more: return pause
        case .done: return .zero
        case .busy: return idle
        }
    }

    public mutating func nextAfterFailure() -> Duration {
        failures = min(failures + 1, 30)
        return min(.seconds(1) * (1 << min(failures - 1, 20)), idle)
    }
}
