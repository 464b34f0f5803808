import Foundation
import SundialSchedule

/// Micro-benchmark of next-occurrence computation per schedule kind (`sundial bench schedule`).
/// Each case answers `next(after:)` (or `firstFire(createdAt:)` for delay) for 1024 start
/// instants spread over 2000–2100, cycling through them `iterations` times in total.
public enum ScheduleBenchmark {
    struct Case {
        let name: String
        let schedule: TimerSchedule
        let useFirstFire: Bool
    }

    static var cases: [Case] {
        [
            Case(name: "delay 3d (firstFire)", schedule: TimerSchedule(.delay(.seconds(3 * 86_400))), useFirstFire: true),
            Case(name: "at", schedule: TimerSchedule(.at(Date(timeIntervalSince1970: 4_102_444_800))), useFirstFire: false),
            Case(
                name: "weekdays mon,wed 09:00 Europe/Berlin",
                schedule: TimerSchedule(
                    .weekdays(days: [.monday, .wednesday], timeOfDay: LocalTime(hour: 9), recurring: true),
                    timeZone: "Europe/Berlin"), useFirstFire: false),
            Case(
                name: "date 03-15 09:00 America/New_York",
                schedule: TimerSchedule(
                    .date(year: nil, month: 3, day: 15, timeOfDay: LocalTime(hour: 9)), timeZone: "America/New_York"),
                useFirstFire: false),
            Case(
                name: "date 02-29 (leap years only) UTC",
                schedule: TimerSchedule(.date(year: nil, month: 2, day: 29, timeOfDay: nil)), useFirstFire: false),
            Case(name: "cron */5 * * * * UTC", schedule: TimerSchedule(.cron("*/5 * * * *")), useFirstFire: false),
            Case(
                name: "cron 0 9 * * MON-FRI Europe/Berlin",
                schedule: TimerSchedule(.cron("0 9 * * MON-FRI"), timeZone: "Europe/Berlin"), useFirstFire: false),
            Case(
                name: "cron 30 2 * * * Australia/Lord_Howe",
                schedule: TimerSchedule(.cron("30 2 * * *"), timeZone: "Australia/Lord_Howe"), useFirstFire: false),
            Case(
                name: "cron */10 * * * * * (6 fields) UTC",
                schedule: TimerSchedule(.cron("*/10 * * * * *")), useFirstFire: false),
            Case(
                name: "cron 0 0 29 2 * UTC (once in 4 years)",
                schedule: TimerSchedule(.cron("0 0 29 2 *")), useFirstFire: false),
            Case(
                name: "cron 0 0 29 2 * Europe/Berlin (once in 4 years)",
                schedule: TimerSchedule(.cron("0 0 29 2 *"), timeZone: "Europe/Berlin"), useFirstFire: false),
            Case(
                name: "cron 0 0 29 2 1 UTC (Feb 29 or Feb Mondays)",
                schedule: TimerSchedule(.cron("0 0 29 2 1")), useFirstFire: false),
            Case(
                name: "every 90m",
                schedule: TimerSchedule(.every(interval: .seconds(5400), start: Date(timeIntervalSince1970: 0), end: nil)),
                useFirstFire: false),
        ]
    }

    public static func run(iterations: Int) -> String {
        let n = max(1, iterations)
        // Deterministic start instants (SplitMix64) in 2000-01-01 … 2100-01-01.
        var state: UInt64 = 0x5EED
        var starts: [Date] = []
        for _ in 0..<1024 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            z ^= z >> 31
            starts.append(Date(timeIntervalSince1970: 946_684_800 + Double(z % 3_155_760_000)))
        }
        var lines = ["schedule: ns per next(after:), \(n) calls per kind, 1024 start instants in 2000–2100"]
        let clock = ContinuousClock()
        var sink = 0.0
        for c in cases {
            // Warm up (zone data, caches).
            for i in 0..<min(n, 256) { sink += c.schedule.next(after: starts[i & 1023])?.timeIntervalSince1970 ?? 0 }
            let elapsed = clock.measure {
                if c.useFirstFire {
                    for i in 0..<n { sink += c.schedule.firstFire(createdAt: starts[i & 1023])?.timeIntervalSince1970 ?? 0 }
                } else {
                    for i in 0..<n { sink += c.schedule.next(after: starts[i & 1023])?.timeIntervalSince1970 ?? 0 }
                }
            }
            let ns = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
            let perOp = ns / Double(n)
            let padded = c.name.padding(toLength: 52, withPad: " ", startingAt: 0)
            lines.append("  \(padded) \(String(format: "%9.0f", perOp)) ns/op")
        }
        let parse = clock.measure {
            for i in 0..<n {
                sink += Double((try? CronExpression(i & 1 == 0 ? "0 9 * * MON-FRI" : "*/15 8-18 1,15,L * *"))?.hasSeconds == true ? 1 : 0)
            }
        }
        let parseNs = (Double(parse.components.seconds) * 1e9 + Double(parse.components.attoseconds) / 1e9) / Double(n)
        lines.append("  \("cron parse".padding(toLength: 52, withPad: " ", startingAt: 0)) \(String(format: "%9.0f", parseNs)) ns/op")
        let build = clock.measure {
            for i in 0..<n {
                let s = TimerSchedule(.cron(i & 1 == 0 ? "0 9 * * MON-FRI" : "*/15 8-18 1,15,L * *"), timeZone: "Europe/Berlin")
                sink += s.isRecurring ? 1 : 0
            }
        }
        let buildNs = (Double(build.components.seconds) * 1e9 + Double(build.components.attoseconds) / 1e9) / Double(n)
        lines.append(
            "  \("TimerSchedule init (cron + zone)".padding(toLength: 52, withPad: " ", startingAt: 0)) \(String(format: "%9.0f", buildNs)) ns/op")
        if sink == 42 { lines.append("") }  // keep the work observable
        return lines.joined(separator: "\n")
    }
}
