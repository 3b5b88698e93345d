import HookbusCore
import NIOCore

/// What the async side of a connection (`Connection`, and a socket
/// subscription's deliveries) writes: bytes, or the mark that every reply to a
/// batch it was handed has been written.
enum ConnectionOutput: Sendable {
    case bytes(ByteBuffer)
    case batchAnswered
}

/// The mark that a batch handed to `Connection` got no reply at all (acks):
/// sent as a user outbound event, so it does not wait, as a write would, for
/// the client to read what is queued for it (a subscriber's deliveries).
struct BatchAnsweredEvent: Sendable {}

/// The ingest fast path, on the connection's event loop.
///
/// A batch of lines that holds only events (and lines refused outright) is
/// decoded here, handed to the committer, and answered from here when the
/// commit is done: the event loop and the writer thread are the only threads
/// a publish touches. Batches keep flowing while earlier ones are being
/// committed, so a connection's batches share group commits; their replies
/// are still written in the order the lines came.
///
/// A batch with a command (`ping`, `subscribe`, `ack`, operator commands, ...)
/// goes on to the async `Connection`, once every fast batch before it is
/// answered; while the `Connection` has batches to answer, later batches go to
/// it too, so replies never overtake each other. `Connection` writes
/// `.batchAnswered` after the replies to each batch it was handed (or sends
/// `BatchAnsweredEvent` for a batch that got none).
///
/// Back-pressure: no more is read from the socket while
/// `max_inflight_per_connection` batches wait to be answered, or while the
/// replies of that many batches wait for the client to read them.
final class IngestHandler: ChannelDuplexHandler {
    typealias InboundIn = FrameBatch
    typealias InboundOut = FrameBatch
    typealias OutboundIn = ConnectionOutput
    typealias OutboundOut = ByteBuffer

    /// A batch read and not yet answered or handed on.
    private struct Held {
        var batch: FrameBatch
        var decoded: Decoded?
    }

    /// How far the event loop got with a held batch.
    private enum Decoded {
        /// Events and refusals only: answered here.
        case publishOnly(events: [NewEvent], slots: [Ingest.Slot])
        /// A command among them: for `Connection`.
        case other
    }

    /// A batch handed to the committer, in submission order.
    private struct Committing {
        var slots: [Ingest.Slot]
        var outcome: Committer.Outcome?
    }

    private let ingest: Ingest
    private let limit: Int
    /// Every batch goes to `Connection` (a connection refused at the door).
    private let forwardAll: Bool
    private var held: [Held] = []
    private var committing: [Committing] = []
    /// The ticket of `committing.first`.
    private var firstTicket = 0
    /// Batches handed to `Connection` and not answered yet.
    private var forwarded = 0
    /// The client closed its side; passed on once everything before it is answered.
    private var inputClosed: Any?
    private var readPending = false
    private var context: ChannelHandlerContext?
    /// Writes passed toward the socket and not written out yet.
    private var unwritten = 0
    /// The fast path's reply writes among them.
    private var repliesUnwritten = 0
    /// A close waiting for `unwritten` to reach 0.
    private struct HeldClose {
        var context: ChannelHandlerContext
        var mode: CloseMode
        var promise: EventLoopPromise<Void>?
        var timeout: Scheduled<Void>
    }
    private var heldClose: HeldClose?

    init(ingest: Ingest, maxInflightBatches: Int, forwardAll: Bool = false) {
        self.ingest = ingest
        self.limit = max(1, maxInflightBatches)
        self.forwardAll = forwardAll
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        releaseClose()
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        held.append(Held(batch: unwrapInboundIn(data)))
        process(context: context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            inputClosed = event
            process(context: context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        context.fireChannelWritabilityChanged()
        readIfAllowed(context: context)
    }

    /// Answers or hands on every held batch that may go now, in order.
    private func process(context: ChannelHandlerContext) {
        while !held.isEmpty {
            if forwardAll || forwarded > 0 {
                // `Connection` answers in order: anything after one of its batches goes to it too.
                forward(held.removeFirst().batch, context: context)
                continue
            }
            if held[0].decoded == nil, !held[0].batch.isLast {
                held[0].decoded = ingest.decodePublishOnly(held[0].batch.frames).map { .publishOnly(events: $0.events, slots: $0.slots) }
                    ?? .other
            }
            if case .publishOnly(let events, let slots)? = held[0].decoded {
                held.removeFirst()
                commit(events, slots: slots, context: context)
                continue
            }
            // Commands (or the last batch before shutdown): once the fast batches before it are answered.
            if !committing.isEmpty { break }
            forward(held.removeFirst().batch, context: context)
        }
        if held.isEmpty, committing.isEmpty, let event = inputClosed {
            inputClosed = nil
            context.fireUserInboundEventTriggered(event)
        }
        readIfAllowed(context: context)
    }

    private func forward(_ batch: FrameBatch, context: ChannelHandlerContext) {
        forwarded += 1
        context.fireChannelRead(wrapInboundOut(batch))
        context.fireChannelReadComplete()
    }

    private func commit(_ events: [NewEvent], slots: [Ingest.Slot], context: ChannelHandlerContext) {
        let ticket = firstTicket + committing.count
        committing.append(Committing(slots: slots))
        if events.isEmpty {
            finished(ticket, .success([]), context: context)
            return
        }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        ingest.committer.submit(events: events, ops: [], mayWriteInline: true) { outcome in
            eventLoop.execute {
                guard let context = handler.value.context else { return }
                handler.value.finished(ticket, outcome, context: context)
                handler.value.process(context: context)
            }
        }
    }

    /// Writes the replies of every batch committed so far that has no earlier
    /// batch still committing.
    private func finished(_ ticket: Int, _ outcome: Committer.Outcome, context: ChannelHandlerContext) {
        committing[ticket - firstTicket].outcome = outcome
        var wrote = false
        while let first = committing.first, let outcome = first.outcome {
            committing.removeFirst()
            firstTicket += 1
            let replies = ingest.answer(first.slots, committed: outcome)
            send(context.channel.allocator.buffer(bytes: replies), promise: nil, reply: true, context: context)
            wrote = true
        }
        if wrote { context.flush() }
    }

    // MARK: outbound

    /// Writes toward the socket, counting what is not written out yet.
    private func send(_ buffer: ByteBuffer, promise: EventLoopPromise<Void>?, reply: Bool = false, context: ChannelHandlerContext) {
        let written = context.eventLoop.makePromise(of: Void.self)
        unwritten += 1
        if reply { repliesUnwritten += 1 }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        written.futureResult.whenComplete { _ in
            let this = handler.value
            this.unwritten -= 1
            if reply {
                this.repliesUnwritten -= 1
                if let context = this.context { this.readIfAllowed(context: context) }
            }
            if this.unwritten == 0 { this.releaseClose() }
        }
        if let promise { written.futureResult.cascade(to: promise) }
        context.write(wrapOutboundOut(buffer), promise: written)
    }

    /// Closing drops what NIO has not written to the socket yet: a client that
    /// closed its side and is still reading its replies would lose the last ones.
    /// So a close waits until everything is written, or `closeGrace` at most (a
    /// client that reads nothing must not keep its connection forever).
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all, unwritten > 0, heldClose == nil else {
            context.close(mode: mode, promise: promise)
            return
        }
        context.flush()
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let timeout = context.eventLoop.scheduleTask(in: Self.closeGrace) {
            handler.value.releaseClose()
        }
        heldClose = HeldClose(context: context, mode: mode, promise: promise, timeout: timeout)
    }

    /// Lets a held close go on (if the handler is still in its pipeline).
    private func releaseClose() {
        guard let close = heldClose else { return }
        heldClose = nil
        close.timeout.cancel()
        if context != nil {
            close.context.close(mode: close.mode, promise: close.promise)
        } else {
            close.promise?.fail(ChannelError.alreadyClosed)
        }
    }

    static let closeGrace: TimeAmount = .seconds(5)

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .bytes(let buffer):
            send(buffer, promise: promise, context: context)
        case .batchAnswered:
            batchAnswered(promise: promise, context: context)
        }
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard event is BatchAnsweredEvent else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        batchAnswered(promise: promise, context: context)
    }

    /// `Connection` has answered one of the batches it was handed.
    private func batchAnswered(promise: EventLoopPromise<Void>?, context: ChannelHandlerContext) {
        forwarded -= 1
        promise?.succeed(())
        process(context: context)
    }

    func read(context: ChannelHandlerContext) {
        if mayRead(context: context) {
            context.read()
        } else {
            readPending = true
        }
    }

    /// Reading stops while `limit` batches wait to be answered, or while the
    /// replies of `limit` batches wait for the client to read them. Not on
    /// the channel's writability: a socket subscriber's deliveries fill it too,
    /// and its acks (which get no reply) must still be read, or a client that
    /// blocks writing its acks and the broker writing deliveries wait on each
    /// other. (`Connection`'s writes wait for writability by themselves.)
    private func mayRead(context: ChannelHandlerContext) -> Bool {
        inputClosed == nil && held.count + committing.count + forwarded < limit && repliesUnwritten < limit
    }

    private func readIfAllowed(context: ChannelHandlerContext) {
        if readPending, mayRead(context: context) {
            readPending = false
            context.read()
        }
    }
}

