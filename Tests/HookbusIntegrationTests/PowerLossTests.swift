import Foundation
import Testing

/// Power loss, simulated under the broker's own store: `powerloss-check`
/// (Tests/PowerLoss) stores events through the broker's committer, VFS and
/// background checkpoints over a VFS that keeps what the disk holds for sure
/// (what was synced) apart from what it may or may not hold (whole writes, or
/// some of their sectors, since the last sync of their file). At random
/// moments, and as soon as the WAL starts over, it writes out such a disk and
/// checks that SQLite opens it, that it passes integrity_check and that it
/// holds every event acknowledged before that moment. A SIGKILL (CrashTests)
/// loses nothing the kernel was given; this loses what was not synced.
///
/// Serialized: each run writes a few hundred MB of snapshots.
@Suite("Reliability: power loss", .serialized)
struct PowerLossTests {
    /// The check's summary line as key → value.
    static func summary(_ result: ToolResult) -> [String: Int] {
        var out: [String: Int] = [:]
        for pair in (result.stdoutLines.last ?? "").split(separator: " ") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2, let value = Int(parts[1]) { out[String(parts[0])] = value }
        }
        return out
    }

    static func check(durability: String, seed: UInt32, scratch: ScratchDirectory) async throws -> ToolResult {
        let directory = scratch.path("powerloss-\(durability)")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return try await ToolRun.run(
            try TestBinaries.executable("powerloss-check"),
            [directory, "40000", "30", "\(seed)", durability], scratch: scratch, timeout: .seconds(120))
    }

    @Test("power lost at 30 random moments of 40,000 events and as the WAL starts over: every snapshot opens, passes integrity_check and holds every acknowledged event")
    func acknowledgedEventsSurvive() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let seed = UInt32.random(in: 1...UInt32.max)
        let result = try await Self.check(durability: "full", seed: seed, scratch: scratch)
        let summary = Self.summary(result)
        #expect(result.status == 0 && !result.signaled, "seed \(seed): \(result)")
        #expect((summary["snapshots"] ?? 0) >= 30 && summary["failed"] == 0, "seed \(seed): \(result)")
        // Snapshots fell while writes waited for their sync, where a power loss hurts.
        #expect((summary["snapshots_with_unsynced_writes"] ?? 0) >= 3, "seed \(seed): \(result)")
        // The checkpoints ran: the WAL started over, and snapshots were taken as it did and after.
        #expect((summary["wal_restarts"] ?? 0) >= 1, "seed \(seed): \(result)")
        #expect((summary["snapshots_at_a_restart"] ?? 0) >= 1, "seed \(seed): \(result)")
        #expect((summary["snapshots_after_a_restart"] ?? 0) >= 1, "seed \(seed): \(result)")
    }

    @Test("the same check catches a broker that acknowledges before it syncs (durability = normal)")
    func checkCatchesUnsyncedAcknowledgements() async throws {
        // Without this, a check that could not fail would pass the test above.
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let seed = UInt32.random(in: 1...UInt32.max)
        let result = try await Self.check(durability: "normal", seed: seed, scratch: scratch)
        let summary = Self.summary(result)
        #expect(result.status == 1, "seed \(seed): \(result)")
        #expect((summary["failed"] ?? 0) > 0 && (summary["missing"] ?? 0) > 0, "seed \(seed): \(result)")
    }
}
