import Foundation
import SundialServer
import Testing

/// The services' READMEs are their contracts: every `SUNDIAL_*` variable the server entry point
/// reads is documented in a service README's Configuration table, every variable a table
/// documents is read, and every default a table states is the code's.
@Suite("Configuration tables")
struct ConfigurationDocsTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func keys(in text: Substring) -> Set<String> {
        Set(text.matches(of: #/SUNDIAL_[A-Z0-9_]+/#).map { String($0.output) })
    }

    /// Keys named in the first column of the Configuration section's tables.
    static func documented() throws -> Set<String> {
        Set(try rows().flatMap { keys(in: $0.keys) })
    }

    /// The Configuration tables' rows: first cell (keys), second cell (default).
    static func rows() throws -> [(keys: Substring, defaultValue: Substring, service: String)] {
        var rows: [(keys: Substring, defaultValue: Substring, service: String)] = []
        for service in ["ingest", "planner", "dispatcher", "governor"] {
            let text = try String(
                contentsOf: root.appendingPathComponent("services/\(service)/README.md"), encoding: .utf8)
            guard let start = text.range(of: "\n## Configuration") else {
                Issue.record("services/\(service)/README.md has no Configuration section")
                continue
            }
            let section = text[start.upperBound...]
            let body = section.range(of: "\n## ").map { section[..<$0.lowerBound] } ?? section
            for line in body.split(separator: "\n") where line.hasPrefix("| `SUNDIAL_") {
                let cells = line.split(separator: "|", omittingEmptySubsequences: false)
                guard cells.count > 3 else { continue }
                rows.append((cells[1], cells[2].trimmingCharacters(in: .whitespaces)[...], service))
            }
        }
        return rows
    }

    /// Setting a variable to the default its table states changes nothing: the documented
    /// default is the code's. (Rows whose default is not one literal — "unset", a pattern
    /// like `planner-<host>-…`, a pointer to another document — are skipped; the instance ids
    /// are random per process, so they are fixed on both sides.)
    @Test func everyDocumentedDefaultIsTheCodes() throws {
        let fixed = [
            "SUNDIAL_PLANNER_INSTANCE_ID": "p", "SUNDIAL_DISPATCHER_INSTANCE_ID": "d", "SUNDIAL_GOVERNOR_INSTANCE_ID": "g",
        ]
        let baseline = String(reflecting: try ServiceEnvironment.fromEnvironment(fixed))
        var checked = 0
        for row in try Self.rows() {
            let keys = Self.keys(in: row.keys)
            guard keys.count == 1, let key = keys.first,
                let literal = row.defaultValue.firstMatch(of: #/^`([^`<>]+)`/#)?.output.1
            else { continue }
            var env = fixed
            env[key] = String(literal)
            let configured = String(reflecting: try ServiceEnvironment.fromEnvironment(env))
            #expect(configured == baseline, "services/\(row.service)/README.md: \(key) default `\(literal)` is not the code's")
            checked += 1
        }
        #expect(checked > 35, "\(checked) defaults checked")
    }

    @Test func everyVariableReadIsDocumentedAndEveryDocumentedOneIsRead() throws {
        let code = try String(
            contentsOf: Self.root.appendingPathComponent("Sources/SundialServer/ServiceRunner.swift"), encoding: .utf8)
        let read = Set(code.matches(of: #/"(SUNDIAL_[A-Z0-9_]+)"/#).map { String($0.output.1) })
        let documented = try Self.documented()
        #expect(read.count > 40, "\(read.count) variables read")
        #expect(read.subtracting(documented).isEmpty, "read but not documented: \(read.subtracting(documented).sorted())")
        #expect(documented.subtracting(read).isEmpty, "documented but not read: \(documented.subtracting(read).sorted())")
    }
}
