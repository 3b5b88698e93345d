import ArgumentParser
import Foundation
import HookbusCore

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Hand stored events to subscribers again.",
        discussion: """
            Selects stored events by seq range, receipt time and type, and queues them again for the named \
            subscribers (every subscriber whose types match if none is named), marked as replays. A bare \
            `hookbus replay` is refused: give a selection, a subscriber, or --all. With --db (and --config \
            to know the subscribers) it works on a stopped broker's database; the deliveries run when the \
            broker starts.
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var answer: AnswerTimeout
    @Option(name: .customLong("from-seq"), help: "First seq.") var fromSeq: Int64?
    @Option(name: .customLong("to-seq"), help: "Last seq.") var toSeq: Int64?
    @Option(help: "Received at or after this RFC 3339 time.") var since: String?
    @Option(help: "Received at or before this RFC 3339 time.") var until: String?
    @Option(name: .customLong("type"), help: "Type filter (repeatable).") var types: [String] = []
    @Option(name: .customLong("subscriber"), help: "Subscriber name (repeatable).") var subscribers: [String] = []
    @Flag(help: "Every stored event, to every subscriber whose types match: needed when nothing else selects.") var all = false
    @Flag(name: .customLong("dry-run"), help: "Print what would be replayed to whom; change nothing.") var dryRun = false
    @Option(help: "Work on this database of a stopped broker instead of the socket.") var db: String?
    @Option(help: "The broker's config file, to know its subscribers (with --db).") var config: String?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        if config != nil && db == nil { throw ValidationError("--config goes with --db (offline replay)") }
        if db != nil && connection.socket != nil {
            throw ValidationError("--socket and --db do not go together: --db works on a stopped broker's database, --socket through a running broker")
        }
        // A bare `hookbus replay` would run every subscriber again on the whole outbox.
        let selects = fromSeq != nil || toSeq != nil || since != nil || until != nil || !types.isEmpty
        if !selects && subscribers.isEmpty && !all {
            throw ValidationError("say what to replay: --from-seq, --to-seq, --since, --until, --type or --subscriber, "
                + "or --all for every stored event to every subscriber")
        }
        if selects && all {
            throw ValidationError("--all replays every stored event; leave it out when --from-seq, --to-seq, --since, --until or --type selects")
        }
        for time in [since, until].compactMap({ $0 }) where Timestamp.parse(time) == nil {
            throw ValidationError("\"\(time)\" is not an RFC 3339 time like 2026-11-23T04:30:00Z")
        }
        for type in types {
            if case .failure(let problem) = TypeFilter.parse(type) { throw ValidationError("--type \(type): \(problem.reason)") }
        }
    }

    func run() throws {
        runReporting {
            let reply = try db == nil ? online() : offline()
            if json {
                try printJSON(reply)
                return 0
            }
            let verb = dryRun ? "would replay" : "replayed"
            writeOut("\(verb) \(text(reply["deliveries"])) deliveries of \(text(reply["events"])) event(s)"
                + (db != nil && !dryRun ? " (queued; they run when the broker starts)" : ""))
            for entry in reply["subscribers"] as? [[String: Any]] ?? [] {
                let seqs = (entry["seqs"] as? [Any] ?? []).map { text($0) }
                let shown = seqs.prefix(20).joined(separator: ",") + (seqs.count > 20 ? ",…" : "")
                writeOut("  \(text(entry["name"])): \(text(entry["count"])) (seq \(shown))")
            }
            return 0
        }
    }

    private func online() throws -> [String: Any] {
        var body: [String: Any] = ["op": "replay", "dry_run": dryRun]
        if let fromSeq { body["from_seq"] = fromSeq }
        if let toSeq { body["to_seq"] = toSeq }
        if let since { body["since"] = since }
        if let until { body["until"] = until }
        if !types.isEmpty { body["types"] = types }
        if !subscribers.isEmpty { body["subscribers"] = subscribers }
        return try request(connection, timeout: answer.timeout, body)
    }

    private func offline() throws -> [String: Any] {
        guard let db else { return [:] }
        // Opening a path that is not there would create an empty database.
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: db, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw CLIError(message: "no database at \(db): --db names the database of a stopped broker", code: 1)
        }
        var settings = BrokerConfig()
        if let config {
            do {
                settings = try ConfigLoader(hooks: .builtIn).load(file: config)
            } catch {
                throw CLIError(message: "configuration error: \(error)", code: 78)
            }
        } else {
            writeError("hookbus: without --config only durable socket subscribers are known; "
                + "the configured ones (exec, pipe, hooks) get nothing: pass --config FILE")
        }
        // Opening the store applies the migrations; a dry run changes nothing.
        if dryRun, let pending = try? Store.pendingMigrations(at: db), !pending.isEmpty {
            throw CLIError(message: "\(db) needs an upgrade first (\(pending.joined(separator: ", "))), and a dry run changes "
                + "nothing: start hookbusd on it once, or replay without --dry-run (which upgrades it)", code: 1)
        }
        let store: Store
        do {
            // A replay never appends: the outbox's keys are not read.
            store = try Store(path: db, durability: settings.durability, appends: false)
        } catch where error.kind == .locked {
            throw CLIError(message: "\(error); use --socket to replay through the running broker", code: 1)
        } catch {
            throw CLIError(message: "\(error)", code: 1)
        }
        let registry = HookRegistry.builtIn
        let configured = settings.subscribers.map { subscriber -> SubscriberInfo in
            var types = subscriber.types
            if case .hook(let name) = subscriber.kind, types.isEmpty { types = registry.entry(name)?.type.defaultTypes ?? [] }
            return SubscriberInfo(name: subscriber.name, kind: "\(subscriber.kind)", types: types)
        }
        var selection = ReplaySelection()
        selection.fromSeq = fromSeq
        selection.toSeq = toSeq
        selection.since = since.flatMap(Timestamp.parse)
        selection.until = until.flatMap(Timestamp.parse)
        selection.types = types.compactMap { try? TypeFilter.parse($0).get() }
        selection.subscribers = subscribers
        do {
            let plan = try store.planReplay(selection, subscribers: try store.knownSubscribers(configured: configured))
            if !dryRun { try store.applyReplay(plan) }
            try store.close()
            return [
                "ok": true, "op": "replay", "dry_run": dryRun, "events": plan.events, "deliveries": plan.total,
                "subscribers": plan.deliveries.map { ["name": $0.subscriber, "count": $0.seqs.count, "seqs": Array($0.seqs.prefix(1000))] },
            ]
        } catch let error as OperatorError {
            let hint = config == nil && error.reason == "unknown_subscriber" ? " (pass --config to name configured subscribers)" : ""
            throw CLIError(message: "bad_request: \(error.message)\(hint)", code: 1)
        }
    }
}
