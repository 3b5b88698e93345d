import Foundation
import Testing

/// Timeouts of streamed deliveries: a pipe process that stops answering and a
/// socket subscriber that does not ack. Both are timed out by the dispatcher's
/// deadline sweep (no timer per delivery), then retried.
@Suite("Dispatch: pipe and socket timeouts")
struct DispatchTimeoutTests {
    @Test("a pipe process that stops answering is timed out, killed and restarted; the delivery is retried on the new process")
    func pipeTimeout() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await DispatchBed.start(in: scratch, defaults: """
            [defaults]
            max_attempts = 5
            backoff_initial = "50ms"
            backoff_max = "100ms"
            timeout = "2s"
            """, subscribers: """
            [[subscribers]]
            name = "hung"
            types = ["t.*"]
            pipe = ["python3", "{examples}/pipe_recorder.py"]
            env = { PIPE_LOG = "{dir}/hung.log", PIPE_PIDFILE = "{dir}/hung.pid", PIPE_STALL_AFTER = "2", PIPE_STALL_MARK = "{dir}/stalled" }
            """)
        try await bed.waitUntil("pipe_recorder.py started") { bed.lines("hung.pid").count == 1 }
        // The first process answers the first delivery and hangs on the second;
        // the restarted one (it sees the stall mark) answers the retry.
        let seqs = try await bed.publish((0..<2).map { EventLine.make(type: "t.item", source: "t", id: "t\($0)") })
        try await bed.waitUntil("hung delivered both") { try bed.stats()["hung"]?.delivered == 2 }
        let stats = try #require(try bed.stats()["hung"])
        // (A retry that waits for the restart longer than the timeout fails too,
        // on a loaded machine: so at least one failed attempt, not exactly one.)
        #expect(stats.dead == 0 && stats.failedAttempts >= 1, "\(stats)")
        let error = try #require(stats.lastError, "\(stats)")
        #expect(error.contains("pipe hung did not answer delivery") && error.hasSuffix("within 2s"), "\(error)")
        let received = bed.lines("hung.log").compactMap(DispatchPipeTests.Received.init)
        try #require(received.count >= 3, "\(bed.lines("hung.log"))")
        #expect(received[0].seq == seqs[0] && received[1].seq == seqs[1] && received[1].attempt == 1, "\(bed.lines("hung.log"))")
        let hung = received[1].pid
        #expect(received.dropFirst(2).contains { $0.seq == seqs[1] && $0.attempt >= 2 && $0.pid != hung },
                "the retry went to a new process: \(bed.lines("hung.log"))")
        #expect(bed.broker.log.contains("within 2s and was killed"), "\(bed.broker.log)")
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
            timeout = "3s"
            """, subscribers: "")
        let session = try SocketSession(bed.broker.socketPath)
        let accepted = try await onThread { try session.subscribe(name: "slow", types: ["t.*"], window: 1) }
        try #require(accepted.ok, "\(accepted)")
        let seqs = try await bed.publish([EventLine.make(type: "t.item", source: "t", id: "once")])
        // Not acked: the same seq comes again as attempt 2, three seconds later; ack that
        // one (the timeout leaves a loaded machine three seconds for it: with every suite
        // running at once beside a busy core, one second was not always enough).
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
        #expect(stats.lastError?.contains("did not ack delivery \(first.delivery) within 3s") == true, "\(stats)")
        session.disconnect()
    }
}
