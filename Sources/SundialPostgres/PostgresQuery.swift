/// A named prepared statement whose parameters are named too: the SQL says `$tenant`,
/// `$due_before`, and each call binds values by those names (`["tenant": .text(t), …]`), so
/// no two statements can give one position two meanings and no call can shift a value into
/// the wrong slot. The names are rewritten once, here, to the `$1…` positions the protocol
/// uses, numbered in order of first appearance; a name used twice is one parameter.
///
/// The statement name identifies it on each connection, so one name must always mean the
/// same SQL. Names are lowercase because `DEALLOCATE` folds case while the protocol does not.
public struct PostgresQuery: Sendable, Hashable {
    public let name: String
    /// The SQL as written, with `$name` placeholders.
    public let sql: String
    /// The SQL sent to the server, with `$1…` placeholders.
    public let preparedSQL: String
    /// Parameter names in position order: `parameterNames[0]` is `$1`.
    public let parameterNames: [String]

    /// `name`: 1–63 characters of `a-z`, `0-9`, `_`. In `sql`, a parameter is `$` followed by
    /// a lowercase identifier (`[a-z_][a-z0-9_]*`); `$` inside string literals, quoted
    /// identifiers and comments is text. Positional `$1` and dollar-quoted strings are refused.
    /// A bad name or placeholder is a programming error in a static statement (traps); the
    /// store's statement tests build every one.
    public init(name: String, sql: String) {
        precondition(
            !name.isEmpty && name.utf8.count <= 63 && name.utf8.allSatisfy(Self.isNameByte),
            "PostgresQuery name must be 1-63 chars of [a-z0-9_], got \"\(name)\"")
        switch Self.compile(sql) {
        case .success(let compiled):
            self.name = name
            self.sql = sql
            preparedSQL = compiled.sql
            parameterNames = compiled.names
        case .failure(let problem):
            preconditionFailure("PostgresQuery \(name): \(problem.message)")
        }
    }

    /// The values for `bindings` in position order. Throws `PostgresError(kind: .parameters)`
    /// when a parameter has no value, a value names no parameter, or a name is bound twice.
    public func values(for bindings: PostgresBindings) throws -> [PostgresValue] {
        var values: [PostgresValue?] = Array(repeating: nil, count: parameterNames.count)
        for (name, value) in bindings.pairs {
            guard let position = parameterNames.firstIndex(of: name) else {
                throw PostgresError(
                    kind: .parameters, message: "\(self.name) has no parameter $\(name) (it has \(listed))")
            }
            guard values[position] == nil else {
                throw PostgresError(kind: .parameters, message: "\(self.name): $\(name) is bound twice")
            }
            values[position] = value
        }
        let missing = parameterNames.indices.filter { values[$0] == nil }.map { "$" + parameterNames[$0] }
        guard missing.isEmpty else {
            throw PostgresError(
                kind: .parameters, message: "\(self.name): no value for \(missing.joined(separator: ", "))")
        }
        return values.map { $0! }
    }

    private var listed: String {
        parameterNames.isEmpty ? "none" : parameterNames.map { "$" + $0 }.joined(separator: ", ")
    }

    // MARK: Compiling placeholders

    /// SQL with positional placeholders, and the names in position order.
    public struct Compiled: Sendable, Equatable {
        public var sql: String
        public var names: [String]
    }

    /// Why SQL cannot be a statement with named parameters.
    public struct Problem: Error, Sendable, Equatable {
        public var message: String
    }

    /// Rewrites `$name` placeholders to `$1…`, skipping string literals ('…'), quoted
    /// identifiers ("…") and comments (-- and /* */), where a `$` is just text.
    public static func compile(_ sql: String) -> Result<Compiled, Problem> {
        let bytes = Array(sql.utf8)
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var names: [String] = []
        var index = 0

        func copy(through end: Int) {
            output.append(contentsOf: bytes[index..<min(end, bytes.count)])
            index = min(end, bytes.count)
        }
        func position(of needle: [UInt8], from start: Int) -> Int? {
            var at = start
            while at + needle.count <= bytes.count {
                if Array(bytes[at..<at + needle.count]) == needle { return at }
                at += 1
            }
            return nil
        }

        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "'"), UInt8(ascii: "\""):
                // A doubled quote inside ends one literal and starts the next: same result.
                guard let close = bytes[(index + 1)...].firstIndex(of: byte) else {
                    return .failure(Problem(message: "unterminated quote"))
                }
                copy(through: close + 1)
            case UInt8(ascii: "-") where index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "-"):
                copy(through: (bytes[index...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count) + 1)
            case UInt8(ascii: "/") where index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "*"):
                guard let close = position(of: Array("*/".utf8), from: index + 2) else {
                    return .failure(Problem(message: "unterminated comment"))
                }
                copy(through: close + 2)
            case UInt8(ascii: "$"):
                var end = index + 1
                while end < bytes.count, isNameByte(bytes[end]) { end += 1 }
                let identifier = bytes[(index + 1)..<end]
                guard let first = identifier.first else {
                    return .failure(Problem(message: "a lone `$` or dollar quote; parameters are `$name`"))
                }
                if first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9") {
                    return .failure(Problem(message: "positional parameter `$\(String(decoding: identifier, as: UTF8.self))`; name it"))
                }
                if end < bytes.count && bytes[end] == UInt8(ascii: "$") {
                    return .failure(Problem(message: "dollar-quoted strings are not supported in statements"))
                }
                let name = String(decoding: identifier, as: UTF8.self)
                let number: Int
                if let existing = names.firstIndex(of: name) {
                    number = existing + 1
                } else {
                    names.append(name)
                    number = names.count
                }
                output.append(contentsOf: Array("$\(number)".utf8))
                index = end
            default:
                output.append(byte)
                index += 1
            }
        }
        return .success(Compiled(sql: String(decoding: output, as: UTF8.self), names: names))
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        (byte >= 0x61 && byte <= 0x7a) || (byte >= 0x30 && byte <= 0x39) || byte == 0x5f
    }
}

/// Values for a statement's named parameters, written as a dictionary literal:
/// `["tenant": .text(tenant), "id": .uuid(id)]`. Kept as pairs so a name given twice is
/// reported (a thrown error) rather than trapping as a duplicate dictionary key would.
public struct PostgresBindings: ExpressibleByDictionaryLiteral, Sendable {
    var pairs: [(String, PostgresValue)]

    public init(dictionaryLiteral elements: (String, PostgresValue)...) {
        pairs = elements
    }

    public init(_ pairs: [(String, PostgresValue)]) {
        self.pairs = pairs
    }

    /// Adds a value, e.g. for a parameter only some calls set differently.
    public mutating func bind(_ name: String, _ value: PostgresValue) {
        pairs.append((name, value))
    }
}
