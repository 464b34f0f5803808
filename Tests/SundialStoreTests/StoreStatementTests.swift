import Foundation
import SundialPostgres
import SundialStore
import SundialTestSupport
import Testing

/// Every statement the stores run, prepared against the migrated schema: the SQL is valid, each
/// named parameter is one server-side parameter (no gaps, nothing unnamed), and no statement
/// name is used twice.
@Suite("Integration: store statements")
struct StoreStatementTests {
    @Test("every store statement prepares on the migrated schema with one parameter per name")
    func everyStatementPrepares() async throws {
        let schema = TestPostgres.freshSchema("statements")
        let pool = try await TestPostgres.pool(schema: schema, size: 1)
        try await SundialDatabase.migrate(pool, schema: schema)
        let statements = SundialDatabase.statements
        #expect(Set(statements.map(\.name)).count == statements.count)
        #expect(try statements.count == Self.declaredStatementCount())

        for statement in statements {
            let parameters = try await pool.withSession { session in
                try session.execute("PREPARE \(statement.name) AS \(statement.preparedSQL)")
                defer { _ = try? session.execute("DEALLOCATE \(statement.name)") }
                return try session.execute(
                    "SELECT cardinality(parameter_types) AS n FROM pg_prepared_statements WHERE name = $1",
                    [.text(statement.name)]
                ).first?.int("n")
            }
            #expect(parameters == statement.parameterNames.count, "\(statement.name): \(statement.parameterNames)")
        }
        await pool.close()
    }

    /// How many statements the store's sources declare, so a new one cannot miss the list.
    private static func declaredStatementCount() throws -> Int {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/SundialStore")
        var count = 0
        for file in try FileManager.default.contentsOfDirectory(atPath: sources.path) where file.hasSuffix(".swift") {
            let text = try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8)
            count += text.components(separatedBy: "= PostgresQuery(").count - 1
        }
        return count
    }
}
