/// When to try a failed delivery again, and when to give up.
///
/// One schedule serves every failure path (error, timeout, crash). The delay
/// before attempt `n + 1` is `min(initial * 2^(n-1), max)` with full jitter in
/// its upper half (a delay of `d` becomes a random value in `[d/2, d]`), or the
/// n-th entry of an explicit list (the last entry repeats), also jittered.
public struct RetryPolicy: Sendable, Equatable {
    public enum Schedule: Sendable, Equatable {
        case exponential(initial: Duration, max: Duration)
        case explicit([Duration])
    }

    public var maxAttempts: Int
    public var schedule: Schedule

    public init(maxAttempts: Int = 10, schedule: Schedule = .exponential(initial: .seconds(1), max: .seconds(300))) {
        self.maxAttempts = maxAttempts
        self.schedule = schedule
    }

    /// The delay before the attempt after `attempt` (1-based), before jitter.
    public func baseDelay(afterAttempt attempt: Int) -> Duration {
        switch schedule {
        case .exponential(let initial, let max):
            let exponent = Swift.max(0, Swift.min(attempt - 1, 40))
            let scaled = Double(initial.milliseconds) * Double(1 << Swift.min(exponent, 40))
            return .milliseconds(Int64(Swift.min(scaled, Double(max.milliseconds))))
        case .explicit(let list):
            guard let last = list.last else { return .zero }
            return attempt - 1 < list.count ? list[Swift.max(0, attempt - 1)] : last
        }
    }

    /// The jittered delay before the attempt after `attempt`; `unit` is a random
    /// value in [0, 1) (injected so tests are deterministic).
    public func delay(afterAttempt attempt: Int, unit: Double) -> Duration {
        let base = baseDelay(afterAttempt: attempt).milliseconds
        return .milliseconds(base / 2 + Int64(Double(base - base / 2) * unit))
    }

    /// True when `attempt` failed attempts mean the delivery is dead.
    public func exhausted(after attempt: Int) -> Bool {
        attempt >= maxAttempts
    }
}

extension Duration {
    /// Whole milliseconds.
    public var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// Whole microseconds.
    public var microseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    }

    /// Parses `250ms`, `30s`, `5m`, `2h` (an integer and a unit).
    public static func parse(_ text: String) -> Duration? {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            // "5ms" also ends in "s": the "ms" entry is tried first.
            guard !number.isEmpty, number.allSatisfy(\.isASCII), number.allSatisfy(\.isNumber),
                  let value = Int64(number), value <= Int64.max / factor / 1000 else { return nil }
            return .milliseconds(value * factor)
        }
        return nil
    }

    /// `1500ms`, `30s`, `5m`: the shortest exact spelling.
    public var spelled: String {
        let ms = milliseconds
        if ms % 3_600_000 == 0 && ms > 0 { return "\(ms / 3_600_000)h" }
        if ms % 60_000 == 0 && ms > 0 { return "\(ms / 60_000)m" }
        if ms % 1000 == 0 && ms > 0 { return "\(ms / 1000)s" }
        return "\(ms)ms"
    }
}
