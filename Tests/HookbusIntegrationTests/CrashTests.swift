import Foundation
import HookbusClient
import Synchronization
import Testing

extension HeavyTests {
    /// SIGKILL while producers pipeline: whatever got `ok:true` survives.
    @Suite("Crash")
    struct CrashTests {
        static let producers = 4
        /// Acknowledgements to see in each cycle before killing the broker. The
        /// last cycle runs long enough for the WAL to be checkpointed in the
        /// background and started over (`Checkpointer`) a few times first.
        static let acksBeforeKill = [1_000, 1_000, 30_000]

        /// What the producers saw, shared between their threads and the test.
        final class Ledger: Sendable {
            struct State {
                var acked: [String: Int64] = [:]  // id -> seq
                var problems: [String] = []
                var killing = false
                /// Set to end the producers' streams without a kill (a failing test's way out).
                var stopping = false
            }

            let state = Mutex(State())
            let ackCount = Atomic<Int>(0)

            func ack(id: String, seq: Int64) {
                state.withLock { $0.acked[id] = seq }
                ackCount.add(1, ordering: .relaxed)
            }

            func problem(_ text: String) { state.withLock { $0.problems.append(text) } }

            var stopping: Bool { state.withLock { $0.stopping } }
        }

        @Test("SIGKILL mid-stream, three times: every acknowledged event is stored with its seq; the database is intact")
        func killWhilePipelining() async throws {
            let scratch = try ScratchDirectory()
            defer { scratch.cleanUp() }
            let broker = try await scratch.startBroker()
            let ledger = Ledger()

            var walRestarts: [Int] = []
            for (cycle, acksBeforeKill) in Self.acksBeforeKill.enumerated() {
                ledger.state.withLock { $0.killing = false; $0.stopping = false }
                let startCount = ledger.ackCount.load(ordering: .relaxed)
                let socket = broker.socketPath
                async let producing: [Void] = onThreads(Self.producers) { producer in
                    Self.produce(to: socket, ids: "c\(cycle)-p\(producer)-", ledger: ledger)
                }
                // If anything below throws, end the streams so leaving the scope does not wait for them forever.
                defer { ledger.state.withLock { $0.stopping = true } }

                // Kill once enough acknowledgements have come back in this cycle.
                let deadline = ContinuousClock.now + .seconds(30)
                while ledger.ackCount.load(ordering: .relaxed) - startCount < acksBeforeKill {
                    if ContinuousClock.now >= deadline || !broker.isRunning { break }
                    try await Task.sleep(for: .milliseconds(2))
                }
                let seen = ledger.ackCount.load(ordering: .relaxed) - startCount
                ledger.state.withLock { $0.killing = true }
                try await broker.kill()
                _ = try await producing
                try #require(seen >= acksBeforeKill,
                             "cycle \(cycle): only \(seen) acknowledgements within the deadline\n\(broker.log)")

                // The WAL header's checkpoint sequence counts its restarts: in the
                // last cycle the background checkpoints started it over before the kill.
                walRestarts.append(Self.walRestarts(broker.databasePath + "-wal"))
                if cycle == Self.acksBeforeKill.count - 1 {
                    #expect(walRestarts[cycle] > walRestarts[cycle - 1], "cycle \(cycle): the WAL never started over (\(walRestarts))")
                }
                try await broker.restart()
                let problems = ledger.state.withLock { $0.problems }
                #expect(problems.isEmpty, "cycle \(cycle): \(problems.prefix(10))\n\(broker.log)")
                try Self.verify(broker: broker, ledger: ledger, cycle: cycle)
            }
        }

        /// The checkpoint sequence number in a WAL file's header (bytes 12–15,
        /// big-endian), which SQLite increments each time the WAL starts over;
        /// -1 if the file cannot be read.
        static func walRestarts(_ path: String) -> Int {
            guard let handle = FileHandle(forReadingAtPath: path),
                  let header = try? handle.read(upToCount: 16), header.count == 16 else { return -1 }
            try? handle.close()
            return header[12..<16].reduce(0) { $0 << 8 | Int($1) }
        }

        /// Publishes `<ids><n>` for n = 0, 1, 2, ... until the connection breaks.
        static func produce(to socket: String, ids prefix: String, ledger: Ledger) {
            do {
                let client = try SocketClient.connect(socket, timeout: .seconds(20))
                let lines = (0...).lazy.prefix { _ in !ledger.stopping }
                    .map { EventLine.make(type: "crash.test", source: "crash", id: "\(prefix)\($0)") }
                var next = 0
                try Publisher(client: client, window: 16).publish(lines) { _, line in
                    let id = "\(prefix)\(next)"
                    next += 1
                    // A reply cut short by the kill is not JSON: not an acknowledgement.
                    guard let reply = try? WireReply(line) else { return }
                    if reply.ok, let seq = reply.seq, reply.id == id, !reply.duplicate {
                        ledger.ack(id: id, seq: seq)
                    } else {
                        ledger.problem("\(id): \(line)")
                    }
                }
            } catch {
                // Expected once the broker is killed; before that, a failure.
                if !ledger.state.withLock({ $0.killing }) { ledger.problem("\(prefix): \(error)") }
            }
        }

        static func verify(broker: BrokerProcess, ledger: Ledger, cycle: Int) throws {
            let outbox = try broker.outbox()
            #expect(try outbox.integrityCheck() == "ok")
            let stored = Dictionary(uniqueKeysWithValues: try outbox.rows(source: "crash").map { ($0.id, $0.seq) })
            let acked = ledger.state.withLock { $0.acked }
            var missing: [String] = []
            var moved: [String] = []
            for (id, seq) in acked {
                guard let storedSeq = stored[id] else { missing.append(id); continue }
                if storedSeq != seq { moved.append("\(id): acked \(seq), stored \(storedSeq)") }
            }
            #expect(missing.isEmpty, "cycle \(cycle): \(missing.count) acknowledged events lost, e.g. \(missing.sorted().prefix(10))")
            #expect(moved.isEmpty, "cycle \(cycle): \(moved.prefix(10))")
            #expect(stored.count >= acked.count)
        }
    }
}
