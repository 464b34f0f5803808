import Foundation

/// Deterministic jitter. The offset of an occurrence depends only on (timer id, occurrence
/// number, jitter window), so a re-planned timer never moves:
///
///     h = FNV-1a-64( utf8(timerID) ++ [0xFF] ++ littleEndian64(occurrence) )
///     h = SplitMix64-finalizer(h)
///     offsetMs = (h * jitterMs) >> 64          // uniform in [0, jitterMs)
///
/// Swift's `Hasher` is randomly seeded per process and must not be used for this.
public enum ScheduleJitter {
    public static func hash(timerID: String, occurrence: UInt64) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        @inline(__always) func mix(_ byte: UInt8) {
            h ^= UInt64(byte)
            h = h &* 0x0000_0100_0000_01b3
        }
        for b in timerID.utf8 { mix(b) }
        mix(0xFF)  // not valid UTF-8, so ids cannot collide with the number's bytes
        var o = occurrence
        for _ in 0..<8 {
            mix(UInt8(truncatingIfNeeded: o))
            o >>= 8
        }
        return splitMix64Finalize(h)
    }

    @inline(__always)
    public static func splitMix64Finalize(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// Offset in whole milliseconds within [0, window); zero when the window is under 1 ms.
    public static func offset(window: Duration, timerID: String, occurrence: UInt64) -> Duration {
        let ms = window.wholeMilliseconds
        guard ms > 0 else { return .zero }
        let h = hash(timerID: timerID, occurrence: occurrence)
        return .milliseconds(Int64(h.multipliedFullWidth(by: UInt64(ms)).high))
    }
}

extension TimerSchedule {
    /// The jitter offset of one occurrence, in [0, jitter); `.zero` without jitter.
    /// Occurrences are numbered from 0 (the same number the Dispatcher puts in message ids).
    public func jitterOffset(timerID: String, occurrence: UInt64) -> Duration {
        guard let jitter, jitter > .zero else { return .zero }
        return ScheduleJitter.offset(window: jitter, timerID: timerID, occurrence: occurrence)
    }

    /// When an occurrence actually fires: nominal time plus its jitter offset.
    public func fireTime(nominal: Date, timerID: String, occurrence: UInt64) -> Date {
        nominal.addingTimeInterval(jitterOffset(timerID: timerID, occurrence: occurrence).seconds)
    }
}
