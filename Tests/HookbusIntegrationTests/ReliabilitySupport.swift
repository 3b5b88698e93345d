import Foundation
import GRDB
import HookbusClient
import HookbusCore
import Synchronization

/// A scratch directory with one broker (with an environment of its own), cleaned up together.
struct ReliabilityBed {
    let scratch: ScratchDirectory
    let broker: BrokerProcess

    /// Writes `config` (if any) as `hookbus.toml`; `{dir}` in it stands for the
    /// scratch directory and `{examples}` for tools/examples. Not started yet.
    init(config: String?, environment: [String: String] = [:], database: String = "hb.db") throws {
        let scratch = try ScratchDirectory()
        self.scratch = scratch
        let configPath = try config.map {
            try scratch.write("hookbus.toml", $0.replacingOccurrences(of: "{dir}", with: scratch.root)
                .replacingOccurrences(of: "{examples}", with: DispatchExamples.directory))
        }
        broker = scratch.broker(database: database, config: configPath, environment: environment)
    }

    func cleanUp() {
        scratch.cleanUp()
    }
}

/// Read-only questions about a broker's database that the crash and storage
/// tests ask, beside a running or a stopped broker.
final class ReliabilityDatabase {
    private let queue: DatabaseQueue

    init(path: String) throws {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        queue = try DatabaseQueue(path: path, configuration: configuration)
    }

    /// `(id, seq)` of every stored event of `source`, duplicates included
    /// (there must be none: the broker stores a `(source, id)` once, checked in
    /// its memory since the outbox lost its unique index in migration v4).
    func ids(source: String) throws -> [(id: String, seq: Int64)] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT id, seq FROM outbox WHERE source = ?", arguments: [source])
                .map { ($0["id"], $0["seq"]) }
        }
    }

    /// The highest seq ever given (outbox_seq keeps it when pruning takes the last rows).
    func lastSeq() throws -> Int64 {
        try queue.read { db in try Self.lastSeq(db) }
    }

    static func lastSeq(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(db, sql: """
            SELECT max(coalesce((SELECT max(seq) FROM outbox), 0), coalesce((SELECT last FROM outbox_seq), 0))
            """) ?? 0
    }

    func integrityCheck() throws -> String {
        try queue.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check").joined(separator: "; ") }
    }

    /// Rows of the delivery tables that point at nothing: a retry of an event
    /// no longer (or never) in the outbox or of a subscriber not configured; a
    /// dead letter of an unknown subscriber; a cursor past the last seq given.
    func orphans(configured: Set<String>) throws -> [String] {
        try queue.read { db in
            var out: [String] = []
            for row in try Row.fetchAll(db, sql: """
                SELECT subscriber, seq FROM retries r WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.seq = r.seq)
                """) {
                out.append("retry of \(row["subscriber"] as String) for seq \(row["seq"] as Int64), not in the outbox")
            }
            for row in try Row.fetchAll(db, sql: "SELECT subscriber, seq FROM retries") {
                let name: String = row["subscriber"]
                if !configured.contains(name) { out.append("retry of unconfigured subscriber \(name), seq \(row["seq"] as Int64)") }
            }
            for name in try String.fetchAll(db, sql: "SELECT DISTINCT subscriber FROM dead_letters") where !configured.contains(name) {
                out.append("dead letter of unconfigured subscriber \(name)")
            }
            let last = try Self.lastSeq(db)
            for row in try Row.fetchAll(db, sql: "SELECT subscriber, cursor FROM subscriber_cursors WHERE cursor > ?", arguments: [last]) {
                out.append("cursor of \(row["subscriber"] as String) at \(row["cursor"] as Int64), past the last seq \(last)")
            }
            return out
        }
    }

    func deadLetterCount() throws -> Int {
        try queue.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM dead_letters") ?? 0 }
    }
}

/// What /proc says about the broker's descriptors.
enum ReliabilityDescriptors {
    /// Open descriptors of `pid`, or nil if /proc cannot tell.
    static func count(_ pid: Int32) -> Int? {
        try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
    }

    /// What each descriptor of `pid` points at (`socket:[…]`, a path, ...).
    static func targets(_ pid: Int32) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        return names.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)") }.sorted()
    }

    /// Those that are sockets.
    static func sockets(_ pid: Int32) -> Int? {
        guard FileManager.default.fileExists(atPath: "/proc/\(pid)/fd") else { return nil }
        return targets(pid).filter { $0.hasPrefix("socket:") }.count
    }
}

/// A raw Unix socket connection for hostile clients: writes whatever bytes it
/// is given, never reads unless asked, and closes when told.
final class ReliabilityRawConnection {
    let fd: Int32
    private var open = true

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket() failed: \(String(cString: strerror(errno)))") }
        let result = withUnixAddress(path) { Glibc.connect(fd, $0, $1) }
        guard result == 0 else {
            let text = String(cString: strerror(errno))
            Glibc.close(fd)
            throw HarnessError("connect(\(path)) failed: \(text)")
        }
    }

    /// Writes what the socket takes without blocking; a peer that went away is not an error here.
    func write(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
    }

    func close() {
        if open { Glibc.close(fd) }
        open = false
    }

    deinit { close() }
}


/// The counts a run produced (kill cycles, events, connections), appended to
/// the file named by `HOOKBUS_TEST_FIGURES` when it is set; nothing otherwise.
enum ReliabilityFigures {
    static func record(_ line: String) {
        guard let path = ProcessInfo.processInfo.environment["HOOKBUS_TEST_FIGURES"], !path.isEmpty else { return }
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else { return }
        handle.seekToEndOfFile()
        handle.write(Data((line + "\n").utf8))
        try? handle.close()
    }
}
