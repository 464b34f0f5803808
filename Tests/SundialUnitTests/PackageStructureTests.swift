import Foundation
import Testing

/// The deployables (services/*) link the server entry point only — never the CLI, the
/// benchmarks or the local-cluster launcher — and the pure core imports neither NATS nor
/// Postgres. Read from Package.swift's target graph.
@Suite("Package structure")
struct PackageStructureTests {
    /// target name → its dependencies (target names and product names), from Package.swift.
    static func graph() throws -> [String: [String]] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("Package.swift"), encoding: .utf8)
        var graph: [String: [String]] = [:]
        // Each target declaration: `.target(` / `.executableTarget(` … `name: "X"` … up to the next one.
        let pieces = text.components(separatedBy: "Target(").dropFirst()
            + text.components(separatedBy: ".target(").dropFirst()
        for piece in pieces {
            guard let nameRange = piece.range(of: #"name: "([^"]+)""#, options: .regularExpression) else { continue }
            let name = String(piece[nameRange].dropFirst(7).dropLast())
            let body = piece.components(separatedBy: "\n        .").first ?? piece
            guard let deps = body.range(of: "dependencies:") else {
                graph[name, default: []] += []
                continue
            }
            let list = body[deps.upperBound...]
            let quoted = list.matches(of: #/"([A-Za-z0-9_-]+)"/#).map { String($0.output.1) }
            graph[name, default: []] += quoted.filter { $0 != name }
        }
        return graph
    }

    static func closure(of target: String, in graph: [String: [String]]) -> Set<String> {
        var seen: Set<String> = []
        var stack = [target]
        while let next = stack.popLast() {
            for dep in graph[next] ?? [] where seen.insert(dep).inserted { stack.append(dep) }
        }
        return seen
    }

    @Test func deployablesLinkNeitherTheCLINorBenchmarks() throws {
        let graph = try Self.graph()
        for service in ["sundial-ingest", "sundial-planner", "sundial-dispatcher", "sundial-governor"] {
            let linked = Self.closure(of: service, in: graph)
            #expect(linked.contains("SundialServer"), "\(service): \(linked.sorted())")
            for forbidden in [
                "SundialCLI", "SundialBench", "SundialLocalCluster", "SundialTestSupport", "ArgumentParser",
                "swift-argument-parser",
            ] {
                #expect(!linked.contains(forbidden), "\(service) links \(forbidden)")
            }
        }
        // The CLI may use the server entry point, not the other way round.
        #expect(!Self.closure(of: "SundialServer", in: graph).contains("SundialCLI"))
    }

    @Test func thePureCoreImportsNeitherNATSNorPostgres() throws {
        let graph = try Self.graph()
        // The wire contract is data too; the store reaches ids and stepping without NATS.
        for core in ["SundialCore", "SundialContract", "SundialFairness", "SundialSchedule", "SundialObservability"] {
            let linked = Self.closure(of: core, in: graph)
            #expect(graph[core] != nil, "\(core) is a target")
            for forbidden in ["SundialNATS", "SundialPostgres", "CNats", "CLibPQ"] {
                #expect(!linked.contains(forbidden), "\(core) links \(forbidden)")
            }
        }
        for forbidden in ["SundialNATS", "CNats"] {
            #expect(!Self.closure(of: "SundialStore", in: graph).contains(forbidden), "SundialStore links \(forbidden)")
        }
    }

    /// An application links the client library (timers client + executor worker): no server
    /// module, no Postgres.
    @Test func theClientLibraryLinksNoServerPart() throws {
        let graph = try Self.graph()
        for client in ["SundialClient", "SundialExecutor"] {
            let linked = Self.closure(of: client, in: graph)
            #expect(graph[client] != nil, "\(client) is a target")
            for forbidden in [
                "SundialPostgres", "CLibPQ", "SundialStore", "SundialServer", "SundialIngest", "SundialPlanner",
                "SundialDispatcher", "SundialGovernor", "SundialCLI",
            ] {
                #expect(!linked.contains(forbidden), "\(client) links \(forbidden)")
            }
        }
    }

    /// Every project module a target's sources import is among its declared dependencies (or
    /// theirs): a module reached only because SwiftPM happened to build it first breaks a
    /// build of that target alone — an application linking the client library, for one.
    @Test func everyImportIsADeclaredDependency() throws {
        let graph = try Self.graph()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let modules = Set(graph.keys)
        var checked = 0
        for folder in ["Sources", "Tests"] {
            let base = root.appendingPathComponent(folder)
            for name in try FileManager.default.contentsOfDirectory(atPath: base.path) where graph[name] != nil {
                let linked = Self.closure(of: name, in: graph)
                let files = FileManager.default.enumerator(atPath: base.appendingPathComponent(name).path)?
                    .compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") } ?? []
                for file in files {
                    let text = try String(contentsOf: base.appendingPathComponent(name).appendingPathComponent(file), encoding: .utf8)
                    for match in text.matches(of: #/(?m)^(?:@testable )?import (\w+)/#) {
                        let module = String(match.output.1)
                        guard modules.contains(module), module != name else { continue }
                        #expect(linked.contains(module), "\(folder)/\(name)/\(file) imports \(module), which \(name) does not declare")
                        checked += 1
                    }
                }
            }
        }
        #expect(checked > 200, "\(checked) imports checked")
    }
}
