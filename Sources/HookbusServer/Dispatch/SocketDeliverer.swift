import HookbusCore
import Logging
import NIOCore
import Synchronization

/// Delivers to a client that subscribed on its connection: writes delivery
/// lines, in the order they start, and waits for the client's `ack` / `nack`.
///
/// When the connection goes away every delivery waiting for an answer fails
/// ("subscriber disconnected"), which schedules its retry: a durable subscriber
/// that comes back gets it again.
///
/// Bounded: a client that stops reading first fills its socket and the
/// channel's outbound buffer, and then the lines wait here; each attempt that
/// times out meanwhile adds its retry's line. Once more than `unwrittenLimit`
/// lines wait (two windows: a window of attempts has timed out without the
/// client taking a byte), the broker closes the connection, as Redis closes a
/// client past its output buffer limit. Everything waiting is then retried,
/// and a durable subscriber that reconnects resumes from its cursor.
final class SocketDeliverer: Deliverer {
    private struct State {
        var nextID = 1
        var book = AnswerBook()
        var closed = false
        var closedReason = ""
    }

    let name: String
    let timeout: Duration
    private let outbound: NIOAsyncChannelOutboundWriter<ConnectionOutput>
    private let state = Mutex(State())
    /// The delivery lines not yet taken by the channel, in the order they started.
    private let lines = LineQueue()

    private let deadlines: Deadlines
    /// Lines queued and not yet taken by the channel (an atomic operation a
    /// line and one a write; the bounded queues tried in the twelfth session
    /// cost about 20 % of publish-to-subscriber latency).
    private let unwritten = Atomic<Int>(0)
    /// More lines than this waiting, and the connection is closed.
    let unwrittenLimit: Int
    /// Closes the connection (its reading loop then ends the subscription).
    private let disconnect: @Sendable () -> Void
    private let logger: Logger

    init(
        name: String, timeout: Duration, window: Int, deadlines: Deadlines, logger: Logger,
        outbound: NIOAsyncChannelOutboundWriter<ConnectionOutput>, disconnect: @escaping @Sendable () -> Void
    ) {
        self.deadlines = deadlines
        self.name = name
        self.timeout = timeout
        self.unwrittenLimit = 2 * max(window, 1)
        self.logger = logger
        self.outbound = outbound
        self.disconnect = disconnect
    }

    var usesGlobalLimit: Bool { false }

    var accepting: Bool { state.withLock { !$0.closed } }

    func prepare(_ delivery: Delivery) -> Int {
        let (id, queued) = state.withLock { state -> (Int, Bool) in
            let id = state.nextID
            state.nextID += 1
            state.book.opened(id)
            if state.closed {
                _ = state.book.answer(id, .interrupted(state.closedReason))
                return (id, false)
            }
            // Pushed under the lock: lines go out in the order their ids were given.
            lines.push(Reply.delivery(id: id, delivery))
            return (id, true)
        }
        if queued && unwritten.add(1, ordering: .relaxed).newValue > unwrittenLimit { stoppedReading() }
        return id
    }

    /// The client has not read a window of lines whose attempts all timed out.
    private func stoppedReading() {
        let reason = "subscriber \(name) stopped reading: more than \(unwrittenLimit) delivery lines were waiting to be "
            + "written after their attempts timed out; the broker closed its connection"
        guard close(reason) else { return }
        logger.warning("closing a socket subscriber that stopped reading", metadata: [
            "hookbus.subscriber": "\(name)", "hookbus.unwritten": "\(unwrittenLimit + 1)",
        ])
        disconnect()
    }

    /// Writes the queued delivery lines, in order, until the connection ends
    /// (`LineQueue`: a write waits until the channel takes it, so a client
    /// that stops reading holds at most one write more in the channel).
    func run() async {
        do {
            try await lines.run { batch in
                var buffer = ByteBufferAllocator().buffer(capacity: batch.reduce(0) { $0 + $1.count })
                for line in batch { buffer.writeBytes(line) }
                try await outbound.write(.bytes(buffer))
                unwritten.subtract(batch.count, ordering: .relaxed)
            }
        } catch {
            close()
        }
    }

    func deliver(_ delivery: Delivery, ticket id: Int) async -> AttemptResult {
        await awaitAnswer(
            deadlines: deadlines, timeout: timeout,
            timedOut: { [name, timeout] in "subscriber \(name) did not ack delivery \(id) within \(timeout.spelled)" },
            cancelled: "delivery cancelled",
            register: { continuation in self.state.withLock { $0.book.wait(id, continuation) } },
            resolve: { self.resolve(id, $0) })
    }

    /// Applies an `ack`; false if no delivery with that number is waiting.
    @discardableResult
    func ack(_ id: Int) -> Bool {
        resolve(id, .delivered)
    }

    /// Applies a `nack`: retried unless `retry` is false (dead letter at once).
    @discardableResult
    func nack(_ id: Int, retry: Bool, error: String?) -> Bool {
        let text = error ?? "nack from subscriber \(name)"
        return resolve(id, retry ? .failed(text) : .rejected(text))
    }

    /// The connection is gone: fail everything waiting, accept nothing more.
    /// False if it was closed already.
    @discardableResult
    func close(_ reason: String? = nil) -> Bool {
        let reason = reason ?? "subscriber \(name) disconnected"
        let waiting = state.withLock { state -> [CheckedContinuation<AttemptResult, Never>]? in
            if state.closed { return nil }
            state.closed = true
            state.closedReason = reason
            return state.book.answerAll(.interrupted(reason))
        }
        guard let waiting else { return false }
        lines.finish()
        for waiter in waiting { waiter.resume(returning: .interrupted(reason)) }
        return true
    }

    @discardableResult
    private func resolve(_ id: Int, _ result: AttemptResult) -> Bool {
        let (waiter, known) = state.withLock { $0.book.answer(id, result) }
        waiter?.resume(returning: result)
        return known
    }
}
