import HookbusCore
@testable import HookbusServer
import Logging
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

/// The event-loop fast path on an embedded channel, with commits that finish
/// only when the test says so: the orders that timing makes rare on a real
/// socket happen here every time.
@Suite("IngestHandler: order and back-pressure")
struct IngestHandlerTests {
    /// A committer whose commits wait for `finish`.
    final class HeldCommits: EventCommitting {
        struct Pending {
            var events: [NewEvent]
            var completion: @Sendable (Committer.Outcome) -> Void
        }
        private let pending = Mutex<[Pending]>([])
        private let nextSeq = Atomic<Int64>(1)

        func submit(events: [NewEvent], ops: [LedgerOp], mayWriteInline: Bool,
                    completion: @escaping @Sendable (Committer.Outcome) -> Void) {
            pending.withLock { $0.append(Pending(events: events, completion: completion)) }
        }

        var count: Int { pending.withLock { $0.count } }

        /// Commits the `index`th waiting submission (0 = the oldest still waiting).
        func finish(_ index: Int = 0) {
            let taken = pending.withLock { $0.remove(at: index) }
            let outcomes = taken.events.map { event in
                AppendOutcome.stored(seq: nextSeq.add(1, ordering: .relaxed).oldValue, id: event.id)
            }
            taken.completion(.success(outcomes))
        }
    }

    /// Records what passes the handler toward the async side.
    final class Downstream: ChannelInboundHandler, Sendable {
        typealias InboundIn = FrameBatch
        private let state = Mutex<(batches: [FrameBatch], events: [String])>(([], []))

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let batch = unwrapInboundIn(data)
            state.withLock { $0.batches.append(batch) }
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            state.withLock { $0.events.append("\(event)") }
        }

        var batches: [FrameBatch] { state.withLock { $0.batches } }
        var events: [String] { state.withLock { $0.events } }
    }

    /// Counts the reads that reach the socket.
    final class ReadCounter: ChannelOutboundHandler, Sendable {
        typealias OutboundIn = ByteBuffer
        private let reads = Atomic<Int>(0)
        func read(context: ChannelHandlerContext) {
            reads.add(1, ordering: .relaxed)
            context.read()
        }
        var count: Int { reads.load(ordering: .relaxed) }
    }

    /// Toward the socket: holds every write's promise until `release`, and records closes.
    final class SlowSocket: ChannelOutboundHandler, @unchecked Sendable {
        typealias OutboundIn = ByteBuffer
        var held: [EventLoopPromise<Void>] = []
        var closes = 0
        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            let mine = context.eventLoop.makePromise(of: Void.self)
            held.append(mine)
            context.write(data, promise: nil)
            if let promise { mine.futureResult.cascade(to: promise) }
        }
        func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
            closes += 1
            context.close(mode: mode, promise: promise)
        }
        func release() {
            let promises = held
            held = []
            for promise in promises { promise.succeed(()) }
        }
    }

    struct Bed {
        let channel: EmbeddedChannel
        let commits = HeldCommits()
        let downstream = Downstream()
        let reads = ReadCounter()

        let socket = SlowSocket()

        init(maxInflightBatches: Int = 8, slowSocket: Bool = false) throws {
            channel = EmbeddedChannel()
            let ingest = Ingest(decoder: RequestDecoder(), producer: Producer(uid: 1000, gid: 1000, pid: 42),
                                access: AccessPolicy(), committer: commits, logger: Logger(label: "test"))
            if slowSocket { try channel.pipeline.syncOperations.addHandler(socket) }
            try channel.pipeline.syncOperations.addHandlers(
                reads, IngestHandler(ingest: ingest, maxInflightBatches: maxInflightBatches), downstream)
        }

        func send(_ lines: String...) throws {
            let frames = lines.map { Frame.line(Array($0.utf8)) }
            try channel.writeInbound(FrameBatch(frames: frames))
        }

        /// The async side answers: its reply bytes, then the end-of-batch mark.
        func answer(_ reply: String) throws {
            try channel.writeOutbound(ConnectionOutput.bytes(ByteBuffer(string: reply + "\n")))
            try channel.writeOutbound(ConnectionOutput.batchAnswered)
        }

        /// Runs what the committer's completions scheduled, then returns every reply line written so far.
        func written() throws -> [String] {
            channel.embeddedEventLoop.run()
            var lines: [String] = []
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
                lines += String(buffer: buffer).split(separator: "\n").map(String.init)
            }
            return lines
        }
    }

    static func event(_ id: String) -> String {
        #"{"specversion":"1.0","type":"t","source":"s","id":"\#(id)"}"#
    }

    @Test("a command behind a batch of events being committed waits for their replies, then goes to the connection")
    func commandWaitsForCommit() throws {
        let bed = try Bed()
        try bed.send(Self.event("a"), Self.event("b"))
        #expect(bed.commits.count == 1)
        try bed.send(#"{"op":"ping"}"#)
        #expect(bed.downstream.batches.isEmpty, "the ping must not overtake the events")
        #expect(try bed.written().isEmpty)

        bed.commits.finish()
        let replies = try bed.written()
        #expect(replies.count == 2 && replies[0].contains(#""id":"a""#) && replies[1].contains(#""id":"b""#), "\(replies)")
        #expect(bed.downstream.batches.count == 1, "the ping goes on once the events are answered")
        try bed.answer(#"{"ok":true,"op":"ping"}"#)
        #expect(try bed.written() == [#"{"ok":true,"op":"ping"}"#])
    }

    @Test("while the connection has a batch to answer, later events go to it too, not to the committer")
    func eventsFollowForwardedBatch() throws {
        let bed = try Bed()
        try bed.send(#"{"op":"ping"}"#)
        try bed.send(Self.event("late"))
        #expect(bed.downstream.batches.count == 2)
        #expect(bed.commits.count == 0, "the event after the ping must not be answered before it")
        try bed.answer(#"{"ok":true,"op":"ping"}"#)
        try bed.answer(#"{"ok":true,"seq":1,"id":"late"}"#)
        // Once both are answered, events take the fast path again.
        try bed.send(Self.event("fast"))
        #expect(bed.commits.count == 1 && bed.downstream.batches.count == 2)
        bed.commits.finish()
        let replies = try bed.written()
        #expect(replies.count == 3 && replies[2].contains(#""id":"fast""#), "\(replies)")
    }

    @Test("batches committed out of order are answered in the order they came; a batch of refusals waits its turn")
    func repliesInOrder() throws {
        let bed = try Bed()
        try bed.send(Self.event("first"))
        try bed.send("not json")
        try bed.send(Self.event("third"))
        #expect(bed.commits.count == 2)
        bed.commits.finish(1)  // "third" is committed first
        #expect(try bed.written().isEmpty, "nothing may be written before the first batch is answered")
        bed.commits.finish(0)
        let replies = try bed.written()
        #expect(replies.count == 3, "\(replies)")
        #expect(replies.first?.contains(#""id":"first""#) == true)
        #expect(replies.dropFirst().first?.contains("invalid_json") == true)
        #expect(replies.last?.contains(#""id":"third""#) == true)
    }

    @Test("the client's end of input is passed on only after every reply before it is written")
    func inputClosedWaits() throws {
        let bed = try Bed()
        try bed.send(Self.event("a"))
        bed.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(bed.downstream.events.isEmpty, "closing now would lose the reply to a")
        bed.commits.finish()
        #expect(try bed.written().count == 1)
        #expect(bed.downstream.events.count == 1)
    }

    @Test("a close waits until the replies already answered are written out (a half-closed client still reading them)")
    func closeWaitsForWrites() throws {
        let bed = try Bed(slowSocket: true)
        try bed.send(Self.event("a"))
        bed.commits.finish()
        bed.channel.embeddedEventLoop.run()
        #expect(bed.socket.held.count == 1, "the reply is on its way, not written out")
        bed.channel.close(promise: nil)
        bed.channel.embeddedEventLoop.run()
        #expect(bed.socket.closes == 0, "closing now would drop the reply")
        bed.socket.release()
        bed.channel.embeddedEventLoop.run()
        #expect(bed.socket.closes == 1, "written out: the close goes on")
    }

    @Test("a subscriber's acks are still read while its deliveries wait for it to read them")
    func acksReadWhileDeliveriesWait() throws {
        let bed = try Bed(maxInflightBatches: 2, slowSocket: true)
        // Three deliveries the client has not read (their writes are held).
        for delivery in 0..<3 {
            bed.channel.write(ConnectionOutput.bytes(ByteBuffer(string: #"{"delivery":\#(delivery)}"# + "\n")), promise: nil)
        }
        bed.channel.flush()
        #expect(bed.socket.held.count == 3)
        try bed.send(#"{"op":"ack","delivery":0}"#)
        #expect(bed.downstream.batches.count == 1)
        // No reply to an ack: the connection says so past the writer.
        bed.channel.pipeline.triggerUserOutboundEvent(BatchAnsweredEvent(), promise: nil)
        bed.channel.embeddedEventLoop.run()
        let before = bed.reads.count
        bed.channel.read()
        #expect(bed.reads.count == before + 1, "reading the next acks must not wait for the deliveries to be written")
    }

    @Test("no more is read while the replies of max_inflight_per_connection batches wait for the client to read them")
    func repliesNotReadHoldReading() throws {
        let bed = try Bed(maxInflightBatches: 2, slowSocket: true)
        try bed.send(Self.event("a"))
        try bed.send(Self.event("b"))
        bed.commits.finish()
        bed.commits.finish()
        bed.channel.embeddedEventLoop.run()
        #expect(bed.socket.held.count == 2, "both answered, neither written out")
        let before = bed.reads.count
        bed.channel.read()
        #expect(bed.reads.count == before, "two batches of replies unread: the read must be held")
        bed.socket.release()
        bed.channel.embeddedEventLoop.run()
        #expect(bed.reads.count == before + 1, "written out: the held read goes on")
    }

    @Test("no more is read while max_inflight_per_connection batches wait; reading resumes when they are answered")
    func backPressure() throws {
        let bed = try Bed(maxInflightBatches: 2)
        try bed.send(Self.event("a"))
        try bed.send(Self.event("b"))
        let before = bed.reads.count
        bed.channel.read()
        #expect(bed.reads.count == before, "two batches wait: the read must be held")
        bed.commits.finish()
        _ = try bed.written()
        #expect(bed.reads.count == before + 1, "one answered: the held read goes on")
    }
}
