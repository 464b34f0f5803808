import Foundation
import Testing

@testable import SundialSchedule

/// Parses an RFC 3339 literal in a test table; a typo fails the test instead of crashing.
func utc(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> Date {
    guard let d = RFC3339.parse(text) else {
        Issue.record("bad RFC 3339 literal in test: \(text)", sourceLocation: sourceLocation)
        return Date(timeIntervalSince1970: 0)
    }
    return d
}

/// Deterministic RNG for property tests (SplitMix64), so every failure reproduces.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }
    mutating func pick<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }
}

/// Root of the repository (resolving the scratch-package symlinks, if any).
func repositoryRoot(filePath: String = #filePath) -> URL {
    URL(fileURLWithPath: filePath).resolvingSymlinksInPath()
        .deletingLastPathComponent()  // SundialScheduleTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()
}

func zone(_ name: String) -> TimeZone {
    TimeZone(identifier: name)!
}

/// Wall-clock rendering in a zone ("2027-03-28 03:00:00 +02:00"), for readable expectations.
func local(_ date: Date?, _ zoneName: String) -> String {
    guard let date else { return "nil" }
    let z = zone(zoneName)
    let s = RFC3339.formatLocal(date, zone: z, zoneName: "")
    return String(s.dropLast())  // trailing space before the empty zone name
}

/// Offset of a zone at an instant, in seconds.
func offset(_ zoneName: String, _ date: Date) -> Int {
    zone(zoneName).secondsFromGMT(for: date)
}

/// True when the zone's UTC offset changes somewhere in [a, b].
func hasTransition(_ tz: TimeZone, from a: Date, to b: Date) -> Bool {
    if tz.secondsFromGMT(for: a) != tz.secondsFromGMT(for: b) { return true }
    guard let t = tz.nextDaylightSavingTimeTransition(after: a.addingTimeInterval(-1)) else { return false }
    return t <= b
}

/// Zones the DST tables and property tests cover.
let dstZones = [
    "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "America/Santiago",
    "Pacific/Chatham", "America/St_Johns",
]
