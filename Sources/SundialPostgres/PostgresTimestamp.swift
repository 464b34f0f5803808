import Foundation

/// Hand-written timestamp text conversion. Sessions run with `TimeZone=UTC` and
/// `DateStyle=ISO`, so the server's output form is fixed; Foundation's formatters are far too
/// slow for claim batches of thousands of rows and allocate per call.
enum PostgresTimestamp {
    /// Seconds between 1970-01-01 and 2001-01-01 (Foundation's reference date).
    private static let unixToReference: Int64 = 978_307_200

    // MARK: Encoding

    /// Appends `date` as ISO-8601 UTC with microseconds, e.g. `2026-11-22T14:05:03.123456Z`.
    /// Years before 1 use Postgres' ` BC` suffix; non-finite dates become ±infinity.
    static func append(_ date: Date, to out: inout [UInt8]) {
        let reference = date.timeIntervalSinceReferenceDate
        guard reference.isFinite else {
            out.append(contentsOf: (reference < 0 ? "-infinity" : "infinity").utf8)
            return
        }
        // Split on the reference date (not 1970) so no precision is lost before rounding.
        var whole = reference.rounded(.down)
        var micros = ((reference - whole) * 1_000_000).rounded()
        if micros >= 1_000_000 {
            whole += 1
            micros -= 1_000_000
        }
        let seconds = Int64(whole) + unixToReference
        let days = floorDivide(seconds, 86_400)
        let secondOfDay = Int(seconds - days * 86_400)
        let (year, month, day) = civil(fromDays: days)
        let bc = year <= 0
        appendPadded(bc ? 1 - year : year, width: 4, to: &out)
        out.append(UInt8(ascii: "-"))
        appendPadded(Int64(month), width: 2, to: &out)
        out.append(UInt8(ascii: "-"))
        appendPadded(Int64(day), width: 2, to: &out)
        out.append(UInt8(ascii: "T"))
        appendPadded(Int64(secondOfDay / 3600), width: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendPadded(Int64(secondOfDay / 60 % 60), width: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendPadded(Int64(secondOfDay % 60), width: 2, to: &out)
        out.append(UInt8(ascii: "."))
        appendPadded(Int64(micros), width: 6, to: &out)
        out.append(UInt8(ascii: "Z"))
        if bc { out.append(contentsOf: " BC".utf8) }
    }

    static func string(_ date: Date) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(32)
        append(date, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends a non-negative `value` in decimal, zero-padded to at least `width` digits.
    static func appendPadded(_ value: Int64, width: Int, to out: inout [UInt8]) {
        var divisor: Int64 = 1
        var digits = 1
        while digits < width || value / divisor >= 10 {
            divisor *= 10
            digits += 1
        }
        var rest = value
        while divisor > 0 {
            out.append(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest / divisor))
            rest %= divisor
            divisor /= 10
        }
    }

    // MARK: Decoding

    /// Parses `YYYY-MM-DD[( |T)HH:MM:SS[.ffffff]][Z|±HH[:MM[:SS]]][ BC]`, `infinity`,
    /// `-infinity`. Without an offset the value is taken as UTC (timestamp without time zone,
    /// or date). Returns nil when malformed.
    static func parse(_ text: UnsafeBufferPointer<UInt8>) -> Date? {
        var cursor = Cursor(bytes: text)
        if cursor.matches("infinity") { return Date.distantFuture }
        if cursor.matches("-infinity") { return Date.distantPast }

        guard let year = cursor.number(minDigits: 4, maxDigits: 9), cursor.skip(UInt8(ascii: "-")),
            let month = cursor.number(minDigits: 2, maxDigits: 2), cursor.skip(UInt8(ascii: "-")),
            let day = cursor.number(minDigits: 2, maxDigits: 2),
            (1...12).contains(month), (1...31).contains(day)
        else { return nil }

        var secondOfDay: Int64 = 0
        var micros: Int64 = 0
        var offsetSeconds: Int64 = 0
        if cursor.skip(UInt8(ascii: " ")) || cursor.skip(UInt8(ascii: "T")) {
            guard let hour = cursor.number(minDigits: 2, maxDigits: 2), cursor.skip(UInt8(ascii: ":")),
                let minute = cursor.number(minDigits: 2, maxDigits: 2), cursor.skip(UInt8(ascii: ":")),
                let second = cursor.number(minDigits: 2, maxDigits: 2),
                hour <= 24, minute <= 59, second <= 60
            else { return nil }
            secondOfDay = hour * 3600 + minute * 60 + second
            if cursor.skip(UInt8(ascii: ".")) {
                // Postgres prints at most 6 digits; round any further ones away.
                var digits = 0
                var roundUp = false
                while let digit = cursor.digit() {
                    if digits < 6 {
                        micros = micros * 10 + digit
                    } else if digits == 6 {
                        roundUp = digit >= 5
                    }
                    digits += 1
                }
                guard digits > 0 else { return nil }
                while digits < 6 {
                    micros *= 10
                    digits += 1
                }
                if roundUp { micros += 1 }
            }
            if cursor.skip(UInt8(ascii: "Z")) {
                offsetSeconds = 0
            } else if let sign = cursor.sign() {
                guard let hours = cursor.number(minDigits: 2, maxDigits: 2) else { return nil }
                var offset = hours * 3600
                if cursor.skip(UInt8(ascii: ":")) {
                    guard let minutes = cursor.number(minDigits: 2, maxDigits: 2) else { return nil }
                    offset += minutes * 60
                    if cursor.skip(UInt8(ascii: ":")) {
                        guard let seconds = cursor.number(minDigits: 2, maxDigits: 2) else { return nil }
                        offset += seconds
                    }
                }
                offsetSeconds = sign * offset
            }
        }
        var civilYear = year
        if cursor.matches(" BC") { civilYear = 1 - year }
        guard cursor.atEnd else { return nil }

        let days = days(fromCivil: civilYear, month: month, day: day)
        let unixSeconds = days * 86_400 + secondOfDay - offsetSeconds
        let referenceSeconds = unixSeconds - unixToReference
        return Date(timeIntervalSinceReferenceDate: Double(referenceSeconds) + Double(micros) / 1_000_000)
    }

    private struct Cursor {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0

        var atEnd: Bool { index == bytes.count }

        mutating func skip(_ byte: UInt8) -> Bool {
            guard index < bytes.count, bytes[index] == byte else { return false }
            index += 1
            return true
        }

        /// Consumes `literal` only if the rest of the input equals or starts with it.
        mutating func matches(_ literal: StaticString) -> Bool {
            let count = literal.utf8CodeUnitCount
            guard bytes.count - index >= count else { return false }
            let literalBytes = UnsafeBufferPointer(start: literal.utf8Start, count: count)
            for offset in 0..<count where bytes[index + offset] != literalBytes[offset] { return false }
            index += count
            return true
        }

        mutating func digit() -> Int64? {
            guard index < bytes.count else { return nil }
            let value = bytes[index] &- UInt8(ascii: "0")
            guard value < 10 else { return nil }
            index += 1
            return Int64(value)
        }

        mutating func number(minDigits: Int, maxDigits: Int) -> Int64? {
            var value: Int64 = 0
            var count = 0
            while count < maxDigits, let digit = digit() {
                value = value * 10 + digit
                count += 1
            }
            return count >= minDigits ? value : nil
        }

        mutating func sign() -> Int64? {
            if skip(UInt8(ascii: "+")) { return 1 }
            if skip(UInt8(ascii: "-")) { return -1 }
            return nil
        }
    }

    // MARK: Civil calendar (proleptic Gregorian), after Howard Hinnant's public-domain algorithms

    static func days(fromCivil year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func civil(fromDays days: Int64) -> (year: Int64, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = Int(dayOfYear - (153 * mp + 2) / 5 + 1)
        let month = Int(mp < 10 ? mp + 3 : mp - 9)
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    private static func floorDivide(_ a: Int64, _ b: Int64) -> Int64 {
        let quotient = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? quotient - 1 : quotient
    }
}
