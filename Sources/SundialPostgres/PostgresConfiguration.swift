import Foundation

/// Where and how to connect. Every session additionally runs with `TimeZone=UTC`,
/// `DateStyle=ISO` and `client_encoding=UTF8`, so timestamps and text decode the same way
/// whatever the server's defaults are.
public struct PostgresConfiguration: Sendable, CustomStringConvertible {
    /// Host name or IP address; a value starting with `/` is a unix-socket directory.
    /// Default `127.0.0.1`.
    public var host: String
    /// Default 5432.
    public var port: Int
    /// Default `postgres`.
    public var user: String
    /// Default none (trust / peer authentication, or `~/.pgpass`).
    public var password: String?
    /// Default `postgres`.
    public var database: String
    /// Shown in `pg_stat_activity`. Default `sundial`.
    public var applicationName: String
    /// The session's `search_path` (e.g. one schema per test or per deployment), applied at
    /// connect time through the startup options. Written as SQL would (`"MixedCase", public`).
    /// Default nil: the server's default (`"$user", public`).
    public var searchPath: String?
    /// Gives up connecting after this long. libpq counts whole seconds, at least 2. Default 10 s.
    public var connectTimeout: Duration
    /// libpq `sslmode` (`disable`, `prefer`, `require`, …). Default nil: libpq's default (`prefer`).
    public var sslMode: String?

    public init(
        host: String = "127.0.0.1", port: Int = 5432, user: String = "postgres",
        password: String? = nil, database: String = "postgres", applicationName: String = "sundial",
        searchPath: String? = nil, connectTimeout: Duration = .seconds(10), sslMode: String? = nil
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.applicationName = applicationName
        self.searchPath = searchPath
        self.connectTimeout = connectTimeout
        self.sslMode = sslMode
    }

    /// Parses `postgres://user:password@host:port/database?search_path=x&application_name=y`
    /// (also `postgresql://`). User, password and database are percent-decoded. A missing
    /// database defaults to the user name (as with libpq). Query parameters: `search_path`,
    /// `application_name`, `connect_timeout` (seconds), `sslmode`, and `host` (overrides the
    /// authority's host; use it for a unix-socket directory:
    /// `postgres://postgres@/postgres?host=/run/postgresql`). Anything else is rejected so a typo
    /// does not silently change behaviour.
    public init(url: String) throws {
        func invalid(_ reason: String) -> PostgresError {
            PostgresError(kind: .connection, message: "invalid Postgres URL: \(reason)")
        }
        guard let components = URLComponents(string: url) else {
            throw invalid("cannot parse \"\(Self.redacting(url))\"")
        }
        guard let scheme = components.scheme?.lowercased(), scheme == "postgres" || scheme == "postgresql"
        else {
            throw invalid("scheme must be postgres:// or postgresql://")
        }
        self.init()

        if var host = components.host, !host.isEmpty {
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            self.host = host.removingPercentEncoding ?? host
        }
        if let port = components.port {
            guard (1...65_535).contains(port) else { throw invalid("port \(port) out of range") }
            self.port = port
        } else if Self.authority(of: url).hasSuffix(":") {
            throw invalid("empty port")
        }
        if let user = components.user, !user.isEmpty { self.user = user }
        if let password = components.password { self.password = password }

        let path = components.path
        if path.isEmpty || path == "/" {
            database = self.user
        } else {
            let name = path.hasPrefix("/") ? String(path.dropFirst()) : path
            guard !name.contains("/") else { throw invalid("database name \"\(name)\" contains '/'") }
            database = name
        }

        var seen = Set<String>()
        for item in components.queryItems ?? [] {
            guard seen.insert(item.name).inserted else { throw invalid("parameter \(item.name) given twice") }
            let value = item.value ?? ""
            switch item.name {
            case "search_path":
                guard !value.isEmpty else { throw invalid("search_path is empty") }
                searchPath = value
            case "application_name":
                applicationName = value
            case "connect_timeout":
                guard let seconds = Int(value), seconds > 0 else {
                    throw invalid("connect_timeout must be a positive number of seconds, got \"\(value)\"")
                }
                connectTimeout = .seconds(seconds)
            case "sslmode":
                let modes = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
                guard modes.contains(value) else {
                    throw invalid("sslmode must be one of \(modes.joined(separator: ", ")), got \"\(value)\"")
                }
                sslMode = value
            case "host":
                guard !value.isEmpty else { throw invalid("host is empty") }
                host = value
            default:
                throw invalid(
                    "unknown parameter \"\(item.name)\" (known: search_path, application_name, connect_timeout, sslmode, host)"
                )
            }
        }
        guard !user.isEmpty else { throw invalid("user is empty") }
    }

    /// `user@host:port/database`, never the password.
    public var description: String {
        var text = "postgres://\(user)\(password == nil ? "" : ":***")@\(host):\(port)/\(database)"
        if let searchPath { text += "?search_path=\(searchPath)" }
        return text
    }

    /// libpq keyword/value pairs for PQconnectdbParams (no conninfo-string quoting to get wrong).
    var connectionParameters: [(String, String)] {
        var options = "-c TimeZone=UTC -c DateStyle=ISO"
        if let searchPath { options += " -c search_path=" + Self.escapeOption(searchPath) }
        var parameters: [(String, String)] = [
            ("host", host),
            ("port", String(port)),
            ("user", user),
            ("dbname", database),
            ("application_name", applicationName),
            ("client_encoding", "UTF8"),
            ("connect_timeout", String(max(2, Int(connectTimeout.components.seconds)))),
            ("options", options),
        ]
        if let password { parameters.append(("password", password)) }
        if let sslMode { parameters.append(("sslmode", sslMode)) }
        return parameters
    }

    /// In the `options` parameter spaces separate arguments unless backslash-escaped.
    private static func escapeOption(_ value: String) -> String {
        var escaped = ""
        for character in value {
            if character == "\\" || character == " " { escaped.append("\\") }
            escaped.append(character)
        }
        return escaped
    }

    private static func authority(of url: String) -> Substring {
        guard let start = url.range(of: "://")?.upperBound else { return "" }
        let rest = url[start...]
        let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        return rest[..<end]
    }

    private static func redacting(_ url: String) -> String {
        // Hide anything between "://user:" and "@" so passwords stay out of logs.
        url.replacingOccurrences(of: #"(://[^:/@]*:)[^@]*@"#, with: "$1***@", options: .regularExpression)
    }
}
