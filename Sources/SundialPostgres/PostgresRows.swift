import CLibPQ
import Foundation

/// The rows of one statement's result, copied out of libpq so no C memory outlives the call.
/// All cells live in one flat byte buffer; column names are mapped to indexes once per result.
public struct PostgresRows: Sendable, RandomAccessCollection {
    let storage: ResultStorage
    /// Rows inserted/updated/deleted/selected, from the command tag (0 when it has none).
    public let affectedRows: Int

    init(storage: ResultStorage, affectedRows: Int) {
        self.storage = storage
        self.affectedRows = affectedRows
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { storage.rowCount }
    public subscript(position: Int) -> PostgresRow {
        precondition(position >= 0 && position < storage.rowCount, "row index out of range")
        return PostgresRow(storage: storage, row: position)
    }

    /// The rows as an array (they are cheap views onto shared storage).
    public var rows: [PostgresRow] { Array(self) }
    public var columnNames: [String] { storage.columnNames }
    /// The index of the first column named `name`, if any.
    public func columnIndex(_ name: String) -> Int? { storage.columnIndexes[name] }
}

/// One row of a result. Accessors return nil for SQL NULL and throw
/// `PostgresError(kind: .decoding)` for an unknown column or a value of the wrong shape.
public struct PostgresRow: Sendable {
    let storage: ResultStorage
    let row: Int

    public var columnCount: Int { storage.columnCount }

    /// The value in text format; nil for NULL, an unknown column or an index out of range.
    public subscript(column: Int) -> String? {
        guard column >= 0 && column < storage.columnCount else { return nil }
        return storage.withCell(row: row, column: column) { $0.map { String(decoding: $0, as: UTF8.self) } }
    }

    public subscript(column: String) -> String? {
        guard let index = storage.columnIndexes[column] else { return nil }
        return self[index]
    }

    /// A column that must not be NULL: NULL throws `PostgresError(kind: .decoding)` naming the
    /// column, so a row that breaks the schema's promise is reported, never trapped on.
    /// `read` is one of the accessors, e.g. `row.required("id", row.uuid)`.
    public func required<Value>(_ column: String, _ read: (String) throws -> Value?) throws -> Value {
        guard let value = try read(column) else {
            throw PostgresError(kind: .decoding, message: "column \(column) is NULL")
        }
        return value
    }

    public func isNull(_ column: Int) throws -> Bool {
        try storage.withCell(row: row, column: checked(column)) { $0 == nil }
    }
    public func isNull(_ column: String) throws -> Bool { try isNull(index(of: column)) }

    public func string(_ column: Int) throws -> String? {
        try storage.withCell(row: row, column: checked(column)) {
            $0.map { String(decoding: $0, as: UTF8.self) }
        }
    }
    public func string(_ column: String) throws -> String? { try string(index(of: column)) }

    public func int64(_ column: Int) throws -> Int64? {
        try decode(column, as: "bigint") { Self.parseInt64($0) }
    }
    public func int64(_ column: String) throws -> Int64? { try int64(index(of: column)) }

    public func int(_ column: Int) throws -> Int? { try int64(column).map { Int($0) } }
    public func int(_ column: String) throws -> Int? { try int(index(of: column)) }

    public func double(_ column: Int) throws -> Double? {
        try decode(column, as: "double precision") { Double(String(decoding: $0, as: UTF8.self)) }
    }
    public func double(_ column: String) throws -> Double? { try double(index(of: column)) }

    public func bool(_ column: Int) throws -> Bool? {
        try decode(column, as: "boolean") { bytes -> Bool? in
            switch String(decoding: bytes, as: UTF8.self) {
            case "t", "true": return true
            case "f", "false": return false
            default: return nil
            }
        }
    }
    public func bool(_ column: String) throws -> Bool? { try bool(index(of: column)) }

    /// A `timestamptz` (or `timestamp`/`date`, taken as UTC) in the session's ISO output form.
    public func date(_ column: Int) throws -> Date? {
        try decode(column, as: "timestamp") { PostgresTimestamp.parse($0) }
    }
    public func date(_ column: String) throws -> Date? { try date(index(of: column)) }

    public func uuid(_ column: Int) throws -> UUID? {
        try decode(column, as: "uuid") { Self.parseUUID($0) }
    }
    public func uuid(_ column: String) throws -> UUID? { try uuid(index(of: column)) }

    /// A `bytea` in the server's default hex output form (`\x0a1b…`).
    public func bytes(_ column: Int) throws -> [UInt8]? {
        try decode(column, as: "bytea") { Self.parseByteaHex($0) }
    }
    public func bytes(_ column: String) throws -> [UInt8]? { try bytes(index(of: column)) }

    // MARK: Helpers

    private func checked(_ column: Int) throws -> Int {
        guard column >= 0 && column < storage.columnCount else {
            throw PostgresError.decoding(
                "column index \(column) out of range (result has \(storage.columnCount) columns)")
        }
        return column
    }

    private func index(of name: String) throws -> Int {
        guard let index = storage.columnIndexes[name] else {
            throw PostgresError.decoding(
                "no column named \"\(name)\" (result has: \(storage.columnNames.joined(separator: ", ")))")
        }
        return index
    }

    private func decode<T>(
        _ column: Int, as typeName: String, _ parse: (UnsafeBufferPointer<UInt8>) -> T?
    ) throws -> T? {
        let column = try checked(column)
        let result: Result<T?, PostgresError> = storage.withCell(row: row, column: column) { cell in
            guard let cell else { return .success(nil) }
            if let value = parse(cell) { return .success(value) }
            let text = String(decoding: UnsafeBufferPointer(rebasing: cell.prefix(64)), as: UTF8.self)
            return .failure(
                .decoding(
                    "column \"\(storage.columnNames[column])\": cannot decode \(typeName) from \"\(text)\""))
        }
        return try result.get()
    }

    static func parseInt64(_ bytes: UnsafeBufferPointer<UInt8>) -> Int64? {
        var index = 0
        var negative = false
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") || bytes[index] == UInt8(ascii: "+") {
            negative = bytes[index] == UInt8(ascii: "-")
            index += 1
        }
        guard index < bytes.count else { return nil }
        var value: Int64 = 0
        while index < bytes.count {
            let digit = bytes[index] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            // Accumulate negatively so Int64.min parses too.
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = shifted.subtractingReportingOverflow(Int64(digit))
            guard !overflow1 && !overflow2 else { return nil }
            value = next
            index += 1
        }
        if negative { return value }
        let (positive, overflow) = Int64(0).subtractingReportingOverflow(value)
        return overflow ? nil : positive
    }

    static func parseUUID(_ bytes: UnsafeBufferPointer<UInt8>) -> UUID? {
        guard bytes.count == 36 else { return nil }
        var raw: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        let ok = withUnsafeMutableBytes(of: &raw) { out -> Bool in
            var source = 0
            for target in 0..<16 {
                if source == 8 || source == 13 || source == 18 || source == 23 {
                    guard bytes[source] == UInt8(ascii: "-") else { return false }
                    source += 1
                }
                guard let high = hexValue(bytes[source]), let low = hexValue(bytes[source + 1]) else {
                    return false
                }
                out[target] = high << 4 | low
                source += 2
            }
            return true
        }
        return ok ? UUID(uuid: raw) : nil
    }

    static func parseByteaHex(_ bytes: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard bytes.count >= 2, bytes[0] == UInt8(ascii: "\\"), bytes[1] == UInt8(ascii: "x"),
            bytes.count % 2 == 0
        else { return nil }
        let count = (bytes.count - 2) / 2
        var failed = false
        let result = [UInt8](unsafeUninitializedCapacity: count) { out, initialized in
            for index in 0..<count {
                guard let high = hexValue(bytes[2 + 2 * index]), let low = hexValue(bytes[3 + 2 * index])
                else {
                    failed = true
                    break
                }
                out[index] = high << 4 | low
                initialized = index + 1
            }
        }
        return failed ? nil : result
    }

    @inline(__always)
    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// The immutable copy of a PGresult: names, a name→index map, and every cell's bytes.
final class ResultStorage: Sendable {
    let columnNames: [String]
    let columnIndexes: [String: Int]
    let rowCount: Int
    let columnCount: Int
    /// Cell (r, c) is `bytes[starts[i] ..< starts[i] + lengths[i]]` with i = r * columnCount + c;
    /// a length of -1 marks NULL.
    private let bytes: [UInt8]
    private let starts: [Int]
    private let lengths: [Int32]

    static let empty = ResultStorage(columnNames: [], rowCount: 0, bytes: [], starts: [], lengths: [])

    private init(columnNames: [String], rowCount: Int, bytes: [UInt8], starts: [Int], lengths: [Int32]) {
        self.columnNames = columnNames
        var indexes: [String: Int] = [:]
        for (index, name) in columnNames.enumerated() where indexes[name] == nil { indexes[name] = index }
        self.columnIndexes = indexes
        self.rowCount = rowCount
        self.columnCount = columnNames.count
        self.bytes = bytes
        self.starts = starts
        self.lengths = lengths
    }

    /// Copies a text-format PGresult. Must be called while the result is alive.
    static func copy(from result: OpaquePointer) -> ResultStorage {
        let rowCount = Int(PQntuples(result))
        let columnCount = Int(PQnfields(result))
        if columnCount == 0 && rowCount == 0 { return .empty }
        let names = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
        let cellCount = rowCount * columnCount
        var lengths = [Int32](repeating: -1, count: cellCount)
        var starts = [Int](repeating: 0, count: cellCount)
        var total = 0
        for row in 0..<rowCount {
            for column in 0..<columnCount where PQgetisnull(result, Int32(row), Int32(column)) == 0 {
                let length = PQgetlength(result, Int32(row), Int32(column))
                let cell = row * columnCount + column
                lengths[cell] = length
                starts[cell] = total
                total += Int(length)
            }
        }
        let bytes = [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            guard let base = buffer.baseAddress else { return }
            for row in 0..<rowCount {
                for column in 0..<columnCount {
                    let cell = row * columnCount + column
                    let length = Int(lengths[cell])
                    guard length > 0, let value = PQgetvalue(result, Int32(row), Int32(column)) else {
                        continue
                    }
                    UnsafeMutableRawPointer(base + starts[cell]).copyMemory(from: value, byteCount: length)
                }
            }
            initialized = total
        }
        return ResultStorage(
            columnNames: names, rowCount: rowCount, bytes: bytes, starts: starts, lengths: lengths)
    }

    /// Calls `body` with the cell's bytes, or nil for NULL.
    @inline(__always)
    func withCell<R>(row: Int, column: Int, _ body: (UnsafeBufferPointer<UInt8>?) throws -> R) rethrows -> R {
        let cell = row * columnCount + column
        let length = Int(lengths[cell])
        if length < 0 { return try body(nil) }
        return try bytes.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress else {
                return try body(UnsafeBufferPointer(start: nil, count: 0))
            }
            return try body(UnsafeBufferPointer(start: base + starts[cell], count: length))
        }
    }
}
