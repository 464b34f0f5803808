import Foundation
import Logging
import SundialPostgres

/// Opens the store: a connection pool on the configured schema, migrated to the latest version.
public enum SundialDatabase {
    /// The numbered `.sql` files shipped in this module's resources.
    public static func migrations() throws -> [PostgresMigration] {
        guard let directory = Bundle.module.url(forResource: "Migrations", withExtension: nil) else {
            throw PostgresError(kind: .query, message: "Migrations resource folder missing from the bundle")
        }
        return try PostgresMigration.load(directory: directory)
    }

    /// Applies pending migrations (safe to call from every instance at startup).
    @discardableResult
    public static func migrate(_ pool: PostgresPool, schema: String?) async throws -> [Int] {
        try await PostgresMigrator(migrations: migrations(), schema: schema).migrate(pool)
    }

    /// Every named statement the stores run, for checks that prepare each against the schema.
    public static var statements: [PostgresQuery] {
        TimerQueries.all + RetentionQueries.all + PartitionQueries.all + TenantQueries.all
    }
}
