// powerloss-check: stores events through the broker's own committer and store
// (its VFS, its checkpoints) over a VFS that knows what a power loss would
// leave on the disk (CPowerLossVFS), takes snapshots of that at random
// moments, and checks each: SQLite opens it, it passes integrity_check, and
// every event acknowledged before the snapshot is in it.
//
// Run by PowerLossTests in a process of its own: the VFS is process-wide.
//
//   powerloss-check DIRECTORY EVENTS SNAPSHOTS SEED full|normal
//
// The store goes in DIRECTORY/store, each snapshot in DIRECTORY/snapshot-N
// while it is checked (then removed, unless it is one of the first two to
// fail). SNAPSHOTS are taken at random points; up to 8 more as soon as the
// WAL is seen to start over. Prints one line of
// `key=value` pairs and exits 0 if every snapshot passed, 1 if one did not,
// 2 on a usage or setup error. SEED sets the moments and the choice of
// unsynced writes; the moments are marks on the count of acknowledgements,
// so a rerun with the same seed takes its snapshots at about the same points.
import CPowerLossVFS
import Foundation
import GRDBSQLite
import HookbusCore
import HookbusTestSupport
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
    let results = Mutex(Results())
}

struct Results {
    var snapshots = 0
    var failed = 0
    var missing = 0
    /// Snapshots whose images chose among writes not synced yet.
    var withPending = 0
    /// Snapshots of a WAL that had started over at least once.
    var afterARestart = 0
    /// Snapshots taken as soon as the WAL was seen to start over.
    var atRestart = 0
}

/// The checkpoint sequence number in a WAL header (bytes 12–15): how many
/// times the WAL started over; -1 if there is none.
func walRestarts(_ path: String) -> Int {
    guard let handle = FileHandle(forReadingAtPath: path),
          let header = try? handle.read(upToCount: 16), header.count == 16 else { return -1 }
    try? handle.close()
    return header[12..<16].reduce(0) { $0 << 8 | Int($1) }
}

/// Opens a snapshot with SQLite's own unix VFS (as a restarted broker would
/// find the disk) and returns what is wrong with it, if anything.
func check(_ path: String, acknowledged: [String]) -> (problem: String?, missing: Int) {
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
    let missing = acknowledged.filter { !present.contains($0) }
    if !missing.isEmpty {
        return ("\(missing.count) of \(acknowledged.count) acknowledged events missing, e.g. \(missing.prefix(3))", missing.count)
    }
    return (nil, 0)
}

@main
struct PowerLossCheck {
    static func main() async {
        await run()
    }

    /// Off the main actor: the producers and the snapshotter share only Sendable state.
    nonisolated static func run() async {
        let arguments = CommandLine.arguments
        guard arguments.count == 6, let eventCount = Int(arguments[2]), eventCount > 1, let snapshotCount = Int(arguments[3]),
              let seed = UInt32(arguments[4]), let durability = Durability(rawValue: arguments[5]) else {
            fail("usage: powerloss-check DIRECTORY EVENTS SNAPSHOTS SEED full|normal")
        }
        let directory = arguments[1]
        let storeDirectory = directory + "/store"
        let databasePath = storeDirectory + "/hb.db"
        do {
            try FileManager.default.createDirectory(atPath: storeDirectory, withIntermediateDirectories: true)
        } catch {
            fail("cannot create \(storeDirectory): \(error)")
        }

        // This VFS first, then the broker's over it (so this one sees what the
        // broker's writes to the kernel), before any connection opens.
        SQLiteSetup.apply()
        guard powerloss_register(storeDirectory) == SQLITE_OK else { fail("cannot register the power-loss VFS") }
        guard SQLiteSetup.gatherWALWrites(of: databasePath) else { fail("the broker's VFS did not register") }

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

        // Snapshots spread over the whole run: each once the acknowledgements
        // pass a mark, and then while writes wait for a sync if any come
        // within 20 ms (that is where a power loss hurts).
        var random = SplitMix64(seed: UInt64(seed))
        let marks = (0..<snapshotCount).map { _ in Int.random(in: 1..<eventCount, using: &random) }.sorted()
        let snapshotter = Thread {
            var index = 0, atRestart = 0
            var lastRestarts = walRestarts(databasePath + "-wal")
            func take(_ name: String, seed: UInt32) {
                // The acknowledgements first: each of them came after its commit synced.
                let acknowledged = shared.acked.withLock { $0 }
                let path = directory + "/snapshot-\(name)"
                try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
                var pending: Int64 = 0
                guard powerloss_snapshot(path, seed, &pending) >= 0 else { fail("cannot write snapshot \(path)") }
                // Read before SQLite opens it: the last connection to close folds the WAL in.
                let restarted = walRestarts(path + "/hb.db-wal") > 0
                let (problem, missing) = check(path, acknowledged: acknowledged)
                let failedBefore = shared.results.withLock { results in
                    let failed = results.failed
                    results.snapshots += 1
                    results.missing += missing
                    if pending > 0 { results.withPending += 1 }
                    if restarted { results.afterARestart += 1 }
                    if problem != nil { results.failed += 1 }
                    return failed
                }
                if let problem {
                    FileHandle.standardError.write(Data("\(path) (after \(acknowledged.count) acknowledgements, \(pending) unsynced writes): \(problem)\n".utf8))
                }
                // The first two failed snapshots are kept to look at.
                if problem == nil || failedBefore >= 2 { try? FileManager.default.removeItem(atPath: path) }
            }
            while index < snapshotCount {
                // Right after the WAL starts over (up to 8 times): what the
                // checkpoint copied must be on the disk by then.
                let restarts = walRestarts(databasePath + "-wal")
                if restarts > lastRestarts {
                    lastRestarts = restarts
                    if atRestart < 8 {
                        take("restart-\(atRestart)", seed: seed &+ 1_000 &+ UInt32(atRestart))
                        atRestart += 1
                        shared.results.withLock { $0.atRestart += 1 }
                    }
                    continue
                }
                guard shared.acked.withLock({ $0.count }) >= marks[index] else {
                    usleep(100)
                    continue
                }
                let waitUntil = DispatchTime.now().uptimeNanoseconds + 20_000_000
                while powerloss_pending_writes() == 0 && DispatchTime.now().uptimeNanoseconds < waitUntil { usleep(20) }
                take("\(index)", seed: seed &+ UInt32(index))
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
        // Every mark is below the number of acknowledgements: the snapshotter ends.
        while !snapshotter.isFinished { usleep(1_000) }
        await committer.close()
        let restarts = walRestarts(databasePath + "-wal")
        let syncs = powerloss_syncs()
        try? store.close()

        let acked = shared.acked.withLock { $0.count }
        let results = shared.results.withLock { $0 }
        print("snapshots=\(results.snapshots) failed=\(results.failed) missing=\(results.missing) acked=\(acked) "
            + "snapshots_with_unsynced_writes=\(results.withPending) wal_restarts=\(restarts) "
            + "snapshots_after_a_restart=\(results.afterARestart) snapshots_at_a_restart=\(results.atRestart) syncs=\(syncs)")
        exit(results.failed == 0 ? 0 : 1)
    }
}
