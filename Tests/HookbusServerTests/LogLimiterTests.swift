import Testing
@testable import HookbusServer

@Suite("LogLimiter")
struct LogLimiterTests {
    @Test("a burst is logged, the rest left out and counted, and the next line logged after a refill says how many")
    func bucket() {
        let start = ContinuousClock.now
        let limiter = LogLimiter(perSecond: 10, burst: 3, now: start)
        let first = (0..<3).map { _ in limiter.admit(now: start) }
        #expect(first == [0, 0, 0])
        let flood = (0..<100).map { _ in limiter.admit(now: start) }
        #expect(flood.allSatisfy { $0 == nil })
        // 150 ms refill one line and a half: one line, which reports the 100 left out.
        #expect(limiter.admit(now: start + .milliseconds(150)) == 100)
        #expect(limiter.admit(now: start + .milliseconds(150)) == nil)
        // A long pause refills the burst, not more.
        let later = start + .seconds(60)
        #expect((0..<4).map { _ in limiter.admit(now: later) } == [1, 0, 0, nil])
    }
}
