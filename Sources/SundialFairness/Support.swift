#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

extension Duration {
    /// This duration in seconds as a `Double` (exact to about 1e-16 relative).

    var fairnessSeconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}

enum FairnessMath {
    /// e^x, from the C library.
    static func expo(_ x: Double) -> Double { exp(x) }

    /// A finite, non-negative value: NaN and negatives become 0, +∞ (and anything above `cap`)
    /// becomes `cap`.
    static func nonNegative(_ x: Double, cap: Double = .greatestFiniteMagnitude) -> Double {
        guard !x.isNaN, x > 0 else { return 0 }
        return min(x, cap)
    }
}

/// A FIFO queue with amortised O(1) operations: an array and a head index, compacted once the
/// consumed prefix is at least half of the storage (memory stays within 2× the live elements).
struct FIFO<Element> {
    private var storage: [Element] = []
    private var head = 0

    init() {}

    var isEmpty: Bool { head == storage.count }
    var count: Int { storage.count - head }
    var first: Element? { head < storage.count ? storage[head] : nil }

    mutating func append(_ element: Element) { storage.append(element) }

    mutating func popFirst() -> Element? {
        guard head < storage.count else { return nil }
        let element = storage[head]
        head += 1
        if head == storage.count {
            storage.removeAll(keepingCapacity: storage.count <= 1024)
            head = 0
        } else if head >= 64 && head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return element
    }

    /// Removes and returns every element, in order.
    mutating func removeAll() -> [Element] {
        let out = Array(storage[head...])
        storage = []
        head = 0
        return out
    }

    var elements: ArraySlice<Element> { storage[head...] }

    /// Changes the newest element in place (nothing if empty).
    mutating func updateLast(_ change: (inout Element) -> Void) {
        guard head < storage.count else { return }
        change(&storage[storage.count - 1])
    }
}

extension FIFO: Sendable where Element: Sendable {}

/// JSON with sorted keys, so the same value always gives the same bytes (plans and pause lists
/// in KV are compared and diffed as bytes).
enum StableJSON {
    static func encode(_ value: some Encodable) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(value))
    }
}
