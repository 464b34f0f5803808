import Foundation

/// A statement parameter. `.text` is sent in text format and the server casts it to the
/// parameter's type (write `$1::uuid[]` etc. where the type is not obvious from context);
/// `.bytes` is sent in binary format and is meant for `bytea` parameters.
public enum PostgresValue: Sendable, Hashable {
    case null
    case text(String)
    case bytes([UInt8])
}

extension PostgresValue {
    public static func int(_ value: Int) -> PostgresValue { .text(String(value)) }
    public static func int64(_ value: Int64) -> PostgresValue { .text(String(value)) }
    public static func double(_ value: Double) -> PostgresValue {
        // Swift's description is the shortest round-tripping form; Postgres spells the specials.
        if value.isNaN { return .text("NaN") }
        if value.isInfinite { return .text(value < 0 ? "-Infinity" : "Infinity") }
        return .text(value.description)
    }
    public static func bool(_ value: Bool) -> PostgresValue { .text(value ? "true" : "false") }
    /// ISO-8601 UTC with microseconds (Postgres' own resolution).
    public static func timestamp(_ value: Date) -> PostgresValue { .text(PostgresTimestamp.string(value)) }
    public static func uuid(_ value: UUID) -> PostgresValue {
        var out: [UInt8] = []
        out.reserveCapacity(36)
        PostgresArrayLiteral.appendUUID(value, to: &out)
        return .text(String(decoding: out, as: UTF8.self))
    }
    public static func json(_ value: String) -> PostgresValue { .text(value) }

    /// `nil` becomes SQL NULL.
    public static func optional(_ value: PostgresValue?) -> PostgresValue { value ?? .null }

    // Array literals for batch statements such as `INSERT … SELECT * FROM unnest($1::uuid[], …)`.

    public static func textArray(_ values: [String]) -> PostgresValue {
        var out: [UInt8] = [UInt8(ascii: "{")]
        out.reserveCapacity(values.count * 16 + 2)
        for (index, value) in values.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            PostgresArrayLiteral.appendQuoted(value, to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return .text(String(decoding: out, as: UTF8.self))
    }

    /// Elements that are `nil` become NULL elements.
    public static func textArray(_ values: [String?]) -> PostgresValue {
        var out: [UInt8] = [UInt8(ascii: "{")]
        out.reserveCapacity(values.count * 16 + 2)
        for (index, value) in values.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            if let value {
                PostgresArrayLiteral.appendQuoted(value, to: &out)
            } else {
                out.append(contentsOf: "NULL".utf8)
            }
        }
        out.append(UInt8(ascii: "}"))
        return .text(String(decoding: out, as: UTF8.self))
    }

    public static func int64Array(_ values: [Int64]) -> PostgresValue {
        var text = "{"
        text.reserveCapacity(values.count * 8 + 2)
        for (index, value) in values.enumerated() {
            if index > 0 { text += "," }
            text += String(value)
        }
        text += "}"
        return .text(text)
    }

    public static func intArray(_ values: [Int]) -> PostgresValue {
        int64Array(values.map { Int64($0) })
    }

    public static func timestampArray(_ values: [Date]) -> PostgresValue {
        var out: [UInt8] = [UInt8(ascii: "{")]
        out.reserveCapacity(values.count * 28 + 2)
        for (index, value) in values.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            // Quoted: the " BC" / "infinity" forms would otherwise need care.
            out.append(UInt8(ascii: "\""))
            PostgresTimestamp.append(value, to: &out)
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "}"))
        return .text(String(decoding: out, as: UTF8.self))
    }

    public static func boolArray(_ values: [Bool]) -> PostgresValue {
        .text("{" + values.map { $0 ? "t" : "f" }.joined(separator: ",") + "}")
    }

    /// `bytea[]` in text form: each element `"\\x<hex>"` (the backslash escaped inside the
    /// quotes); `nil` elements become NULL.
    public static func byteaArray(_ values: [[UInt8]?]) -> PostgresValue {
        var out: [UInt8] = [UInt8(ascii: "{")]
        out.reserveCapacity(values.reduce(2) { $0 + 7 + 2 * ($1?.count ?? 0) })
        for (index, value) in values.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            guard let value else {
                out.append(contentsOf: "NULL".utf8)
                continue
            }
            out.append(contentsOf: #""\\x"#.utf8)
            PostgresArrayLiteral.appendHex(value, to: &out)
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "}"))
        return .text(String(decoding: out, as: UTF8.self))
    }

    public static func uuidArray(_ values: [UUID]) -> PostgresValue {
        var out: [UInt8] = [UInt8(ascii: "{")]
        out.reserveCapacity(values.count * 37 + 2)
        for (index, value) in values.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            PostgresArrayLiteral.appendUUID(value, to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return .text(String(decoding: out, as: UTF8.self))
    }
}

enum PostgresArrayLiteral {
    /// A double-quoted array element: inside quotes only `"` and `\` need a backslash, and
    /// quoting keeps "NULL", "" and whitespace-padded strings what they are.
    static func appendQuoted(_ value: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { out.append(UInt8(ascii: "\\")) }
            out.append(byte)
        }
        out.append(UInt8(ascii: "\""))
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    static func appendHex(_ bytes: [UInt8], to out: inout [UInt8]) {
        for byte in bytes {
            out.append(hexDigits[Int(byte >> 4)])
            out.append(hexDigits[Int(byte & 0x0f)])
        }
    }

    /// Lowercase canonical form, written without going through `uuidString`.
    static func appendUUID(_ value: UUID, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.uuid) { bytes in
            for index in 0..<16 {
                if index == 4 || index == 6 || index == 8 || index == 10 { out.append(UInt8(ascii: "-")) }
                out.append(hexDigits[Int(bytes[index] >> 4)])
                out.append(hexDigits[Int(bytes[index] & 0x0f)])
            }
        }
    }
}
