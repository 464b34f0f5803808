/// Reproducible randomness for the fuzz suites.
/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and reproducible across platforms.
public struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension SplitMix64 {
    public mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }

    /// Mostly short, sometimes up to `max`.
    public mutating func length(max: Int) -> Int {
        chance(0.7) ? Int.random(in: 0...min(64, max), using: &self) : Int.random(in: 0...max, using: &self)
    }

    public mutating func bytes(count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: next()) }
        return bytes
    }

    /// A protobuf body with 1–4 mutations: bit flips, truncation, garbage, a changed first
    /// tag, overwritten bytes, duplicated slices, a huge length prefix.
    public mutating func mutate(_ original: [UInt8]) -> [UInt8] {
        var bytes = original
        for _ in 0..<Int.random(in: 1...4, using: &self) {
            switch Int.random(in: 0..<7, using: &self) {
            case 0 where !bytes.isEmpty:  // bit flip
                let i = Int.random(in: 0..<bytes.count, using: &self)
                bytes[i] ^= UInt8(1) << UInt8.random(in: 0...7, using: &self)
            case 1 where !bytes.isEmpty:  // truncation
                bytes.removeLast(Int.random(in: 1...bytes.count, using: &self))
            case 2:  // appended garbage
                bytes += self.bytes(count: self.length(max: 64))
            case 3 where !bytes.isEmpty:  // field-number / wire-type change of the first tag
                let fieldNumber = UInt64.random(in: 1...40, using: &self)
                let wireType = self.chance(0.7) ? UInt64(bytes[0] & 7) : UInt64.random(in: 0...7, using: &self)
                bytes.replaceSubrange(0..<1, with: ProtobufWire.varint(fieldNumber << 3 | wireType))
            case 4 where !bytes.isEmpty:  // random byte overwritten
                bytes[Int.random(in: 0..<bytes.count, using: &self)] = UInt8.random(in: 0...255, using: &self)
            case 5 where bytes.count > 2:  // a slice duplicated (repeated / merged fields)
                let start = Int.random(in: 0..<bytes.count, using: &self)
                let end = Int.random(in: start...bytes.count, using: &self)
                bytes.insert(contentsOf: bytes[start..<end], at: Int.random(in: 0...bytes.count, using: &self))
            default:  // a length prefix made huge
                bytes.insert(contentsOf: [0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F], at: 0)
            }
        }
        return bytes
    }
}

/// Hand-built protobuf wire bytes.
public enum ProtobufWire {
    public static func varint(_ value: UInt64) -> [UInt8] {
        var value = value
        var bytes: [UInt8] = []
        repeat {
            var byte = UInt8(value & 0x7F)
            value >>= 7
            if value != 0 { byte |= 0x80 }
            bytes.append(byte)
        } while value != 0
        return bytes
    }
}
