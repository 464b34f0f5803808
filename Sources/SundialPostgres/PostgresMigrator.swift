import Foundation

/// One schema change, loaded from a file named `NNNN_name.sql`.
public struct PostgresMigration: Sendable, Hashable {
    public let version: Int
    public let name: String
    public let sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// Loads every `*.sql` file of `directory`, sorted by version. Other files are ignored; a
    /// `.sql` file not named `<digits>_<name>.sql` or a version used twice is an error
    /// (`PostgresError(kind: .query)`), so a typo never silently skips a migration.
    public static func load(directory: URL) throws -> [PostgresMigration] {
        func invalid(_ message: String) -> PostgresError {
            PostgresError(kind: .query, message: "migrations in \(directory.path): \(message)")
        }
        let files: [URL]
        do {
            files = try FileManager.default.contentsOfDirectory(
                at: directory, includingPropertiesForKeys: nil, options: [.skipsHiddenFiles])
        } catch {
            throw invalid("cannot list directory: \(error)")
        }
        var migrations: [PostgresMigration] = []
        var seen: [Int: String] = [:]
        for file in files where file.pathExtension == "sql" {
            let fileName = file.lastPathComponent
            let stem = fileName.dropLast(4)
            guard let underscore = stem.firstIndex(of: "_"),
                let version = Int(stem[..<underscore]), stem[..<underscore].allSatisfy(\.isASCII),
                version >= 0, stem.index(after: underscore) < stem.endIndex
            else {
                throw invalid("\"\(fileName)\" is not named NNNN_name.sql")
            }
            if let other = seen[version] {
                throw invalid("version \(version) is used by both \"\(other)\" and \"\(fileName)\"")
            }
            seen[version] = fileName
            let sql: String
            do {
                sql = try String(contentsOf: file, encoding: .utf8)
            } catch {
                throw invalid("cannot read \"\(fileName)\": \(error)")
            }
            migrations.append(
                PostgresMigration(version: version, name: String(stem[stem.index(after: underscore)...]), sql: sql))
        }
        return migrations.sorted { $0.version < $1.version }
    }
}

/// Applies migrations in version order, each in its own transaction, recording them in
/// `schema_migrations(version, name, applied_at)`. Safe to run from several processes at once:
/// every step holds a transaction-scoped advisory lock keyed by the schema, and a migration
/// already recorded is skipped. Migrations must be transactional and must not contain their
/// own `BEGIN`/`COMMIT` (nor `CREATE INDEX CONCURRENTLY`).
public struct PostgresMigrator: Sendable {
    public let migrations: [PostgresMigration]
    public let schema: String?

    /// `schema`: created if missing and used as the migrations' `search_path` (and home of
    /// `schema_migrations`); nil uses the connection's own search path.
    public init(migrations: [PostgresMigration], schema: String?) {
        self.migrations = migrations.sorted { $0.version < $1.version }
        self.schema = schema
    }

    /// Returns the versions applied by this call (empty when already up to date).
    @discardableResult
    public func migrate(_ pool: PostgresPool) async throws -> [Int] {
        var versions = Set<Int>()
        for migration in migrations {
            guard versions.insert(migration.version).inserted else {
                throw PostgresError(kind: .query, message: "migration version \(migration.version) appears twice")
            }
        }
        let migrations = self.migrations
        let quotedSchema = schema.map(Self.quoteIdentifier)
        let table = quotedSchema.map { "\($0).schema_migrations" } ?? "schema_migrations"
        let lockKey = Self.lockKey(schema ?? "")
        let setup = quotedSchema.map { "CREATE SCHEMA IF NOT EXISTS \($0); SET LOCAL search_path TO \($0);" } ?? ""

        return try await pool.withSession { session in
            var applied: [Int] = []
            try session.transaction { session in
                try session.execute("SELECT pg_advisory_xact_lock($1)", [.int64(lockKey)])
                try session.executeScript(
                    """
                    \(setup)
                    CREATE TABLE IF NOT EXISTS \(table) (
                        version bigint PRIMARY KEY,
                        name text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now()
                    );
                    """)
            }
            for migration in migrations {
                let didApply = try session.transaction { session -> Bool in
                    // Serialise with other starters; re-check after the lock is ours.
                    try session.execute("SELECT pg_advisory_xact_lock($1)", [.int64(lockKey)])
                    let existing = try session.execute(
                        "SELECT 1 FROM \(table) WHERE version = $1", [.int(migration.version)])
                    if !existing.isEmpty { return false }
                    if let quotedSchema { try session.executeScript("SET LOCAL search_path TO \(quotedSchema)") }
                    do {
                        try session.executeScript(migration.sql)
                    } catch var error as PostgresError {
                        error.message = "migration \(migration.version)_\(migration.name) failed: \(error.message)"
                        throw error
                    }
                    try session.execute(
                        "INSERT INTO \(table) (version, name) VALUES ($1, $2)",
                        [.int(migration.version), .text(migration.name)])
                    return true
                }
                if didApply { applied.append(migration.version) }
            }
            return applied
        }
    }

    /// `"name"` with embedded quotes doubled: schema names come from configuration.
    static func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// A stable 64-bit key per schema (FNV-1a), so different schemas migrate independently.
    static func lockKey(_ schema: String) -> Int64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in "sundial.schema_migrations:\(schema)".utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return Int64(bitPattern: hash)
    }
}
