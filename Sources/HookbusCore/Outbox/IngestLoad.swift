import Dispatch
import Synchronization

/// Whether ingest is pressed: what dispatch's threads read to decide whether
/// to give way to it (`DispatchExecutor` in the server).
///
/// Ingest is pressed while its commits carry many events each and keep coming:
/// a producer that waits for each ack, or a steady trickle, commits a few
/// events per fsync; producers that keep the writer busy queue behind it and
/// commit dozens or hundreds at a time. A pause of `quiet` without a commit
/// ends it at once, and the average starts again from the next commit. One
/// figure for the process: a broker runs one committer (tests run several;
/// any of them pressed counts).
public enum IngestLoad {
    /// Events per commit × 16, a moving average over about 8 commits.
    private static let scaledAverage = Atomic<Int>(0)
    /// When the last commit of events ended (monotonic nanoseconds).
    private static let lastCommit = Atomic<UInt64>(0)

    /// At or above this average, ingest counts as pressed.
    public static let pressedAt = 32
    /// Below this average, it no longer does (between the two, it stays as it was).
    public static let easedBelow = 16
    /// No commit for this long (20 ms) and it is not pressed, whatever the average.
    public static let quiet: UInt64 = 20_000_000

    /// The committer stored a group of `events` events.
    static func committed(_ events: Int) {
        let now = DispatchTime.now().uptimeNanoseconds
        // After a pause the average starts again: the commits of a burst that
        // ended say nothing about this one.
        let paused = now &- lastCommit.load(ordering: .relaxed) >= quiet
        let old = paused ? 0 : scaledAverage.load(ordering: .relaxed)
        scaledAverage.store(old + (min(events, 4096) * 16 - old) / 8, ordering: .relaxed)
        lastCommit.store(now, ordering: .relaxed)
    }

    /// Whether ingest is pressed, given whether it was at the last look.
    public static func pressed(was: Bool) -> Bool {
        let average = scaledAverage.load(ordering: .relaxed) / 16
        guard was ? average >= easedBelow : average >= pressedAt else { return false }
        return DispatchTime.now().uptimeNanoseconds &- lastCommit.load(ordering: .relaxed) < quiet
    }
}
