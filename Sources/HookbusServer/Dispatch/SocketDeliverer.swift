import HookbusCore
import NIOCore
import Synchronization

/// Delivers to a client that subscribed on its connection: writes delivery
/// lines, in the order they start, and waits for the client's `ack` / `nack`.
///
/// When the connection goes away every delivery waiting for an answer fails
/// ("subscriber disconnected"), which schedules its retry: a durable subscriber
/// that comes back gets it again.
///
/// A line not written yet when its delivery is answered (timed out, most
/// likely: the client does not read) is dropped, not written late: what waits
/// here is at most the deliveries open, `window` of them, however long the
/// client leaves them (each retry used to queue one more copy).
final class SocketDeliverer: Deliverer {
    private struct State {
        var nextID = 1
        var book = AnswerBook()
        var closed = false
        /// Delivery lines not handed to the connection yet, in the order their deliveries started.
        var unsent = CircularBuffer<(id: Int, line: [UInt8])>()
    }

    let name: String
    let timeout: Duration
    private let outbound: NIOAsyncChannelOutboundWriter<ConnectionOutput>
    private let state = Mutex(State())
    /// Tells `run` that `unsent` has lines (or that the connection ended).
    private let wakes: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation

    private let deadlines: Deadlines

    init(name: String, timeout: Duration, deadlines: Deadlines, outbound: NIOAsyncChannelOutboundWriter<ConnectionOutput>) {
        self.deadlines = deadlines
        self.name = name
        self.timeout = timeout
        self.outbound = outbound
        (wakes, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    var usesGlobalLimit: Bool { false }

    func prepare(_ delivery: Delivery) -> Int {
        state.withLock { state -> Int in
            let id = state.nextID
            state.nextID += 1
            if state.closed {
                state.book.opened(id)
                _ = state.book.answer(id, .interrupted("subscriber \(name) disconnected"))
                return id
            }
            state.book.opened(id)
            state.unsent.append((id, Reply.delivery(id: id, delivery)))
            wake.yield()
            return id
        }
    }

    /// Writes the delivery lines, in order, until the connection ends.
    func run() async {
        for await _ in wakes {
            while let line = nextLine() {
                do {
                    try await outbound.write(.bytes(ByteBuffer(bytes: line)))
                } catch {
                    close()
                    return
                }
            }
        }
    }

    /// The next line to write: of a delivery still waiting for its answer.
    private func nextLine() -> [UInt8]? {
        state.withLock { state in
            while let next = state.unsent.popFirst() {
                if state.book.open.contains(next.id) { return next.line }
            }
            return nil
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
    func close() {
        let waiting = state.withLock { state -> [CheckedContinuation<AttemptResult, Never>] in
            state.closed = true
            state.unsent.removeAll()
            return state.book.answerAll(.interrupted("subscriber \(name) disconnected"))
        }
        wake.finish()
        for waiter in waiting { waiter.resume(returning: .interrupted("subscriber \(name) disconnected")) }
    }

    @discardableResult
    private func resolve(_ id: Int, _ result: AttemptResult) -> Bool {
        let (waiter, known) = state.withLock { state in
            let answered = state.book.answer(id, result)
            // Not written yet: it never will be (the retry gets a line of its own).
            if answered.1, state.unsent.contains(where: { $0.id == id }) { state.unsent.removeAll { $0.id == id } }
            return answered
        }
        waiter?.resume(returning: result)
        return known
    }
}
