import Foundation
import Testing

@testable import SundialSchedule

/// Differential test against Python's croniter (scripts/cron_oracle.py) over thousands of
/// random expressions, zones and start instants.
///
/// Known, deliberate differences, handled here:
/// - DST: croniter fires a wildcard-hour expression twice in a repeated hour and has its own
///   gap heuristics; Sundial's rules are in docs/schedules.md. A mismatch is accepted only when a
///   UTC-offset transition lies within 26 h of the previous fire or of either answer, and such
///   mismatches must stay rare.
/// - A day-of-month/day-of-week field that lists every value without being a bare `*`
///   (`1-31`, `0-6`, `*/1`) is "restricted" for Sundial (POSIX); croniter sometimes collapses it
///   to `*`. The generator skips those expressions.
/// - croniter 7 expands a degenerate range `a-a` (e.g. `5-5`) to `*`, a croniter bug; Sundial
///   reads it as `a` like Vixie cron. The generator never emits one.
/// Everything else (field parsing, names, steps, L, ?, DOM/DOW OR, leap years, 6-field seconds,
/// aliases, rejection of never-firing expressions) must agree exactly.
@Suite("Cron vs croniter")
struct CronDifferentialTests {
    static let zones = [
        "UTC", "Asia/Kolkata", "Asia/Tokyo", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
        "America/Sao_Paulo", "Pacific/Chatham", "America/St_Johns",
    ]

    struct Case {
        let id: Int
        let expr: String
        let zone: String
        let start: Int64
        let count: Int
    }

    /// True when a restricted day field covers every value (the croniter quirk above).
    static func hasFullRestrictedDayField(_ text: String) -> Bool {
        guard let e = try? CronExpression(text), !text.hasPrefix("@") else { return false }
        let fullDom: UInt64 = ((1 << 32) - 1) & ~1
        return (e.domRestricted && e.daysOfMonth == fullDom) || (e.dowRestricted && e.daysOfWeek == 0x7F)
    }

    @Test func agreesWithCroniter() throws {
        let root = repositoryRoot()
        let python = root.appendingPathComponent(".venv/bin/python")
        let script = root.appendingPathComponent("scripts/cron_oracle.py")
        let fm = FileManager.default
        try #require(
            fm.isExecutableFile(atPath: python.path),
            "croniter oracle unavailable: \(python.path) is missing. Run `python3 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt` in \(root.path)."
        )
        try #require(fm.fileExists(atPath: script.path), "missing \(script.path)")

        // Build the batch.
        var rng = SplitMix64(seed: 0x5EED_C407)
        var gen = CronGenerator(rng: SplitMix64(seed: 0xC0FFEE), dense: false)
        var cases: [Case] = []
        while cases.count < 4000 {
            let expr = gen.expression(allowSeconds: true)
            if Self.hasFullRestrictedDayField(expr) { continue }
            let start = Int64(rng.int(788_918_400...2_366_841_600))  // 1995 … 2045
            cases.append(Case(id: cases.count, expr: expr, zone: rng.pick(Self.zones), start: start, count: 5))
        }
        // 600 dense expressions starting within a day of a DST transition, to measure how often
        // the two DST policies actually differ.
        var dense = CronGenerator(rng: SplitMix64(seed: 0xD57), dense: true)
        let dstCaseZones = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/St_Johns", "Pacific/Chatham"]
        let transitionsByZone = Dictionary(uniqueKeysWithValues: dstCaseZones.map { ($0, PropertyTests.transitions($0)) })
        var nearTransition = 0
        while nearTransition < 600 {
            let expr = dense.expression(allowSeconds: false)
            if Self.hasFullRestrictedDayField(expr) { continue }
            let z = rng.pick(dstCaseZones)
            let start = rng.pick(transitionsByZone[z]!).unixFloor + Int64(rng.int(-86_400...3600))
            cases.append(Case(id: cases.count, expr: expr, zone: z, start: start, count: 5))
            nearTransition += 1
        }
        // A few hand-picked ones, including expressions that can never fire.
        for expr in ["0 0 29 2 *", "0 0 29 2 1", "0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 L 2 *", "0 0 31 2 1"] {
            cases.append(Case(id: cases.count, expr: expr, zone: "UTC", start: 1_800_000_000, count: 3))
        }

        let dir = fm.temporaryDirectory.appendingPathComponent("sundial-cron-oracle-\(UUID().uuidString)")
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: dir) }
        let input = dir.appendingPathComponent("in.json")
        let output = dir.appendingPathComponent("out.json")
        let payload: [String: Any] = [
            "cases": cases.map { ["id": $0.id, "expr": $0.expr, "tz": $0.zone, "start": $0.start, "count": $0.count] }
        ]
        try JSONSerialization.data(withJSONObject: payload).write(to: input)

        let process = Process()
        process.executableURL = python
        process.arguments = [script.path, input.path, output.path]
        let stderr = Pipe()
        process.standardError = stderr
        try process.run()
        process.waitUntilExit()
        let errText = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        try #require(
            process.terminationStatus == 0,
            "cron_oracle.py failed (is croniter installed in .venv? `.venv/bin/pip install -r requirements-dev.txt`): \(errText)")

        let decoded = try JSONSerialization.jsonObject(with: Data(contentsOf: output)) as? [String: Any]
        let results = try #require(decoded?["results"] as? [[String: Any]])
        try #require(results.count == cases.count)

        var agreed = 0
        var bothRejected = 0
        var dstTolerated = 0
        var dstZoneCases = 0
        var failures: [String] = []
        var dstExamples: [String] = []
        for (c, r) in zip(cases, results) {
            let tz = zone(c.zone)
            let isDSTZone = !["UTC", "Asia/Kolkata", "Asia/Tokyo"].contains(c.zone)
            if isDSTZone { dstZoneCases += 1 }
            let ours: [Int64]?
            let ourError: String?
            do {
                let e = try CronExpression(c.expr)
                var list: [Int64] = []
                var t = Date(unix: c.start)
                for _ in 0..<c.count {
                    guard let n = e.next(after: t, in: tz) else { break }
                    list.append(n.unixFloor)
                    t = n
                }
                ours = list
                ourError = nil
            } catch {
                ours = nil
                ourError = error.description
            }
            let theirs = (r["next"] as? [NSNumber])?.map { $0.int64Value }
            let theirError = r["error"] as? String
            switch (ours, theirs) {
            case (nil, nil):
                bothRejected += 1
            case (let o?, nil):
                failures.append("\(c.expr) [\(c.zone)]: croniter rejects (\(theirError ?? "?")), we return \(o.prefix(2))")
            case (nil, let t?):
                failures.append("\(c.expr) [\(c.zone)]: we reject (\(ourError ?? "?")), croniter returns \(t.prefix(2))")
            case (let o?, let t?):
                if o == t {
                    agreed += 1
                    continue
                }
                let i = (0..<min(o.count, t.count)).first { o[$0] != t[$0] } ?? min(o.count, t.count)
                let previous = i == 0 ? c.start : o[i - 1]
                let probes = [previous] + (i < o.count ? [o[i]] : []) + (i < t.count ? [t[i]] : [])
                let nearTransition = probes.contains { p in
                    hasTransition(tz, from: Date(unix: p - 93_600), to: Date(unix: p + 93_600))
                }
                let fmt = { (x: Int64) in RFC3339.formatLocal(Date(unix: x), zone: tz) }
                if nearTransition && isDSTZone {
                    dstTolerated += 1
                    dstExamples.append(
                        "\(c.expr) [\(c.zone)] after \(fmt(previous)): ours \(i < o.count ? fmt(o[i]) : "none"), croniter \(i < t.count ? fmt(t[i]) : "none")"
                    )
                } else {
                    failures.append(
                        "\(c.expr) [\(c.zone)] after \(fmt(c.start)): #\(i) ours \(i < o.count ? fmt(o[i]) : "none") croniter \(i < t.count ? fmt(t[i]) : "none")"
                    )
                }
            }
        }
        #expect(failures.isEmpty, "\(failures.count) disagreements, e.g.:\n\(failures.prefix(15).joined(separator: "\n"))")
        #expect(bothRejected >= 2, "never-firing expressions must be rejected by both")
        #expect(agreed >= 4000, "agreed on \(agreed) of \(cases.count)")
        #expect(Double(dstTolerated) <= 0.1 * Double(dstZoneCases), "\(dstTolerated) DST differences in \(dstZoneCases) cases")
        print("cron differential: \(agreed) agreed, \(bothRejected) both rejected, \(dstTolerated) DST-tolerated, \(failures.count) failed")
        print("DST differences, e.g.:\n  " + dstExamples.prefix(8).joined(separator: "\n  "))
    }
}
