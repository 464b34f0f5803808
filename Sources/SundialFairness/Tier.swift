/// The service tier of a tenant. Tiers carry a weight in the fair-share computation
/// (`TierWeights`) and in the Dispatcher's fair scheduler (`DeficitRoundRobin`).
///
/// - `new`: a tenant younger than `TierClassifier.Configuration.newTenantAge`, or flagged as a
///   trial — people trying Sundial out with short delays. Highest weight: best experience.
/// - `standard`: everyone else with a modest volume — small businesses. Protected.
/// - `bulk`: tenants whose recent due rate or backlog crossed the bulk thresholds ("whales").
///   Lowest weight; throttled only when capacity is short (the allocation is work-conserving).
///
/// Encoded as its raw value (`"new"`, `"standard"`, `"bulk"`), also as a dictionary key.
public enum Tier: String, Sendable, Hashable, Codable, CaseIterable, CodingKeyRepresentable,
    CustomStringConvertible
{
    case new
    case standard
    case bulk

    public var description: String { rawValue }
}

/// Relative weights of the tiers. A tenant's share of contended capacity is proportional to its
/// tier's weight (weighted max-min fairness); the defaults are new 4, standard 2, bulk 1.
///
/// Weights are sanitised where they are used: a weight that is not finite or below
/// `TierWeights.minimumWeight` counts as `minimumWeight`, so no tier can be starved to zero by a
/// bad configuration value and every computation stays finite.
public struct TierWeights: Sendable, Hashable, Codable {
    public static let minimumWeight = 1e-6
    public static let maximumWeight = 1e6

    public var new: Double
    public var standard: Double
    public var bulk: Double

    public init(new: Double = 4, standard: Double = 2, bulk: Double = 1) {
        self.new = new
        self.standard = standard
        self.bulk = bulk
    }

    public static let `default` = TierWeights()

    /// The configured (unsanitised) weight.
    public subscript(tier: Tier) -> Double {
        get {
            switch tier {
            case .new: new
            case .standard: standard
            case .bulk: bulk
            }
        }
        set {
            switch tier {
            case .new: new = newValue
            case .standard: standard = newValue
            case .bulk: bulk = newValue
            }
        }
    }

    /// The weight used in computations: finite, within `minimumWeight ... maximumWeight`.
    public func weight(of tier: Tier) -> Double {
        TierWeights.sanitise(self[tier])
    }

    static func sanitise(_ w: Double) -> Double {
        guard w.isFinite else { return w == .infinity ? maximumWeight : minimumWeight }
        return min(max(w, minimumWeight), maximumWeight)
    }
}

/// Priority of a job within its tenant: `high` is served before `normal` before `low`; equal
/// priorities keep their arrival order. Mirrors `sundial.v1.Priority` without depending on it.
public enum JobPriority: Int, Sendable, Hashable, Codable, CaseIterable, Comparable {
    case high = 0
    case normal = 1
    case low = 2

    /// `high < normal < low`: "comes first" order.
    public static func < (a: JobPriority, b: JobPriority) -> Bool { a.rawValue < b.rawValue }
}
