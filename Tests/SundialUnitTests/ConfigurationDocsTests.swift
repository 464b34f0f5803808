import Foundation
import Testing

/// The services' READMEs are their contracts: every `SUNDIAL_*` variable the server entry point
/// reads is documented in a service README's Configuration table, and every variable a table
/// documents is read.
@Suite("Configuration tables")
struct ConfigurationDocsTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func keys(in text: Substring) -> Set<String> {
        Set(text.matches(of: #/SUNDIAL_[A-Z0-9_]+/#).map { String($0.output) })
    }

    /// Keys named in the first column of the Configuration section's tables.
    static func documented() throws -> Set<String> {
        var keys = Set<String>()
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
                let firstCell = line.dropFirst(2).prefix { $0 != "|" }
                keys.formUnion(Self.keys(in: firstCell))
            }
        }
        return keys
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
