/// How hard a commit tries before the broker acknowledges.
public enum Durability: String, Sendable, CaseIterable {
    /// fsync at every commit (`PRAGMA synchronous = FULL`): survives power loss.
    case full
    /// WAL with `synchronous = NORMAL`: survives a crash of the broker, not of the machine.
    case normal
}
