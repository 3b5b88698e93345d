import Foundation
import Testing

extension HeavyTests {
    /// SIGKILL of the broker while it dispatches: nothing is lost (DESIGN.md,
    /// "Delivery": at-least-once; deliveries in flight when the broker died are
    /// retried when it starts).
    @Suite("Dispatch: crash")
    struct DispatchCrashTests {
        static let events = 300
        /// Deliveries each subscriber has made before the kill.
        static let deliveredBeforeKill = 20

        @Test("SIGKILL of the broker during dispatch, restart: every event delivered at least once to the exec and the pipe subscriber")
        func killDuringDispatch() async throws {
            let scratch = try ScratchDirectory()
            defer { scratch.cleanUp() }
            let bed = try await DispatchBed.start(in: scratch, defaults: """
                [defaults]
                max_attempts = 10
                backoff_initial = "50ms"
                backoff_max = "200ms"
                timeout = "20s"
                """, subscribers: """
                [[subscribers]]
                name = "crash-exec"
                types = ["load.*"]
                exec = ["{examples}/record.sh"]
                concurrency = 4
                env = { RECORD_DIR = "{dir}/rec" }

                [[subscribers]]
                name = "crash-pipe"
                types = ["load.*"]
                pipe = ["python3", "{examples}/pipe_recorder.py"]
                concurrency = 8
                env = { PIPE_LOG = "{dir}/pipe.log", PIPE_PIDFILE = "{dir}/pipe.pid", PIPE_STALL_AFTER = "\(Self.deliveredBeforeKill)", PIPE_STALL_MARK = "{dir}/pipe.stalled" }
                """)
            try await bed.waitUntil("pipe_recorder.py started") { bed.lines("pipe.pid").count == 1 }
            let firstPipe = try #require(Int32(bed.lines("pipe.pid")[0]))

            let seqs = try await bed.publish((0..<Self.events).map {
                EventLine.make(type: "load.item", source: "load", id: "l\($0)", data: #"{"n":\#($0)}"#)
            })
            // The pipe process stops answering after `deliveredBeforeKill`, so the
            // kill lands with its stream half done however fast the machine is.
            try await bed.waitUntil("\(Self.deliveredBeforeKill) deliveries to each before the kill") {
                bed.lines("rec/crash-exec.log").count >= Self.deliveredBeforeKill
                    && bed.lines("pipe.stalled").count == 1
            }
            try await bed.broker.kill()
            let execBefore = Set(bed.lines("rec/crash-exec.log").compactMap { Self.seq($0, field: 0) })
            // The orphaned pipe process sees its stdin close and exits.
            try await bed.waitUntil("the old pipe process (\(firstPipe)) exited with the broker") {
                DispatchProcess.status(firstPipe).map { $0.state == "Z" } ?? true
            }

            try await bed.broker.restart()
            let wanted = Set(seqs)
            try await bed.waitUntil("every event delivered to both after the restart", timeout: .seconds(60)) {
                wanted.isSubset(of: Set(bed.lines("rec/crash-exec.log").compactMap { Self.seq($0, field: 0) }))
                    && wanted.isSubset(of: Set(bed.lines("pipe.log").compactMap { Self.seq($0, field: 1) }))
            }
            try await bed.waitUntil("both settled through \(seqs.last!)") {
                try bed.ledger().settled("crash-exec", through: seqs.last!) && bed.ledger().settled("crash-pipe", through: seqs.last!)
            }
            #expect(!execBefore.isEmpty)
            let ledger = try bed.ledger()
            #expect(try ledger.deadLetters("crash-exec").isEmpty && ledger.deadLetters("crash-pipe").isEmpty)
            // Each exec delivery saved the event it got: the stored one.
            for seq in seqs.prefix(5) + seqs.suffix(5) {
                #expect(try bed.contents("rec/crash-exec-\(seq).json") == ledger.event(seq: seq).map { $0 + "\n" })
            }
            #expect(Set(bed.lines("pipe.log").compactMap { Self.seq($0, field: 1) }) == wanted, "only load.* events")
        }

        /// Field `field` of a log line, as a seq.
        static func seq(_ line: String, field: Int) -> Int64? {
            let fields = line.split(separator: " ")
            return fields.count > field ? Int64(fields[field]) : nil
        }
    }
}
