import Foundation
import Testing

/// Timeouts of streamed deliveries: a pipe process that stops answering and a
/// socket subscriber that does not ack. Both are timed out by the dispatcher's
/// deadline sweep (no timer per delivery), then retried.
@Suite("Dispatch: pipe and socket timeouts")
struct DispatchTimeoutTests {
    @Test("a pipe process that stops answering is timed out, each attempt fails with which delivery and how long, and the event is dead-lettered")
    func pipeTimeout() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, defaults: """
            [defaults]
            max_attempts = 2
            backoff_initial = "50ms"
            backoff_max = "100ms"
            timeout = "1s"
            """, subscribers: """
            [[subscribers]]
            name = "hung"
            types = ["t.*"]
            pipe = ["python3", "{examples}/pipe_recorder.py"]
            env = { PIPE_LOG = "{dir}/hung.log", PIPE_PIDFILE = "{dir}/hung.pid", PIPE_STALL_AFTER = "2", PIPE_STALL_MARK = "{dir}/stalled" }
            """)
        try await bed.waitUntil("pipe_recorder.py started") { bed.lines("hung.pid").count == 1 }
        // The process answers the first delivery and hangs on the second: both of
        // its attempts time out (the process lives on, hung).
        let seqs = try await bed.publish((0..<2).map { EventLine.make(type: "t.item", source: "t", id: "t\($0)") })
        // Settled is not enough (a retry row settles too): wait for the dead letter.
        try await bed.waitUntil("seq \(seqs[1]) dead-lettered for hung") { try bed.ledger().deadLetters("hung").count == 1 }
        let stats = try #require(try bed.stats()["hung"])
        #expect(stats.delivered == 1 && stats.dead == 1 && stats.failedAttempts == 2, "\(stats)")
        let dead = try bed.ledger().deadLetters("hung")
        try #require(dead.count == 1, "\(dead)")
        #expect(dead[0].seq == seqs[1] && dead[0].reason == "max_attempts" && dead[0].attempts == 2, "\(dead[0])")
        #expect(dead[0].errors.allSatisfy { $0.error.contains("pipe hung did not answer delivery") && $0.error.hasSuffix("within 1s") },
                "\(dead[0].errors)")
    }

    @Test("a socket subscriber that does not ack gets the delivery again once the timeout passes")
    func socketAckTimeout() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, defaults: """
            [defaults]
            max_attempts = 5
            backoff_initial = "50ms"
            backoff_max = "100ms"
            timeout = "1s"
            """, subscribers: "")
        let session = try SocketSession(bed.broker.socketPath)
        let accepted = try await onThread { try session.subscribe(name: "slow", types: ["t.*"], window: 1) }
        try #require(accepted.ok, "\(accepted)")
        let seqs = try await bed.publish([EventLine.make(type: "t.item", source: "t", id: "once")])
        // Not acked: the same seq comes again as attempt 2, a second later; ack that one
        // (the timeout leaves a loaded machine a second for it).
        let (first, second) = try await onThread {
            let first = try session.nextDelivery()
            let second = try session.nextDelivery()
            try session.ack(second)
            return (first, second)
        }
        #expect(first.seq == seqs[0] && first.attempt == 1, "\(first)")
        #expect(second.seq == seqs[0] && second.attempt == 2, "\(second)")
        // Settled is not enough (a retry row settles too): wait for the delivery.
        try await bed.waitUntil("slow delivered seq \(seqs[0])") { try bed.stats()["slow"]?.delivered == 1 }
        let stats = try #require(try bed.stats()["slow"])
        #expect(stats.delivered == 1 && stats.failedAttempts == 1, "\(stats)")
        #expect(stats.lastError?.contains("did not ack delivery \(first.delivery) within 1s") == true, "\(stats)")
        session.disconnect()
    }
}
