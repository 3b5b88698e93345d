import Synchronization

/// Bounds how many lines a kind of log message may write: a token bucket of
/// `burst` lines refilled at `perSecond`, shared by every connection, so that
/// a client sending refused lines as fast as it can (or opening connections
/// past `max_connections`) cannot fill the disk with the log. A line left
/// out is counted, and the next line logged says how many were.
///
/// Only refusals take it, so its lock is not on the path of accepted events.
final class LogLimiter: Sendable {
    private struct State {
        var tokens: Double
        var refilled: ContinuousClock.Instant
        var suppressed = 0
    }

    let perSecond: Double
    let burst: Double
    private let state: Mutex<State>

    init(perSecond: Double = 10, burst: Double = 20, now: ContinuousClock.Instant = .now) {
        self.perSecond = perSecond
        self.burst = burst
        state = Mutex(State(tokens: burst, refilled: now))
    }

    /// Nil if this line is to be left out; otherwise how many were left out
    /// since the last line logged.
    func admit(now: ContinuousClock.Instant = .now) -> Int? {
        state.withLock { state -> Int? in
            let elapsed = now - state.refilled
            if elapsed > .zero {
                let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
                state.tokens = min(burst, state.tokens + seconds * perSecond)
                state.refilled = now
            }
            guard state.tokens >= 1 else {
                state.suppressed += 1
                return nil
            }
            state.tokens -= 1
            defer { state.suppressed = 0 }
            return state.suppressed
        }
    }
}
