import Synchronization

/// Tells dispatch that events up to a `seq` are committed. Listeners are
/// called on the committer's queue and must return quickly (they only wake a
/// subscriber up).
public final class SeqSignal: Sendable {
    private struct State {
        var last: Int64 = 0
        var listeners: [Int: @Sendable (Int64) -> Void] = [:]
        var nextToken = 0
    }

    private let state = Mutex(State())

    public init() {}

    public func publish(_ seq: Int64) {
        let listeners = state.withLock { state -> [@Sendable (Int64) -> Void] in
            state.last = max(state.last, seq)
            return Array(state.listeners.values)
        }
        for listener in listeners { listener(seq) }
    }

    /// Adds a listener; the token removes it again.
    @discardableResult
    public func listen(_ listener: @escaping @Sendable (Int64) -> Void) -> Int {
        state.withLock { state in
            defer { state.nextToken += 1 }
            state.listeners[state.nextToken] = listener
            return state.nextToken
        }
    }

    public func unlisten(_ token: Int) {
        state.withLock { _ = $0.listeners.removeValue(forKey: token) }
    }

    /// The highest committed seq announced so far.
    public var last: Int64 { state.withLock { $0.last } }
}
