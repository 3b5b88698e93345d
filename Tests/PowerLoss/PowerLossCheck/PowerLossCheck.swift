// powerloss-check: stores events through the broker's own committer and store
// (its VFS, its checkpoints) on top of a VFS that knows what a power loss
// would leave on the disk (CPowerLossVFS), takes snapshots of that at random
// moments, and checks each: SQLite opens it, it passes integrity_check, and
// every event acknowledged before the snapshot is in it.
//
// Run by PowerLossTests in a process of its own: the VFS is process-wide.
//
//   powerloss-check DIRECTORY EVENTS SNAPSHOTS SEED full|normal
//
// Prints one line of `key=value` pairs and exits 0 if every snapshot passed,
// 1 if one did not, 2 on a usage or setup error.
import CPowerLossVFS
import Foundation
import GRDBSQLite
import HookbusCore
import Logging
import Synchronization

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("powerloss-check: \(message)\n".utf8))
    exit(2)
}

func makeEvent(_ id: String, decoder: RequestDecoder, producer: Producer) -> NewEvent {
    let padding = String(repeating: "x", count: 160)
    let line = #"{"specversion":"1.0","type":"powerloss.test","source":"powerloss","id":"\#(id)","data":{"p":"\#(padding)"}}"#
    guard case .publish(let event) = decoder.decode(line: Array(line.utf8), producer: producer, nowMicros: 0) else {
        fail("the test event does not validate: \(line)")
    }
    return event
}

/// What the producers and the snapshotter share.
final class Shared: Sendable {
    /// Acknowledged ids, in the order the acknowledgements came.
    let acked = Mutex<[String]>([])
    /// For each snapshot: its directory and how many acknowledgements came before it.
    let taken = Mutex<[(path: String, acked: Int)]>([])
    let producing = Atomic<Bool>(true)
}

@main
struct PowerLossCheck {
    static func main() async {
        await run()
    }

    /// Off the main actor: the producers and the snapshotter share only Sendable state.
    nonisolated static func run() async {
        let arguments = CommandLine.arguments
        guard arguments.count == 6, let eventCount = Int(arguments[2]), let snapshotCount = Int(arguments[3]),
              let seed = UInt32(arguments[4]), let durability = Durability(rawValue: arguments[5]) else {
            fail("usage: powerloss-check DIRECTORY EVENTS SNAPSHOTS SEED full|normal")
        }
        let directory = arguments[1]
        let databasePath = directory + "/hb.db"
        let snapshotsDirectory = directory + "/snapshots"
        try? FileManager.default.createDirectory(atPath: snapshotsDirectory, withIntermediateDirectories: true)

        // The broker's VFS first, then this one around it, before any connection opens.
        SQLiteSetup.gatherWALWrites(of: databasePath)
        guard powerloss_register(directory) == SQLITE_OK else { fail("cannot register the power-loss VFS") }

        let logger = Logger(label: "powerloss-check") { _ in SwiftLogNoOpLogHandler() }
        let store: Store
        do {
            store = try Store(path: databasePath, durability: durability)
        } catch {
            fail("cannot open \(databasePath): \(error)")
        }
        let committer = Committer(store: store, logger: logger)
        let producer = Producer(uid: 0, gid: 0, pid: 1)
        let decoder = RequestDecoder()

        let shared = Shared()

        // Snapshots at random moments spread over the whole run: each once the
        // acknowledgements pass a random mark.
        var random = SystemRandomNumberGenerator()
        let marks = (0..<snapshotCount).map { _ in Int.random(in: 1..<eventCount, using: &random) }.sorted()
        let snapshotter = Thread {
            var index = 0
            while shared.producing.load(ordering: .relaxed) && index < snapshotCount {
                if shared.acked.withLock({ $0.count }) < marks[index] {
                    usleep(100)
                    continue
                }
                // Read the acknowledgements first: each of them came after its commit synced.
                let before = shared.acked.withLock { $0.count }
                let path = snapshotsDirectory + "/\(index)"
                try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
                guard powerloss_snapshot(path, seed &+ UInt32(index)) >= 0 else { fail("cannot write snapshot \(path)") }
                shared.taken.withLock { $0.append((path, before)) }
                index += 1
            }
        }
        snapshotter.start()

        // Eight producers, each with one batch of 16 in flight: groups of up to 128.
        let producers = 8, batch = 16
        await withTaskGroup(of: Void.self) { group in
            for producerIndex in 0..<producers {
                group.addTask {
                    var next = producerIndex * batch
                    while next < eventCount {
                        var ids: [String] = []
                        for n in next..<min(next + batch, eventCount) { ids.append("e\(n)") }
                        // Now and then a resend of a batch already acknowledged: duplicates.
                        if next > producers * batch * 4 && next % (producers * batch * 50) == producerIndex * batch {
                            ids.append("e\(next - producers * batch * 3)")
                        }
                        switch await committer.commit(ids.map { makeEvent($0, decoder: decoder, producer: producer) }) {
                        case .success(let outcomes):
                            shared.acked.withLock { list in
                                for outcome in outcomes {
                                    switch outcome {
                                    case .stored(_, let id), .duplicate(_, let id): list.append(id)
                                    }
                                }
                            }
                        case .failure(let error):
                            fail("commit refused: \(error)")
                        }
                        next += producers * batch
                    }
                }
            }
        }
        shared.producing.store(false, ordering: .relaxed)
        while !snapshotter.isFinished { usleep(1_000) }
        await committer.close()

        /// The checkpoint sequence number in the WAL header (bytes 12–15): how many
        /// times the WAL started over.
        func walRestarts(_ path: String) -> Int {
            guard let handle = FileHandle(forReadingAtPath: path),
                  let header = try? handle.read(upToCount: 16), header.count == 16 else { return -1 }
            try? handle.close()
            return header[12..<16].reduce(0) { $0 << 8 | Int($1) }
        }
        let restarts = walRestarts(databasePath + "-wal")
        let syncs = powerloss_syncs()
        try? store.close()

        /// Opens a snapshot with SQLite's own unix VFS (as a restarted broker would
        /// find it), and returns what is wrong with it, if anything.
        func check(_ path: String, ackedBefore: Int, ids: [String]) -> (problem: String?, missing: Int) {
            var db: OpaquePointer?
            guard sqlite3_open_v2(path + "/hb.db", &db, SQLITE_OPEN_READWRITE, "unix") == SQLITE_OK, let db else {
                defer { sqlite3_close_v2(db) }
                return ("cannot open: \(db.map { String(cString: sqlite3_errmsg($0)) } ?? "?")", 0)
            }
            defer { sqlite3_close_v2(db) }
            func rows(_ sql: String) -> [String]? {
                var statement: OpaquePointer?
                guard sqlite3_prepare_v2(db, sql, -1, &statement, nil) == SQLITE_OK else { return nil }
                defer { sqlite3_finalize(statement) }
                var out: [String] = []
                while true {
                    let rc = sqlite3_step(statement)
                    if rc == SQLITE_DONE { return out }
                    guard rc == SQLITE_ROW else { return nil }
                    out.append(sqlite3_column_text(statement, 0).map { String(cString: $0) } ?? "")
                }
            }
            guard let integrity = rows("PRAGMA integrity_check") else {
                return ("integrity_check failed: \(String(cString: sqlite3_errmsg(db)))", 0)
            }
            if integrity != ["ok"] { return ("integrity_check: \(integrity.joined(separator: "; ").prefix(400))", 0) }
            guard let stored = rows("SELECT id FROM outbox") else {
                return ("cannot read the outbox: \(String(cString: sqlite3_errmsg(db)))", 0)
            }
            let present = Set(stored)
            let missing = ids[..<ackedBefore].filter { !present.contains($0) }
            if !missing.isEmpty {
                return ("\(missing.count) of \(ackedBefore) acknowledged events missing, e.g. \(missing.prefix(3))", missing.count)
            }
            return (nil, 0)
        }

        let ids = shared.acked.withLock { $0 }
        let snapshots = shared.taken.withLock { $0 }
        var failed = 0, missingTotal = 0, biggest = 0, restartedSnapshots = 0
        for snapshot in snapshots {
            // Read before SQLite opens it: the last connection to close folds the WAL in.
            if walRestarts(snapshot.path + "/hb.db-wal") > 0 { restartedSnapshots += 1 }
            let (problem, missing) = check(snapshot.path, ackedBefore: snapshot.acked, ids: ids)
            missingTotal += missing
            biggest = max(biggest, snapshot.acked)
            if let problem {
                failed += 1
                FileHandle.standardError.write(Data("snapshot \(snapshot.path) (after \(snapshot.acked) acks): \(problem)\n".utf8))
            }
        }
        print("snapshots=\(snapshots.count) failed=\(failed) missing=\(missingTotal) acked=\(ids.count) largest_acked_before_snapshot=\(biggest) wal_restarts=\(restarts) snapshots_after_a_restart=\(restartedSnapshots) syncs=\(syncs)")
        exit(failed == 0 ? 0 : 1)
    }
}
