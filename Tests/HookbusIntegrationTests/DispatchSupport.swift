import Foundation
import GRDB
import HookbusClient

/// What the dispatch tests share: a broker started from a config with
/// subscribers, the example scripts of `tools/examples`, polling with a
/// deadline, and read-only views of the delivery tables and of `stats`.
struct DispatchBed {
    let scratch: ScratchDirectory
    let broker: BrokerProcess

    /// `[defaults]` for the tests: quick retries, so a test that waits for a
    /// dead letter waits well under a second, and a timeout far above what a
    /// script needs on a loaded machine (the timeout test sets its own).
    static let quickDefaults = """
        [defaults]
        max_attempts = 3
        backoff_initial = "50ms"
        backoff_max = "100ms"
        timeout = "20s"
        """

    /// Writes `hookbus.toml` (durability "normal": the tests kill brokers, they
    /// do not cut the power, and an fsync per delivery would only slow them),
    /// then starts a broker on it. `subscribers` is TOML text; `{dir}` in it
    /// stands for the scratch directory and `{examples}` for `tools/examples`.
    static func start(
        in scratch: ScratchDirectory, defaults: String = quickDefaults, subscribers: String,
        environment: [String: String] = [:]
    ) async throws -> DispatchBed {
        let text = "durability = \"normal\"\n\n\(defaults)\n\n\(subscribers)\n"
            .replacingOccurrences(of: "{dir}", with: scratch.root)
            .replacingOccurrences(of: "{examples}", with: DispatchExamples.directory)
        let config = try scratch.write("hookbus.toml", text)
        let broker = scratch.broker(config: config, environment: environment)
        try await broker.start()
        return DispatchBed(scratch: scratch, broker: broker)
    }

    /// Publishes `lines` over one connection and returns their seqs; every one must be stored.
    @discardableResult
    func publish(_ lines: [String]) async throws -> [Int64] {
        let socket = broker.socketPath
        return try await onThreads(1) { _ in
            let client = try SocketClient.connect(socket, timeout: BrokerProcess.deadline)
            var seqs: [Int64] = []
            try Publisher(client: client, window: 64).publish(lines) { line, replyLine in
                let reply = try WireReply(replyLine)
                guard reply.ok, let seq = reply.seq else { throw HarnessError("\(line) was refused: \(replyLine)") }
                seqs.append(seq)
            }
            return seqs
        }[0]
    }

    /// Publishes one line and returns its seq.
    func publish(_ line: String) async throws -> Int64 {
        try await publish([line])[0]
    }

    /// Polls `condition` every 20 ms until it holds; throws, with `what` and the
    /// broker's log, if it still does not after `timeout`.
    func waitUntil(
        _ what: @autoclosure () -> String, timeout: Duration = .seconds(30), _ condition: () throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while try !condition() {
            if ContinuousClock.now >= deadline {
                throw HarnessError("waited \(timeout) for: \(what())\n\(broker.log)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// The delivery tables, read beside the broker.
    func ledger() throws -> DispatchLedger { try DispatchLedger(path: broker.databasePath) }

    /// The `stats` reply, by subscriber name.
    func stats() throws -> [String: DispatchStats] {
        let line = try broker.connect().request(#"{"op":"stats"}"#)
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              object["ok"] as? Bool == true, let subscribers = object["subscribers"] as? [[String: Any]]
        else {
            throw HarnessError("not a stats reply: \(line)")
        }
        var out: [String: DispatchStats] = [:]
        for subscriber in subscribers {
            let stats = DispatchStats(subscriber)
            out[stats.name] = stats
        }
        return out
    }

    /// A text file's lines, or none if it does not exist yet.
    func lines(_ name: String) -> [String] {
        guard let text = try? String(contentsOfFile: scratch.path(name), encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map(String.init)
    }

    /// A file's content, or nil if it does not exist.
    func contents(_ name: String) -> String? {
        try? String(contentsOfFile: scratch.path(name), encoding: .utf8)
    }
}

/// The example subscriber scripts the tests run, as a user would configure them.
enum DispatchExamples {
    static let directory = TestBinaries.packageRoot.appendingPathComponent("tools/examples").path

    static func path(_ name: String) -> String { directory + "/" + name }
}

/// One subscriber in a `stats` reply.
struct DispatchStats: Sendable, CustomStringConvertible {
    var name: String
    var kind: String
    var delivered: Int
    var failedAttempts: Int
    var retrying: Int
    var dead: Int
    var inFlight: Int
    var cursor: Int64
    var lag: Int64
    var lastError: String?
    /// The p50 delivery time in microseconds; nil before the first delivery.
    var p50: Int64?

    init(_ object: [String: Any]) {
        func int(_ key: String) -> Int64 { (object[key] as? NSNumber)?.int64Value ?? -1 }
        name = object["name"] as? String ?? ""
        kind = object["kind"] as? String ?? ""
        delivered = Int(int("delivered"))
        failedAttempts = Int(int("failed_attempts"))
        retrying = Int(int("retrying"))
        dead = Int(int("dead"))
        inFlight = Int(int("in_flight"))
        cursor = int("cursor")
        lag = int("lag")
        lastError = object["last_error"] as? String
        p50 = ((object["delivery_us"] as? [String: Any])?["p50"] as? NSNumber)?.int64Value
    }

    var description: String {
        "\(name) (\(kind)): delivered \(delivered), failed_attempts \(failedAttempts), retrying \(retrying), dead \(dead), "
            + "in_flight \(inFlight), cursor \(cursor), lag \(lag), last_error \(lastError ?? "nil")"
    }
}

/// A row of `dead_letters`.
struct DispatchDeadLetter: Sendable {
    struct AttemptError: Sendable, Equatable {
        var attempt: Int
        var error: String
    }

    var seq: Int64
    var eventID: String
    var eventType: String
    var event: String
    var attempts: Int
    var reason: String
    var lastError: String
    var errors: [AttemptError]
}

/// A row of `retries`.
struct DispatchRetry: Sendable {
    var seq: Int64
    var attempt: Int
    var lastError: String?
}

/// Reads the delivery tables (protocol/STORAGE.md) read-only, beside a running
/// or stopped broker.
final class DispatchLedger {
    private let queue: DatabaseQueue

    init(path: String) throws {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        queue = try DatabaseQueue(path: path, configuration: configuration)
    }

    /// Dead letters of every subscriber.
    func deadLetterCount() throws -> Int {
        try queue.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM dead_letters") ?? 0 }
    }

    /// Retry rows of every subscriber.
    func retryRowCount() throws -> Int {
        try queue.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM retries") ?? 0 }
    }

    func deadLetters(_ subscriber: String) throws -> [DispatchDeadLetter] {
        try queue.read { db in
            try Row.fetchAll(db, sql: """
                SELECT seq, event_id, event_type, event, attempts, reason, last_error, errors
                FROM dead_letters WHERE subscriber = ? ORDER BY id
                """, arguments: [subscriber]).map { row in
                let errors = (try? JSONSerialization.jsonObject(with: Data((row["errors"] as String).utf8))) as? [[String: Any]] ?? []
                return DispatchDeadLetter(
                    seq: row["seq"], eventID: row["event_id"], eventType: row["event_type"], event: row["event"],
                    attempts: row["attempts"], reason: row["reason"], lastError: row["last_error"],
                    errors: errors.map {
                        .init(attempt: ($0["attempt"] as? NSNumber)?.intValue ?? -1, error: $0["error"] as? String ?? "")
                    })
            }
        }
    }

    func retries(_ subscriber: String) throws -> [DispatchRetry] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT seq, attempt, last_error FROM retries WHERE subscriber = ? ORDER BY seq",
                             arguments: [subscriber])
                .map { DispatchRetry(seq: $0["seq"], attempt: $0["attempt"], lastError: $0["last_error"]) }
        }
    }

    /// The subscriber's cursor: every matching seq up to it is settled.
    func cursor(_ subscriber: String) throws -> Int64? {
        try queue.read { db in
            try Int64.fetchOne(db, sql: "SELECT cursor FROM subscriber_cursors WHERE subscriber = ?", arguments: [subscriber])
        }
    }

    /// `data` of every stored event of `type`, in seq order.
    func eventData(type: String) throws -> [[String: Any]] {
        try queue.read { db in
            try String.fetchAll(db, sql: "SELECT event FROM outbox WHERE type = ? ORDER BY seq", arguments: [type])
        }.map { text in
            let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
            return object?["data"] as? [String: Any] ?? [:]
        }
    }

    /// The stored JSON of event `seq`.
    func event(seq: Int64) throws -> String? {
        try queue.read { db in try String.fetchOne(db, sql: "SELECT event FROM outbox WHERE seq = ?", arguments: [seq]) }
    }

    /// True once `subscriber` has nothing left to do up to `seq`: its cursor is
    /// there and no retry is pending.
    func settled(_ subscriber: String, through seq: Int64) throws -> Bool {
        try (cursor(subscriber) ?? 0) >= seq && retries(subscriber).isEmpty
    }
}

/// What /proc says about a process.
enum DispatchProcess {
    /// The state letter (`R`, `S`, `Z`, ...) and the parent's pid, or nil if there is no such process.
    static func status(_ pid: Int32) -> (state: Character, parent: Int32)? {
        guard let fields = statFields("/proc/\(pid)/stat"), fields.count >= 2,
              let state = fields[0].first, let parent = Int32(fields[1])
        else { return nil }
        return (state, parent)
    }

    /// The fields of a `stat` file (a process's or a thread's) after the name:
    /// `[0]` is field 3 (the state), `[38]` field 41 (the scheduling policy).
    static func statFields(_ path: String) -> [Substring]? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              let close = text.lastIndex(of: ")")
        else { return nil }
        // "pid (comm) S ppid ...": comm may hold spaces and parentheses, so read after the last ')'.
        return text[text.index(after: close)...].split(separator: " ")
    }
}
