import Foundation
import GRDB
import HookbusClient

/// What the operator-tool and `tools/` tests share, on top of `DispatchBed`: a
/// config with short backoffs (and optionally a retention), the `hookbus` CLI's
/// JSON output decoded, record.sh's log parsed, a socket subscriber driven line
/// by line, and programs left running in the background (`tail`, the Python
/// socket subscriber).
enum OperatorBed {
    /// `[defaults]` for these tests: retries 100 ms apart, so a dead letter or a
    /// redelivery comes within a second, and a timeout far above what a script
    /// needs on a loaded two-core machine.
    static let defaults = """
        [defaults]
        max_attempts = 3
        backoff_initial = "100ms"
        backoff_max = "200ms"
        timeout = "20s"
        """

    /// Starts a broker on `subscribers` (TOML; `{dir}` is the scratch directory,
    /// `{examples}` tools/examples, `{tools}` tools/). `settings` are top-level
    /// keys such as `retention = "2s"`: they must come before the first table,
    /// so they go in front of `[defaults]`.
    static func start(in scratch: ScratchDirectory, settings: String = "", subscribers: String,
                      environment: [String: String] = [:]) async throws -> DispatchBed {
        try await DispatchBed.start(
            in: scratch, defaults: settings + "\n\n" + defaults,
            subscribers: subscribers.replacingOccurrences(of: "{tools}", with: ToolScripts.directory),
            environment: environment)
    }
}

/// The user-facing scripts of `tools/`, as a user would run them.
enum ToolScripts {
    static let directory = TestBinaries.packageRoot.appendingPathComponent("tools").path

    static let notify = directory + "/subscribers/notify.sh"
    static let pipeIndexer = directory + "/subscribers/pipe_indexer.py"
    static let socketSubscriber = directory + "/subscribers/socket_subscriber.py"
    static let publish = directory + "/producers/publish.py"

    /// Runs a script by its path (its `#!` line picks the interpreter) to completion.
    static func run(_ script: String, _ arguments: [String], stdin: [UInt8]? = nil, scratch: ScratchDirectory) async throws -> ToolResult {
        try await ToolRun.run(URL(fileURLWithPath: script), arguments, stdin: stdin, scratch: scratch)
    }
}

/// Decoding the JSON the CLI prints and the broker writes.
enum JSONText {
    static func object(_ text: String) throws -> [String: Any] {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
            throw HarnessError("not a JSON object: \(text)")
        }
        return object
    }

    static func array(_ text: String) throws -> [[String: Any]] {
        guard let array = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [[String: Any]] else {
            throw HarnessError("not a JSON array of objects: \(text)")
        }
        return array
    }

    static func int(_ value: Any?) -> Int64? { (value as? NSNumber)?.int64Value }

    static func ints(_ value: Any?) -> [Int64] { (value as? [Any] ?? []).compactMap { int($0) } }
}

extension DispatchBed {
    /// `hookbus <arguments> --socket <broker socket>`.
    func cli(_ arguments: String...) async throws -> ToolResult {
        try await broker.hookbus(arguments)
    }

    /// `hookbus <arguments> --json --socket ...`, which must exit 0; its stdout decoded.
    func cliJSON(_ arguments: String...) async throws -> Any {
        let result = try await broker.hookbus(arguments + ["--json"])
        guard result.status == 0, !result.signaled else {
            throw HarnessError("hookbus \(arguments.joined(separator: " ")) --json failed: \(result)")
        }
        guard let value = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) else {
            throw HarnessError("hookbus \(arguments.joined(separator: " ")) --json printed no JSON: \(result)")
        }
        return value
    }

    /// The seqs still in the outbox, of every source.
    func storedSeqs() throws -> Set<Int64> {
        try Set(broker.outbox().rows().map(\.seq))
    }

    /// How long ago event `seq` was received, by the broker's clock; nil if it is gone.
    func age(ofSeq seq: Int64) throws -> Duration? {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        let queue = try DatabaseQueue(path: broker.databasePath, configuration: configuration)
        guard let received = try queue.read({ db in
            try Int64.fetchOne(db, sql: "SELECT received_at FROM outbox WHERE seq = ?", arguments: [seq])
        }) else { return nil }
        let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
        return .microseconds(now - received)
    }

    /// The deliveries record.sh logged for `subscriber` (`RECORD_DIR = "{dir}/rec"`).
    func recorded(_ subscriber: String) -> [RecordedDelivery] {
        lines("rec/\(subscriber).log").compactMap(RecordedDelivery.init)
    }

    /// Names of the socket subscribers connected now, from `stats`.
    func connectedSocketSubscribers() throws -> [String] {
        try stats().values.filter { $0.kind == "socket" }.map(\.name)
    }
}

/// One line of tools/examples/record.sh's log:
/// `<seq> <attempt> <subscriber> <type> <id> <replay 0|1>`.
struct RecordedDelivery: Hashable, CustomStringConvertible {
    var seq: Int64
    var attempt: Int
    var replay: Bool

    init(seq: Int64, attempt: Int = 1, replay: Bool) {
        (self.seq, self.attempt, self.replay) = (seq, attempt, replay)
    }

    init?(_ line: String) {
        let fields = line.split(separator: " ")
        guard fields.count == 6, let seq = Int64(fields[0]), let attempt = Int(fields[1]) else { return nil }
        (self.seq, self.attempt, self.replay) = (seq, attempt, fields[5] == "1")
    }

    var description: String { "seq \(seq) attempt \(attempt)\(replay ? " replay" : "")" }
}

/// How many times each (seq, replay) pair occurs: the comparison that says
/// "exactly these deliveries", whatever order they ran in.
func tally(_ deliveries: [RecordedDelivery]) -> [RecordedDelivery: Int] {
    deliveries.reduce(into: [:]) { $0[$1, default: 0] += 1 }
}

/// Runs blocking socket work on a plain thread, off the cooperative pool.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await onThreads(1) { _ in try body() }[0]
}

/// A socket subscriber driven line by line, as a client library would: the
/// subscribe request, delivery lines, `ack`. Blocking calls: use it inside
/// `onThread`. One test task uses a session at a time, one call after another,
/// which is what makes the unchecked `Sendable` safe.
final class SocketSession: @unchecked Sendable {
    /// One delivery line.
    struct Delivery: Sendable, CustomStringConvertible {
        var delivery: Int
        var subscriber: String
        var seq: Int64
        var attempt: Int
        var replay: Bool
        var eventID: String
        var eventType: String

        var description: String { "delivery \(delivery) of seq \(seq) to \(subscriber), attempt \(attempt)\(replay ? ", replay" : "")" }
    }

    let client: SocketClient

    init(_ socketPath: String) throws {
        client = try SocketClient.connect(socketPath, timeout: BrokerProcess.deadline)
    }

    /// Sends `subscribe` and returns the broker's reply, accepted or not.
    func subscribe(name: String?, types: [String], window: Int) throws -> WireReply {
        var members = [#""op":"subscribe""#]
        if let name { members.append(#""name":"\#(name)""#) }
        members.append(#""types":["# + types.map { "\"\($0)\"" }.joined(separator: ",") + "]")
        members.append(#""window":\#(window)"#)
        return try client.call("{" + members.joined(separator: ",") + "}")
    }

    /// The next delivery line; throws if the broker sends none within the socket timeout.
    func nextDelivery() throws -> Delivery {
        guard let line = try client.readLine() else { throw HarnessError("the broker closed the subscription") }
        let object = try JSONText.object(line)
        let event = object["event"] as? [String: Any] ?? [:]
        guard let id = JSONText.int(object["delivery"]), let seq = JSONText.int(object["seq"]),
              let attempt = JSONText.int(object["attempt"]) else {
            throw HarnessError("not a delivery line: \(line)")
        }
        return Delivery(delivery: Int(id), subscriber: object["subscriber"] as? String ?? "", seq: seq, attempt: Int(attempt),
                        replay: object["replay"] as? Bool ?? false, eventID: event["id"] as? String ?? "",
                        eventType: event["type"] as? String ?? "")
    }

    func ack(_ delivery: Delivery) throws {
        try client.send(line: #"{"op":"ack","delivery":\#(delivery.delivery)}"#)
    }

    /// Goes away without a word, as a crashed client would.
    func disconnect() {
        shutdown(client.descriptor, Int32(SHUT_RDWR))
    }

    /// Subscribes as `name` once the broker has let go of the previous
    /// connection with that name: right after a client closes, the broker may
    /// not have seen it yet and still answers `subscriber_in_use`.
    static func resubscribe(_ socketPath: String, name: String, types: [String], window: Int) throws -> (SocketSession, WireReply) {
        let deadline = ContinuousClock.now + BrokerProcess.deadline
        while true {
            let session = try SocketSession(socketPath)
            let reply = try session.subscribe(name: name, types: types, window: window)
            if reply.ok || reply.reason != "subscriber_in_use" { return (session, reply) }
            if ContinuousClock.now >= deadline {
                throw HarnessError("\(name) still in use \(BrokerProcess.deadline) after its connection closed: \(reply)")
            }
            usleep(10_000)
        }
    }
}

/// A program left running while the test does other things, its output in
/// files. `stop()` (in a `defer`) kills it if it is still running.
final class BackgroundTool {
    let process = Process()
    let label: String
    private let outPath: String
    private let errPath: String

    init(_ executable: URL, _ arguments: [String], scratch: ScratchDirectory) throws {
        label = ([executable.lastPathComponent] + arguments).joined(separator: " ")
        let name = "\(executable.lastPathComponent)-bg-\(UUID().uuidString.prefix(8))"
        outPath = scratch.path(name + ".out")
        errPath = scratch.path(name + ".err")
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: scratch.root)
        process.standardOutput = try FileHandle.creating(outPath)
        process.standardError = try FileHandle.creating(errPath)
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var stdout: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }

    /// Waits for the program to end by itself; throws if it is still running after `timeout`.
    func finished(within timeout: Duration = .seconds(30)) async throws -> ToolResult {
        guard await ProcessWait.exit(of: process, within: timeout) else {
            throw HarnessError("\(label) still running after \(timeout)\n--- stdout ---\n\(stdout)--- stderr ---\n\(stderr)")
        }
        return ToolResult(status: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal,
                          stdout: stdout, stderr: stderr)
    }

    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        _ = ProcessWait.exitBlocking(of: process, within: .seconds(10))
    }
}
