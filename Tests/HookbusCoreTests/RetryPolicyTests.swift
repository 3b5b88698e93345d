import HookbusTestSupport
import Testing
@testable import HookbusCore

@Suite("RetryPolicy and durations")
struct RetryPolicyTests {
    private let exponential = RetryPolicy(maxAttempts: 10, schedule: .exponential(initial: .seconds(1), max: .seconds(300)))
    private let explicit = RetryPolicy(maxAttempts: 6, schedule: .explicit([.seconds(1), .seconds(5), .seconds(30), .seconds(120)]))

    @Test("exponential backoff doubles from the initial delay and stops at the maximum", arguments: [
        (1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (8, 128), (9, 256), (10, 300), (11, 300), (60, 300), (10_000, 300),
    ])
    func exponentialDelay(_ attempt: Int, seconds: Int64) {
        #expect(exponential.baseDelay(afterAttempt: attempt) == .seconds(seconds))
    }

    @Test("an explicit list is followed, and its last entry repeats", arguments: [
        (1, 1), (2, 5), (3, 30), (4, 120), (5, 120), (100, 120),
    ])
    func explicitDelay(_ attempt: Int, seconds: Int64) {
        #expect(explicit.baseDelay(afterAttempt: attempt) == .seconds(seconds))
    }

    @Test("sub-second delays keep their milliseconds")
    func milliseconds() {
        let policy = RetryPolicy(schedule: .exponential(initial: .milliseconds(250), max: .milliseconds(1500)))
        #expect((1...5).map { policy.baseDelay(afterAttempt: $0) } == [
            .milliseconds(250), .milliseconds(500), .milliseconds(1000), .milliseconds(1500), .milliseconds(1500),
        ])
    }

    @Test("the jittered delay lies in [base/2, base]", arguments: [UInt64(7), 8, 9])
    func jitter(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        for policy in [exponential, explicit] {
            for attempt in 1...12 {
                let base = policy.baseDelay(afterAttempt: attempt)
                #expect(policy.delay(afterAttempt: attempt, unit: 0) == .milliseconds(base.milliseconds / 2))
                #expect(policy.delay(afterAttempt: attempt, unit: 0.999_999_9) <= base)
                for _ in 0..<50 {
                    let delay = policy.delay(afterAttempt: attempt, unit: Double.random(in: 0..<1, using: &random))
                    #expect(delay >= .milliseconds(base.milliseconds / 2) && delay <= base, "attempt \(attempt): \(delay)")
                }
            }
        }
    }

    @Test("the delivery is exhausted after max_attempts failed attempts", arguments: [
        (1, false), (5, false), (9, false), (10, true), (11, true),
    ])
    func exhausted(_ attempt: Int, dead: Bool) {
        #expect(exponential.exhausted(after: attempt) == dead)
        #expect(RetryPolicy(maxAttempts: 1).exhausted(after: 1))
    }

    @Test("the defaults are the documented ones")
    func defaults() {
        #expect(RetryPolicy() == exponential)
    }

    // MARK: - Durations

    @Test("durations parse from an integer and a unit", arguments: [
        ("250ms", Duration.milliseconds(250)), ("0ms", .zero), ("0s", .zero), ("30s", .seconds(30)), ("5m", .seconds(300)),
        ("2h", .seconds(7200)), ("1500ms", .milliseconds(1500)), ("007s", .seconds(7)),
    ])
    func parseDuration(_ text: String, duration: Duration) {
        #expect(Duration.parse(text) == duration)
    }

    @Test("bad durations are refused", arguments: [
        "5x", "1.5s", "s", "ms", "", "5", "-5s", "+5s", " 5s", "5 s", "5S", "5sec", "1h30m", "٣s", "99999999999999999999h",
        "9223372036854775807h",
    ])
    func badDuration(_ text: String) {
        #expect(Duration.parse(text) == nil)
    }

    @Test("a duration is spelled in its largest exact unit, and parses back", arguments: [
        (Duration.milliseconds(1500), "1500ms"), (.seconds(30), "30s"), (.seconds(90), "90s"), (.seconds(300), "5m"),
        (.seconds(7200), "2h"), (.seconds(5400), "90m"), (.zero, "0ms"), (.milliseconds(1), "1ms"),
    ])
    func spelled(_ duration: Duration, text: String) {
        #expect(duration.spelled == text)
        #expect(Duration.parse(text) == duration)
    }
}
