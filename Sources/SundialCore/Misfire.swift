import Foundation

/// What a recurring timer does with occurrences it missed — not loaded in time because every
/// Planner (or Postgres) was down for longer than the load horizon, or come due while the
/// timer was paused. An occurrence is missed when it is loaded (or resumed)
/// more than the misfire threshold (`SUNDIAL_MISFIRE_THRESHOLD`, default 60 s) after its fire
/// time. One-shot timers always fire: their
/// single occurrence is the point of the timer.
public enum MisfirePolicy: String, Sendable, CaseIterable {
    /// Every missed occurrence fires, back to back (within the catch-up window).
    case fireAll = "fire_all"
    /// One catch-up: the latest missed occurrence fires, the others are skipped.
    case fireOnce = "fire_once"
    /// Missed occurrences are skipped; the schedule goes on with the next one due.
    case skip

    /// The default: one catch-up, as cron-like schedulers do (a job that runs hourly should
    /// run once after a long outage, not once per hour missed).
    public static let standard: MisfirePolicy = .fireOnce
}

/// A timer's misfire policy applied at one instant. It decides about occurrences not yet
/// loaded when the Planner loads them, and about paused runs on resume; occurrences already
/// loaded into JetStream before an outage fire when it ends, whatever the policy.
public struct MisfireRule: Sendable, Hashable {
    /// How late an occurrence may be loaded and still count as on time, by default. A planner
    /// that loads normally is minutes ahead; a takeover after a crash is seconds late.
    public static let defaultThreshold: Duration = .seconds(60)

    public var policy: MisfirePolicy
    /// Missed occurrences older than this are skipped whatever the policy (nil: no limit).
    public var catchupWindow: TimeInterval?
    public var now: Date
    /// An occurrence more than this late is missed.
    public var threshold: TimeInterval

    public init(
        policy: MisfirePolicy, catchupWindow: TimeInterval?, now: Date,
        threshold: Duration = MisfireRule.defaultThreshold
    ) {
        self.policy = policy
        self.catchupWindow = catchupWindow.flatMap { $0 > 0 ? $0 : nil }
        self.now = now
        self.threshold = Double(threshold.components.seconds) + Double(threshold.components.attoseconds) / 1e18
    }

    public func isMissed(_ fireAt: Date) -> Bool {
        fireAt < now.addingTimeInterval(-threshold)
    }

    /// Whether a missed occurrence is recent enough to be caught up.
    public func isWithinWindow(_ fireAt: Date) -> Bool {
        guard let catchupWindow else { return true }
        return fireAt >= now.addingTimeInterval(-catchupWindow)
    }

    /// Of `runs` (in occurrence order, each with its fire time), which are re-armed and which
    /// skipped on resume. `laterMissed`: an occurrence after all of them is missed too (the
    /// timer's own cursor), so under `fireOnce` the catch-up is that later one's, and every
    /// missed run here is skipped. Runs not missed are always re-armed, and so are retries
    /// (`isRetry`): the policy is about occurrences, and a retry's occurrence already fired.
    public func resume<Run>(
        _ runs: [Run], fireAt: (Run) -> Date, isRetry: (Run) -> Bool, laterMissed: Bool
    ) -> (rearm: [Run], skip: [Run]) {
        var rearm: [Run] = []
        var skip: [Run] = []
        let lastMissed = runs.lastIndex { !isRetry($0) && isMissed(fireAt($0)) }
        for (index, run) in runs.enumerated() {
            let due = fireAt(run)
            guard !isRetry(run), isMissed(due) else {
                rearm.append(run)
                continue
            }
            let keep: Bool
            switch policy {
            case .fireAll: keep = isWithinWindow(due)
            case .fireOnce: keep = !laterMissed && index == lastMissed && isWithinWindow(due)
            case .skip: keep = false
            }
            if keep { rearm.append(run) } else { skip.append(run) }
        }
        return (rearm, skip)
    }
}
