#if canImport(Glibc)
import Glibc
#endif

/// Clocks for the load generator, in nanoseconds.
///
/// Acknowledgement latency is measured on the monotonic clock inside one
/// process. Publish-to-delivery latency crosses processes (a pipe subscriber
/// is the broker's child), so the send time travels in the event on the
/// realtime clock; both ends read the same host clock.
enum BenchClock {
    /// CLOCK_MONOTONIC, in nanoseconds.
    static func monotonic() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }

    /// CLOCK_REALTIME, in nanoseconds since the Unix epoch.
    static func realtime() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }

    /// Sleeps until the monotonic clock reads `deadline`.
    static func sleep(until deadline: UInt64) {
        var target = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &target, nil) == EINTR {}
    }
}
