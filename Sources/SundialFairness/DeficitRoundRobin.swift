/// Weighted deficit round robin across keys (tenants), with strict priority within a key.
///
/// Each key with queued items is visited in turn; on its turn it is credited
/// `quantum × weight` and may dequeue items while their cost fits its credit (the *deficit*).
/// Over many rounds every backlogged key gets service in proportion to its weight, whatever its
/// backlog — a whale with a million items and a tenant with three are served in the same round —
/// at O(1) amortised per item. Within a key, `high` items go before `normal` before `low`, and
/// equal priorities keep their arrival order.
///
/// Pure and bounded: the scheduler never holds more than `capacity` items (`enqueue` refuses
/// beyond it, so the caller can leave work in the broker instead — nak it, or not fetch it), and
/// `dequeue(limit:)` returns at most `limit` items. A key's state is dropped as soon as its queue
/// is empty, so memory is proportional to the items held.
///
/// `dequeue` can consult an admission check per item (a token bucket): a key that is refused
/// ends its turn, loses its unused credit (no credit is hoarded while throttled), and is not
/// visited again in that call; its items stay queued.
public struct DeficitRoundRobin<Key: Hashable & Sendable, Item: Sendable>: Sendable {
    public static var minimumWeight: Double { 1e-3 }

    /// Credit per visit for a key of weight 1, in cost units (items cost 1 unless told).
    public let quantum: Double
    /// The most items held at once.
    public let capacity: Int
    /// Weight of a key whose first `enqueue` does not give one.
    public let defaultWeight: Double

    private struct Entry: Sendable {
        var item: Item
        var cost: Double
    }

    private struct KeyState: Sendable {
        var queues: [FIFO<Entry>] = [FIFO(), FIFO(), FIFO()]  // by JobPriority.rawValue
        var deficit: Double = 0
        var weight: Double
        var count = 0

        var head: Entry? {
            for q in queues { if let e = q.first { return e } }
            return nil
        }

        mutating func popHead() -> Entry? {
            for p in 0..<queues.count where !queues[p].isEmpty {
                count -= 1
                return queues[p].popFirst()
            }
            return nil
        }
    }

    private var states: [Key: KeyState] = [:]
    /// Keys with queued items, in visiting order; the first one is the key whose turn it is.
    private var ring = FIFO<Key>()
    /// The first key of `ring` has already been credited for its current turn (a previous
    /// `dequeue` stopped at its `limit` in the middle of that turn).
    private var frontCredited = false
    public private(set) var count = 0

    public init(quantum: Double = 1, capacity: Int = .max, defaultWeight: Double = 1) {
        self.quantum = quantum.isFinite && quantum > 0 ? quantum : 1
        self.capacity = max(capacity, 0)
        self.defaultWeight = Self.sanitisedWeight(defaultWeight)
    }

    public var isEmpty: Bool { count == 0 }
    public var isFull: Bool { count >= capacity }
    /// Keys with at least one queued item.
    public var activeKeys: Int { states.count }

    public func count(for key: Key) -> Int { states[key]?.count ?? 0 }

    /// Queues `item` for `key`. `weight`, if given, (re)sets the key's weight while it stays
    /// active; `cost` is what the item uses of the key's credit (NaN or negative: 1).
    /// Returns `false` — and keeps nothing — if the scheduler is at `capacity`.
    @discardableResult
    public mutating func enqueue(
        _ item: Item, for key: Key, priority: JobPriority = .normal, cost: Double = 1,
        weight: Double? = nil
    ) -> Bool {
        guard count < capacity else { return false }
        let entry = Entry(item: item, cost: cost.isNaN || cost < 0 ? 1 : cost)
        if var state = states.removeValue(forKey: key) {
            if let weight { state.weight = Self.sanitisedWeight(weight) }
            state.queues[priority.rawValue].append(entry)
            state.count += 1
            states[key] = state
        } else {
            var state = KeyState(weight: weight.map(Self.sanitisedWeight) ?? defaultWeight)
            state.queues[priority.rawValue].append(entry)
            state.count = 1
            states[key] = state
            ring.append(key)
        }
        count += 1
        return true
    }

    /// Changes the weight of an active key (no effect on a key with nothing queued).
    public mutating func setWeight(_ weight: Double, for key: Key) {
        guard states[key] != nil else { return }
        states[key]!.weight = Self.sanitisedWeight(weight)
    }

    /// Dequeues up to `limit` items in weighted round-robin order. `admit` is asked right before
    /// each item is handed out (e.g. "take a token from this tenant's bucket"); if it says no,
    /// that key's turn ends and it is skipped for the rest of this call. Stops when `limit` items
    /// are out, nothing is queued, or every key with items was refused.
    public mutating func dequeue(
        limit: Int, admit: (Key, Item) -> Bool = { _, _ in true }
    ) -> [(key: Key, item: Item)] {
        var out: [(key: Key, item: Item)] = []
        guard limit > 0 else { return out }
        out.reserveCapacity(min(limit, count))
        var refused = Set<Key>()

        while out.count < limit, let key = ring.first {
            if refused.count >= ring.count { break }
            if refused.contains(key) {
                rotate()
                continue
            }
            var state = states.removeValue(forKey: key)!
            if !frontCredited {
                state.deficit += quantum * state.weight
                frontCredited = true
            }
            var turnOver = false
            while out.count < limit, let head = state.head {
                if head.cost > state.deficit {
                    turnOver = true
                    break
                }
                if !admit(key, head.item) {
                    refused.insert(key)
                    state.deficit = 0
                    turnOver = true
                    break
                }
                _ = state.popHead()
                state.deficit -= head.cost
                count -= 1
                out.append((key, head.item))
            }
            if state.count == 0 {
                // Idle keys keep no credit (classic DRR) and no state.
                _ = ring.popFirst()
                frontCredited = false
                continue
            }
            states[key] = state
            if turnOver {
                rotate()
            } else {
                break  // limit reached mid-turn: the key keeps its turn and its credit
            }
        }
        return out
    }

    /// Dequeues one item (weighted round-robin order), if any.
    public mutating func dequeue() -> (key: Key, item: Item)? {
        dequeue(limit: 1).first
    }

    /// Removes and returns every item queued for `key`, highest priority first.
    public mutating func removeAll(for key: Key) -> [Item] {
        guard var state = states.removeValue(forKey: key) else { return [] }
        var items: [Item] = []
        items.reserveCapacity(state.count)
        for p in 0..<state.queues.count {
            items.append(contentsOf: state.queues[p].removeAll().map(\.item))
        }
        count -= items.count
        // Drop the key from the ring, keeping the others' order.
        let wasFront = ring.first == key
        let keys = ring.removeAll()
        for k in keys where k != key { ring.append(k) }
        if wasFront { frontCredited = false }
        return items
    }

    /// Removes and returns everything, key by key in visiting order.
    public mutating func removeAll() -> [(key: Key, item: Item)] {
        var out: [(key: Key, item: Item)] = []
        out.reserveCapacity(count)
        for key in ring.elements {
            guard var state = states[key] else { continue }
            for p in 0..<state.queues.count {
                out.append(contentsOf: state.queues[p].removeAll().map { (key, $0.item) })
            }
        }
        states = [:]
        _ = ring.removeAll()
        frontCredited = false
        count = 0
        return out
    }

    private mutating func rotate() {
        if let k = ring.popFirst() { ring.append(k) }
        frontCredited = false
    }

    private static func sanitisedWeight(_ w: Double) -> Double {
        guard w.isFinite else { return w == .infinity ? 1e6 : 1 }
        return min(max(w, minimumWeight), 1e6)
    }
}
