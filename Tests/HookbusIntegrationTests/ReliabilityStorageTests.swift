import Foundation
import GRDB
import HookbusClient
import HookbusCore
import HookbusTestSupport
import Testing

/// Storage failures (DESIGN.md "Storage", issue 6 "Full disk" and
/// "Corruption"): a full database or disk answers `unavailable`, keeps the
/// broker serving, loses nothing acknowledged and recovers once room returns,
/// without a restart; a damaged database stops startup with a message that
/// says what to do, and the file is left as it was.
@Suite("Reliability: storage")
struct ReliabilityStorageTests {
    /// Publishes `fill.x` events of about 1 KB over `client` until `refusals`
    /// in a row are refused (a failed transaction frees what it took, so a
    /// smaller one may still fit after the first refusal); returns the
    /// acknowledged ids and seqs, and the last refusal.
    static func fill(_ client: SocketClient, prefix: String, limit: Int = 20_000, refusals: Int = 5) throws -> (acked: [String: Int64], refusal: WireReply?) {
        var acked: [String: Int64] = [:]
        var inRow = 0
        for n in 0..<limit {
            let id = "\(prefix)\(n)"
            let reply = try client.call(fillLine(id))
            if reply.ok, let seq = reply.seq {
                acked[id] = seq
                inRow = 0
            } else {
                inRow += 1
                if inRow == refusals { return (acked, reply) }
            }
        }
        return (acked, nil)
    }

    /// A `fill.x` event of about 1 KB.
    static func fillLine(_ id: String) -> String {
        EventLine.make(type: "fill.x", source: "fill", id: id, data: #"{"pad":"\#(String(repeating: "f", count: 1000))"}"#)
    }

    /// Publishes one event again and again until it is stored, or the deadline passes.
    static func publishUntilStored(_ client: SocketClient, id: String, log: () -> String) async throws -> WireReply {
        let deadline = ContinuousClock.now + .seconds(20)
        while true {
            let reply = try client.call(fillLine(id))
            if reply.ok { return reply }
            if ContinuousClock.now >= deadline {
                throw HarnessError("still refused 20 s after room was made: \(reply)\n\(log())")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    static func expectStored(_ acked: [String: Int64], in path: String) throws {
        let stored = Dictionary(uniqueKeysWithValues: try ReliabilityDatabase(path: path).ids(source: "fill").map { ($0.id, $0.seq) })
        let lost = acked.filter { stored[$0.key] != $0.value }
        #expect(lost.isEmpty, "\(lost.count) acknowledged events are not stored as acknowledged, e.g. \(lost.keys.sorted().prefix(5))")
    }

    @Test("SQLITE_FULL (HOOKBUS_MAX_PAGE_COUNT): unavailable/storage_failed, the broker serves on, nothing acknowledged lost; dlq purge makes room and publishing resumes without a restart")
    func databaseFull() async throws {
        // Dead letters keep a copy of their event: purging them is the room made.
        let bed = try ReliabilityBed(config: """
            durability = "normal"

            [[subscribers]]
            name = "reject"
            types = ["doomed.*"]
            exec = ["/bin/sh", "-c", "cat > /dev/null; exit 65"]
            max_attempts = 1
            """, environment: ["HOOKBUS_MAX_PAGE_COUNT": "160"])
        defer { bed.cleanUp() }
        let broker = bed.broker
        try await broker.start()
        let client = try broker.connect()

        let doomed = 40
        let pad = String(repeating: "d", count: 3000)
        for n in 0..<doomed {
            #expect(try client.call(EventLine.make(type: "doomed.x", source: "doomed", id: "d\(n)", data: #"{"pad":"\#(pad)"}"#)).ok)
        }
        let database = try ReliabilityDatabase(path: broker.databasePath)
        let deadline = ContinuousClock.now + .seconds(30)
        while try database.deadLetterCount() < doomed {
            if ContinuousClock.now >= deadline { throw HarnessError("\(doomed) dead letters not made within 30 s\n\(broker.log)") }
            try await Task.sleep(for: .milliseconds(20))
        }

        let (acked, refusal) = try Self.fill(client, prefix: "a")
        let refused = try #require(refusal, "the database never filled up")
        #expect(refused.code == "unavailable" && refused.reason == "storage_failed", "\(refused)")
        #expect(refused.message?.contains("full") == true, "the message says the database or disk is full: \(refused)")
        #expect(acked.count > 20, "only \(acked.count) events before the database was full")

        // Full, and serving: ping, stats and reads answer; publishes are refused, not lost.
        #expect(broker.isRunning)
        let other = try broker.connect()
        #expect(try other.call(#"{"op":"ping"}"#).ok)
        #expect(try other.call(#"{"op":"stats"}"#).ok)
        let whileFull = try other.call(Self.fillLine("while-full"))
        #expect(whileFull.code == "unavailable", "\(whileFull)")
        try Self.expectStored(acked, in: broker.databasePath)

        // Make room: purge the dead letters (and their copies of the events).
        let purged = try other.call(#"{"op":"dlq.purge","all":true}"#)
        #expect(purged.ok, "\(purged)")
        let reply = try await Self.publishUntilStored(client, id: "after-purge") { broker.log }
        #expect(reply.seq != nil)
        let (more, _) = try Self.fill(client, prefix: "b", limit: 10)
        #expect(more.count == 10, "publishing goes on once there is room")
        try Self.expectStored(acked.merging(more) { a, _ in a }, in: broker.databasePath)
        #expect(try database.integrityCheck() == "ok")
        #expect(try await broker.stop() == 0)
    }

    /// True if this process may mount a tmpfs (root, outside a locked-down container).
    static let canMountTmpfs: Bool = {
        guard getuid() == 0 else { return false }
        var template = Array("/tmp/hb-probe-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { return false }
        let directory = String(cString: made)
        defer { rmdir(directory) }
        guard ReliabilityMount.run("/bin/mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", directory]) else { return false }
        return ReliabilityMount.run("/bin/umount", [directory])
    }()

    @Test("a real full filesystem (a small tmpfs): unavailable/storage_failed, the broker serves on; removing a file makes room and publishing resumes",
          .enabled(if: canMountTmpfs, "needs root and mount(2) for a tmpfs"))
    func filesystemFull() async throws {
        let scratch = try ScratchDirectory()
        let mountPoint = scratch.path("fs")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: false)
        try #require(ReliabilityMount.run("/bin/mount", ["-t", "tmpfs", "-o", "size=3m", "tmpfs", mountPoint]), "mount failed")
        let broker = scratch.broker(database: "fs/hb.db", config: try scratch.write("hookbus.toml", "durability = \"normal\"\n"))
        defer {
            broker.killNow()
            _ = ReliabilityMount.run("/bin/umount", [mountPoint])
            scratch.cleanUp()
        }
        // Most of the filesystem is taken by a file someone else wrote.
        let ballast = mountPoint + "/ballast"
        #expect(FileManager.default.createFile(atPath: ballast, contents: Data(count: 2 * 1024 * 1024)))
        try await broker.start()
        let client = try broker.connect()

        let (acked, refusal) = try Self.fill(client, prefix: "a")
        let refused = try #require(refusal, "the filesystem never filled up")
        #expect(refused.code == "unavailable" && refused.reason == "storage_failed", "\(refused)")
        #expect(refused.message?.contains("full") == true, "\(refused)")
        #expect(acked.count > 20, "only \(acked.count) events before the disk was full")
        #expect(broker.isRunning)
        #expect(try broker.connect().call(#"{"op":"ping"}"#).ok)
        let whileFull = try client.call(Self.fillLine("while-full"))
        #expect(whileFull.code == "unavailable", "\(whileFull)")
        try Self.expectStored(acked, in: broker.databasePath)

        // Space returns: the broker finds it by itself.
        try FileManager.default.removeItem(atPath: ballast)
        _ = try await Self.publishUntilStored(client, id: "after-room") { broker.log }
        let (more, _) = try Self.fill(client, prefix: "b", limit: 10)
        #expect(more.count == 10)
        try Self.expectStored(acked.merging(more) { a, _ in a }, in: broker.databasePath)
        #expect(try broker.outbox().integrityCheck() == "ok")
        #expect(try await broker.stop() == 0)
    }

    // MARK: Corruption

    /// Ways to damage a database, each applied to a real one the broker wrote.
    enum Damage: String, CaseIterable, Sendable {
        case garbage = "64 KB of random bytes"
        case zeros = "8 KB of zero bytes"
        case header = "the first 100 bytes (the SQLite header) overwritten"
        case truncated = "cut in the middle of its schema"
        case notSQLite = "a text file"

        func apply(to original: [UInt8]) -> [UInt8] {
            var random = SplitMix64(seed: 0xBAD_DA7A)
            switch self {
            case .garbage: return (0..<65_536).map { _ in UInt8.random(in: 0...255, using: &random) }
            case .zeros: return [UInt8](repeating: 0, count: 8192)
            case .header:
                var bytes = original
                for index in 0..<100 { bytes[index] = UInt8.random(in: 0...255, using: &random) }
                return bytes
            case .truncated: return Array(original.prefix(4096 + 1000))
            case .notSQLite: return Array("socket = \"/run/hookbus.sock\"\n# not a database\n".utf8)
            }
        }
    }

    /// A real database of the broker's with a few hundred events, checkpointed
    /// into its main file: its path and bytes.
    static func realDatabase(in scratch: ScratchDirectory) async throws -> (path: String, bytes: [UInt8]) {
        let broker = scratch.broker(socket: "real.sock", database: "real.db")
        try await broker.start()
        let client = try broker.connect()
        for n in 0..<200 {
            #expect(try client.call(EventLine.make(source: "real", id: "r\(n)", data: #"{"pad":"\#(String(repeating: "r", count: 300))"}"#)).ok)
        }
        try await broker.stop()
        // Everything into the main file, which stays in WAL mode as the broker left it.
        let queue = try DatabaseQueue(path: broker.databasePath)
        try await queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
        try queue.close()
        return (broker.databasePath, Array(try Data(contentsOf: URL(fileURLWithPath: broker.databasePath))))
    }

    @Test("a damaged database file stops startup: exit status not 0, a message saying it is damaged and what to do, the file untouched",
          arguments: Damage.allCases)
    func damagedDatabase(damage: Damage) async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let damaged = damage.apply(to: try await Self.realDatabase(in: scratch).bytes)
        let path = scratch.path("hb.db")
        try Data(damaged).write(to: URL(fileURLWithPath: path))

        let result = try await ToolRun.run(try TestBinaries.hookbusd(), ["--socket", scratch.path("s.sock"), "--db", path], scratch: scratch)
        #expect(!result.signaled && result.status != 0, "\(damage.rawValue): \(result)")
        #expect(result.stderr.contains(path) && result.stderr.contains("damaged"), "names the file and says it is damaged: \(result.stderr)")
        #expect(result.stderr.contains("move the file aside") && result.stderr.contains("backup"), "says what to do: \(result.stderr)")
        #expect(!result.stderr.contains("ready"), "it never served")
        let unchanged = Array(try Data(contentsOf: URL(fileURLWithPath: path))) == damaged
        #expect(unchanged, "\(damage.rawValue): the file was changed")
        #expect(!FileManager.default.fileExists(atPath: scratch.path("s.sock")), "no socket left behind")
    }

    /// Damage SQLite only finds when it reads the pages concerned (the
    /// startup's `PRAGMA quick_check` reads them all).
    enum PageDamage: String, CaseIterable, Sendable {
        case outboxLeaves = "three leaf pages of the outbox table"
        case retriesRoot = "the root page of the retries table"

        /// The pages to damage in the database at `path` (numbered from 1).
        func pages(in path: String) throws -> [Int] {
            var configuration = Configuration()
            configuration.readonly = true
            let queue = try DatabaseQueue(path: path, configuration: configuration)
            return try queue.read { db in
                switch self {
                case .outboxLeaves:
                    let leaves = try Int.fetchAll(db, sql: "SELECT pageno FROM dbstat WHERE name = 'outbox' AND pagetype = 'leaf' ORDER BY pageno")
                    return Array(leaves.dropFirst(max(0, leaves.count / 2 - 1)).prefix(3))
                case .retriesRoot:
                    return try Int.fetchAll(db, sql: "SELECT rootpage FROM sqlite_master WHERE name = 'retries'")
                }
            }
        }
    }

    @Test("damaged pages past the header (found by the startup check) stop startup with the message that says what to do, the file untouched",
          arguments: PageDamage.allCases)
    func damagedPages(damage: PageDamage) async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let real = try await Self.realDatabase(in: scratch)
        let pages = try damage.pages(in: real.path)
        try #require(!pages.isEmpty && !pages.contains(1), "nothing to damage: \(pages)")
        var bytes = real.bytes
        var random = SplitMix64(seed: 0xBAD_9A6E)
        for page in pages {
            for index in ((page - 1) * 4096)..<(page * 4096) { bytes[index] = UInt8.random(in: 0...255, using: &random) }
        }
        let path = scratch.path("hb.db")
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        let broker = scratch.broker()
        let process = try broker.launch()
        // Whichever comes first: the broker gives up, or it answers ping.
        let deadline = ContinuousClock.now + BrokerProcess.deadline
        var served = false
        while process.isRunning && ContinuousClock.now < deadline {
            if let reply = try? broker.connect(timeout: .seconds(2)).call(#"{"op":"ping"}"#), reply.ok {
                served = true
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        broker.killNow()
        let log = broker.log
        #expect(!served && process.terminationReason == .exit && process.terminationStatus != 0,
                "\(damage.rawValue): hookbusd started on a damaged database\n\(log)")
        #expect(log.contains(path) && log.contains("damaged") && log.contains("move the file aside") && log.contains("backup"),
                "\(damage.rawValue): the message names the file and says what to do\n\(log)")
        let after = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        let unchanged = after == bytes  // a Bool, so a failure does not print both files
        #expect(unchanged, "\(damage.rawValue): the file was changed (\(bytes.count) bytes before, \(after.count) after)")
    }

    @Test("damage in a file too large for the startup check is found just after start: publishing then answers unavailable, database_damaged")
    func damageFoundAfterStart() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let real = try await Self.realDatabase(in: scratch)
        // Past the startup check's limit: a table of filler after the broker's own.
        let queue = try DatabaseQueue(path: real.path)
        try await queue.write { db in
            try db.execute(sql: "CREATE TABLE filler (b BLOB)")
            for _ in 0..<(Store.startupCheckLimit >> 20) + 4 { try db.execute(sql: "INSERT INTO filler VALUES (zeroblob(1048576))") }
        }
        try await queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
        try queue.close()
        // The filler's own b-tree page: the broker's start never reads it, the check does.
        let pages = try await DatabaseQueue(path: real.path).read { db in
            try Int.fetchAll(db, sql: "SELECT pageno FROM dbstat WHERE name = 'filler' AND pagetype = 'leaf'")
        }
        try #require(!pages.isEmpty && !pages.contains(1), "nothing to damage: \(pages)")
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: real.path)))
        try #require(bytes.count > Store.startupCheckLimit)
        var random = SplitMix64(seed: 0xDA_4A6E)
        for page in pages {
            for index in ((page - 1) * 4096)..<(page * 4096) { bytes[index] = UInt8.random(in: 0...255, using: &random) }
        }
        try Data(bytes).write(to: URL(fileURLWithPath: scratch.path("hb.db")))

        let broker = scratch.broker()
        try await broker.start()
        let client = try broker.connect()
        let deadline = ContinuousClock.now + BrokerProcess.deadline
        var reply = try client.call(EventLine.make(source: "late", id: "l0"))
        var n = 1
        while reply.ok && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            reply = try client.call(EventLine.make(source: "late", id: "l\(n)"))
            n += 1
        }
        #expect(!reply.ok && reply.code == "unavailable" && reply.reason == "database_damaged", "\(reply)")
        #expect(reply.message?.contains("damaged") == true && reply.message?.contains("move the file aside") == true, "\(reply)")
        // The broker keeps serving: commands still answer.
        #expect(try broker.connect().call(#"{"op":"ping"}"#).ok)
        try await broker.stop()
    }
}

/// mount(8) and umount(8) for the tmpfs test.
enum ReliabilityMount {
    /// Runs `tool` with `arguments`; true on exit status 0.
    static func run(_ tool: String, _ arguments: [String]) -> Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return false }
        guard ProcessWait.exitBlocking(of: process, within: .seconds(20)) else {
            process.terminate()
            return false
        }
        return process.terminationStatus == 0
    }
}
