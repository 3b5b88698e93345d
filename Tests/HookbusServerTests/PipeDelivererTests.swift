@testable import HookbusCore
@testable import HookbusServer
import Logging
import Testing

/// The pipe deliverer's timeouts, without a process: a delivery queued while
/// none runs is timed out only by the bound on waiting for one.
@Suite("PipeDeliverer: waiting for a process")
struct PipeDelivererTests {
    static func delivery() -> Delivery {
        let event = StoredEvent(
            seq: 1, id: "e1", source: "/test", type: "test.pipe", subject: nil, time: "2026-11-23T00:00:00Z",
            receivedAtMicros: 0, producer: Producer(uid: 0, gid: 0, pid: 0),
            json: #"{"specversion":"1.0","id":"e1","source":"/test","type":"test.pipe"}"#)
        return Delivery(subscriber: "p", event: event, attempt: 1, replay: false)
    }

    @Test("a delivery waiting for a process is not timed out after its timeout, only after timeout + 30 s, and says why")
    func queuedDeliveryIsBounded() async {
        let deadlines = Deadlines()
        let pipe = PipeDeliverer(name: "p", argv: ["/bin/true"], environment: [:], runAs: nil, timeout: .seconds(1),
                                 deadlines: deadlines, logger: Logger(label: "test"))
        let start = ContinuousClock.now
        let delivery = Self.delivery()
        let ticket = pipe.prepare(delivery)  // no process runs: queued
        async let result = pipe.deliver(delivery, ticket: ticket)
        // Past its timeout, still waiting (nothing answered it).
        deadlines.sweep(now: start + .seconds(5))
        #expect(deadlines.pending == 1)
        deadlines.sweep(now: start + .seconds(32))
        #expect(await result == .failed("pipe p: no process took delivery 1 within 31s (it is being restarted)"))
        #expect(deadlines.pending == 0)
    }
}
