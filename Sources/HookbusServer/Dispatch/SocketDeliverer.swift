import HookbusCore
import NIOCore
import Synchronization

/// Delivers to a client that subscribed on its connection: writes delivery
/// lines, in the order they start, and waits for the client's `ack` / `nack`.
///
/// When the connection goes away every delivery waiting for an answer fails
/// ("subscriber disconnected"), which schedules its retry: a durable subscriber
/// that comes back gets it again.
final class SocketDeliverer: Deliverer {
    private struct State {
        var nextID = 1
        var book = AnswerBook()
        var closed = false
    }

    let name: String
    let timeout: Duration
    private let outbound: NIOAsyncChannelOutboundWriter<ConnectionOutput>
    private let state = Mutex(State())
    private let lines: AsyncStream<[UInt8]>
    private let queue: AsyncStream<[UInt8]>.Continuation

    private let deadlines: Deadlines

    init(name: String, timeout: Duration, deadlines: Deadlines, outbound: NIOAsyncChannelOutboundWriter<ConnectionOutput>) {
        self.deadlines = deadlines
        self.name = name
        self.timeout = timeout
        self.outbound = outbound
        (lines, queue) = AsyncStream<[UInt8]>.makeStream()
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
            queue.yield(Reply.delivery(id: id, delivery))
            return id
        }
    }

    /// Writes the queued delivery lines, in order, until the connection ends.
    func run() async {
        for await line in lines {
            do {
                try await outbound.write(.bytes(ByteBuffer(bytes: line)))
            } catch {
                close()
                break
            }
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
            return state.book.answerAll(.interrupted("subscriber \(name) disconnected"))
        }
        queue.finish()
        for waiter in waiting { waiter.resume(returning: .interrupted("subscriber \(name) disconnected")) }
    }

    @discardableResult
    private func resolve(_ id: Int, _ result: AttemptResult) -> Bool {
        let (waiter, known) = state.withLock { $0.book.answer(id, result) }
        waiter?.resume(returning: result)
        return known
    }
}
