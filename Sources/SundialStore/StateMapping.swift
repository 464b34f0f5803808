import SundialCore

// The one place run outcomes (`timer_runs.outcome`) and timer states (`timers.state`) become
// SQL text: queries interpolate these instead of spelling the literals.

extension RunOutcome {
    /// The quoted SQL literal, e.g. `'armed'`.
    var sql: String { "'\(rawValue)'" }

    /// A list for `IN (…)`, e.g. `'armed', 'dispatching'`.
    static func sql(_ outcomes: RunOutcome...) -> String { list(outcomes) }

    /// `(<alias>.outcome || '') IN (…)`: the outcome check of a statement that finds its runs by
    /// key (joined to `unnest` arrays). Written so that it does not imply a partial index's
    /// predicate: `outcome` is transient, so the statistics of the last ANALYZE often say the
    /// open runs are next to none, and with the plain check the planner scanned a whole partial
    /// index (`timer_runs_open`) once per statement or per key instead of probing the primary
    /// key — seen in `auto_explain` as 25–80 ms claims and result updates under load.
    static func byKey(_ alias: String, _ outcomes: RunOutcome...) -> String {
        "(\(alias).outcome || '') IN (\(list(outcomes)))"
    }

    private static func list(_ outcomes: [RunOutcome]) -> String { outcomes.map(\.sql).joined(separator: ", ") }
}

extension StoredTimerState {
    /// The quoted SQL literal, e.g. `'scheduled'`.
    var sql: String { "'\(rawValue)'" }

    /// A list for `IN (…)`.
    static func sql(_ states: StoredTimerState...) -> String { states.map(\.sql).joined(separator: ", ") }
}

/// A stored value that maps to no case: the row is reported, never trapped on.
struct UnknownStoredValue: Error, CustomStringConvertible {
    let column: String
    let value: String
    var description: String { "\(column) holds '\(value.prefix(64))', which this version does not know" }
}

extension RunOutcome {
    /// `timer_runs.outcome` as read from a row.
    init(stored: String) throws {
        guard let outcome = RunOutcome(rawValue: stored) else { throw UnknownStoredValue(column: "timer_runs.outcome", value: stored) }
        self = outcome
    }
}

extension StoredTimerState {
    /// `timers.state` as read from a row.
    init(stored: String) throws {
        guard let state = StoredTimerState(rawValue: stored) else { throw UnknownStoredValue(column: "timers.state", value: stored) }
        self = state
    }
}

extension MisfirePolicy {
    /// `timers.misfire_policy` as read from a row.
    init(stored: String) throws {
        guard let policy = MisfirePolicy(rawValue: stored) else { throw UnknownStoredValue(column: "timers.misfire_policy", value: stored) }
        self = policy
    }
}
