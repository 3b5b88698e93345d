import HookbusCore
import Synchronization

/// Per-subscriber counters kept in memory for the `stats` command.
final class SubscriberStats: Sendable {
    struct Snapshot: Sendable {
        var delivered: Int = 0
        var failedAttempts: Int = 0
        var retrying: Int = 0
        var dead: Int = 0
        var inFlight: Int = 0
        var cursor: Int64 = 0
        var lastError: String?
        var lastErrorAt: Int64?
        /// Delivery times: bucket i counts deliveries of at most 2^i microseconds.
        var buckets = [Int](repeating: 0, count: 40)

        /// The delivery time (µs, an upper bound) below which `fraction` of deliveries fall.
        func percentile(_ fraction: Double) -> Int64? {
            let total = buckets.reduce(0, +)
            guard total > 0 else { return nil }
            let target = Int((Double(total) * fraction).rounded(.up))
            var seen = 0
            for (index, count) in buckets.enumerated() {
                seen += count
                if seen >= max(target, 1) { return Int64(1) << Int64(index) }
            }
            return Int64(1) << 39
        }
    }

    let name: String
    let kind: String
    let types: [TypeFilter]
    private let state = Mutex(Snapshot())

    init(name: String, kind: String, types: [TypeFilter]) {
        self.name = name
        self.kind = kind
        self.types = types
    }

    var snapshot: Snapshot { state.withLock { $0 } }

    func update(_ body: (inout Snapshot) -> Void) {
        state.withLock { body(&$0) }
    }

    func recordDelivered(micros: Int64) {
        let bucket = min(39, max(0, 64 - (max(micros, 1) - 1).leadingZeroBitCount))
        state.withLock {
            $0.delivered += 1
            $0.buckets[bucket] += 1
        }
    }

    /// Adds the counters of an earlier connection of the same durable socket
    /// subscriber (`stats` counts since the broker started, not since the
    /// latest connection); the state of the moment (in flight, retrying,
    /// cursor, dead) is this one's own.
    func carryOver(_ earlier: Snapshot) {
        state.withLock {
            $0.delivered += earlier.delivered
            $0.failedAttempts += earlier.failedAttempts
            if $0.lastErrorAt == nil {
                $0.lastError = earlier.lastError
                $0.lastErrorAt = earlier.lastErrorAt
            }
            for index in $0.buckets.indices { $0.buckets[index] += earlier.buckets[index] }
        }
    }

    func recordFailure(_ error: String, at micros: Int64) {
        state.withLock {
            $0.failedAttempts += 1
            $0.lastError = error
            $0.lastErrorAt = micros
        }
    }
}
