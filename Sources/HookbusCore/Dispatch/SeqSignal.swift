import Synchronization

/// Tells dispatch that events up to a `seq` are committed. Listeners are
/// called on the committer's queue and must return quickly (they only wake a
/// subscriber up).
public final class SeqSignal: Sendable {
    private struct State {
        var last: Int64 = 0
        var listeners: [@Sendable (Int64) -> Void] = []
    }

    private let state = Mutex(State())

    public init() {}

    public func publish(_ seq: Int64) {
        let listeners = state.withLock { state -> [@Sendable (Int64) -> Void] in
            state.last = max(state.last, seq)
            return state.listeners
        }
        for listener in listeners { listener(seq) }
    }

    public func listen(_ listener: @escaping @Sendable (Int64) -> Void) {
        state.withLock { $0.listeners.append(listener) }
    }

    /// The highest committed seq announced so far.
    public var last: Int64 { state.withLock { $0.last } }
}
