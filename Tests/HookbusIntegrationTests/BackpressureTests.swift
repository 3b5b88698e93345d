import Foundation
import HookbusClient
import Testing

extension HeavyTests {
    /// A producer that writes without reading is slowed down, and does not stop
    /// the broker from serving anyone else.
    @Suite("Backpressure")
    struct BackpressureTests {
        static let lines = 20_000
        /// Padding per event, so the lines add up to far more (about 24 MB) than
        /// socket buffers and the broker's bounded read-ahead can hold: up to
        /// `max_inflight_per_connection` (8) reads of up to 4 × 64 KiB waiting
        /// to be answered, 8 more whose replies wait to be written, the lines
        /// whose replies fill the socket's buffer (a few thousand), and the
        /// client's own send buffer: about 10 MB at most. With 150 bytes of
        /// padding (6 MB in all) a loaded machine once let every line in.
        static let padding = String(repeating: "p", count: 1_000)

        @Test("a client writing 20,000 lines without reading does not block another client; then it reads every reply")
        func slowReader() async throws {
            let scratch = try ScratchDirectory()
            defer { scratch.cleanUp() }
            let broker = try await scratch.startBroker()

            let slow = UncheckedBox(try broker.connect(timeout: .seconds(30)))
            let writerDone = SharedFlag()
            async let writing: [Void] = onThreads(1) { _ in
                var chunk: [UInt8] = []
                for index in 0..<Self.lines {
                    chunk += Array(EventLine.make(source: "slow", id: "w\(index)", data: #""\#(Self.padding)""#).utf8) + [0x0A]
                    if chunk.count >= 64 * 1024 || index == Self.lines - 1 {
                        try slow.value.write(chunk)
                        chunk.removeAll(keepingCapacity: true)
                    }
                }
                writerDone.set()
            }
            // On a failure below, unblock the writer so that leaving the scope does not wait for it.
            var finished = false
            defer { if !finished { shutdown(slow.value.descriptor, Int32(SHUT_RDWR)) } }

            // Once the broker has stored some of the flood, another client is served at once.
            let outbox = try broker.outbox()
            let deadline = ContinuousClock.now + .seconds(20)
            while try outbox.count() < 1000 {
                try #require(ContinuousClock.now < deadline, "the broker stored nothing of the flood\n\(broker.log)")
                try await Task.sleep(for: .milliseconds(10))
            }
            let other = try broker.connect(timeout: .seconds(5))
            let started = ContinuousClock.now
            let ping = try other.call(#"{"op":"ping"}"#)
            #expect(ping.ok, "\(ping)")
            let published = try other.call(EventLine.make(source: "other", id: "o1"))
            #expect(published.ok, "\(published)")
            let took = ContinuousClock.now - started
            #expect(took < .seconds(5), "the other client waited \(took)")
            #expect(!writerDone.isSet,
                    "all 20,000 lines were taken without a reply being read: the broker buffers without bound")

            // Now the slow client reads: every line gets its reply, in order.
            let checked = try await onThreads(1) { _ -> [String] in
                var problems: [String] = []
                var previous: Int64 = 0
                for index in 0..<Self.lines {
                    let reply = try slow.value.nextReply()
                    guard reply.ok, reply.id == "w\(index)", let seq = reply.seq, seq > previous else {
                        problems.append("line \(index): \(reply)")
                        if problems.count > 10 { break }
                        continue
                    }
                    previous = seq
                }
                return problems
            }
            #expect(checked[0].isEmpty, "\(checked[0])")
            _ = try await writing
            finished = true
            #expect(writerDone.isSet)
            #expect(try outbox.count() == Self.lines + 1)
        }
    }
}
