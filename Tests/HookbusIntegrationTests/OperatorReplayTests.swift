import Foundation
import Testing

/// `hookbus replay`, through the running broker and offline on a stopped
/// broker's database, with two exec subscribers that record every delivery
/// (tools/examples/record.sh: seq, attempt, HOOKBUS_REPLAY).
@Suite("Operator: hookbus replay")
struct OperatorReplayTests {
    /// alpha takes every order event; beta new orders and user events.
    static let subscribers = """
        [[subscribers]]
        name = "alpha"
        types = ["order.*"]
        exec = ["{examples}/record.sh"]
        env = { RECORD_DIR = "{dir}/rec" }

        [[subscribers]]
        name = "beta"
        types = ["order.created", "user.*"]
        exec = ["{examples}/record.sh"]
        env = { RECORD_DIR = "{dir}/rec" }
        """

    /// What each subscriber has been handed so far, to compare with the logs.
    struct Expected {
        var alpha: [RecordedDelivery] = []
        var beta: [RecordedDelivery] = []
    }

    /// Waits until both logs have as many deliveries as expected and nothing is
    /// left to retry, then checks they hold exactly the expected ones.
    static func check(_ bed: DispatchBed, _ expected: Expected, _ step: String) async throws {
        try await bed.waitUntil("\(step): alpha \(expected.alpha.count) and beta \(expected.beta.count) deliveries, settled") {
            let ledger = try bed.ledger()
            return try bed.recorded("alpha").count >= expected.alpha.count && bed.recorded("beta").count >= expected.beta.count
                && ledger.retries("alpha").isEmpty && ledger.retries("beta").isEmpty
        }
        #expect(tally(bed.recorded("alpha")) == tally(expected.alpha), "\(step): alpha got \(bed.recorded("alpha"))")
        #expect(tally(bed.recorded("beta")) == tally(expected.beta), "\(step): beta got \(bed.recorded("beta"))")
    }

    /// The per-subscriber seqs of a `replay --json` reply.
    static func planned(_ reply: [String: Any]) -> [String: [Int64]] {
        var out: [String: [Int64]] = [:]
        for entry in reply["subscribers"] as? [[String: Any]] ?? [] {
            out[entry["name"] as? String ?? ""] = JSONText.ints(entry["seqs"])
        }
        return out
    }

    @Test("replay by seq range, by type and by subscriber re-delivers exactly the selected events, marked as replays; --dry-run changes nothing")
    func selections() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await OperatorBed.start(in: scratch, subscribers: Self.subscribers)
        let seqs = try await bed.publish([
            EventLine.make(type: "order.created", source: "shop", id: "o-1"),
            EventLine.make(type: "order.paid", source: "shop", id: "o-2"),
            EventLine.make(type: "user.joined", source: "shop", id: "u-3"),
            EventLine.make(type: "order.created", source: "shop", id: "o-4"),
            EventLine.make(type: "misc.other", source: "shop", id: "m-5"),
        ])
        let (created1, paid, joined, created4, other) = (seqs[0], seqs[1], seqs[2], seqs[3], seqs[4])
        func first(_ seq: Int64) -> RecordedDelivery { RecordedDelivery(seq: seq, replay: false) }
        func again(_ seq: Int64) -> RecordedDelivery { RecordedDelivery(seq: seq, replay: true) }
        var expected = Expected(alpha: [first(created1), first(paid), first(created4)],
                                beta: [first(created1), first(joined), first(created4)])
        try await Self.check(bed, expected, "first deliveries")

        // By seq range: each subscriber gets the events of the range it takes.
        let range = try #require(try await bed.cliJSON("replay", "--from-seq", "\(paid)", "--to-seq", "\(joined)") as? [String: Any])
        #expect(Self.planned(range) == ["alpha": [paid], "beta": [joined]], "\(range)")
        #expect(JSONText.int(range["events"]) == 2 && JSONText.int(range["deliveries"]) == 2 && range["dry_run"] as? Bool == false)
        expected.alpha.append(again(paid))
        expected.beta.append(again(joined))
        try await Self.check(bed, expected, "replay by seq range")

        // By type, with the human output.
        let byType = try await bed.cli("replay", "--type", "order.created")
        #expect(byType.status == 0, "\(byType)")
        #expect(byType.stdoutLines == ["replayed 4 deliveries of 2 event(s)", "  alpha: 2 (seq \(created1),\(created4))",
                                       "  beta: 2 (seq \(created1),\(created4))"], "\(byType)")
        expected.alpha += [again(created1), again(created4)]
        expected.beta += [again(created1), again(created4)]
        try await Self.check(bed, expected, "replay by type")

        // By subscriber: only beta, every event from the first on that it takes.
        let bySubscriber = try #require(try await bed.cliJSON("replay", "--subscriber", "beta", "--from-seq", "\(created1)") as? [String: Any])
        #expect(Self.planned(bySubscriber) == ["beta": [created1, joined, created4]], "\(bySubscriber)")
        expected.beta += [again(created1), again(joined), again(created4)]
        try await Self.check(bed, expected, "replay by subscriber")

        // --dry-run says what would happen and queues nothing.
        let dry = try #require(try await bed.cliJSON("replay", "--dry-run", "--from-seq", "\(created1)", "--to-seq", "\(other)") as? [String: Any])
        #expect(dry["dry_run"] as? Bool == true)
        #expect(Self.planned(dry) == ["alpha": [created1, paid, created4], "beta": [created1, joined, created4]], "\(dry)")
        #expect(try bed.ledger().retries("alpha").isEmpty && bed.ledger().retries("beta").isEmpty, "a dry run queues no retry")
        let human = try await bed.cli("replay", "--dry-run", "--subscriber", "alpha", "--type", "order.paid")
        #expect(human.status == 0 && human.stdoutLines == ["would replay 1 deliveries of 1 event(s)", "  alpha: 1 (seq \(paid))"], "\(human)")
        // A later event goes through both subscribers; nothing from the dry runs comes with it.
        let sentinel = try await bed.publish(EventLine.make(type: "order.created", source: "shop", id: "o-6"))
        expected.alpha.append(first(sentinel))
        expected.beta.append(first(sentinel))
        try await Self.check(bed, expected, "after the dry runs")
        try await bed.waitUntil("alpha and beta settled through \(sentinel)") {
            try bed.ledger().settled("alpha", through: sentinel) && bed.ledger().settled("beta", through: sentinel)
        }
        #expect(tally(bed.recorded("alpha")) == tally(expected.alpha), "\(bed.recorded("alpha"))")
        #expect(tally(bed.recorded("beta")) == tally(expected.beta), "\(bed.recorded("beta"))")
        #expect((bed.recorded("alpha") + bed.recorded("beta")).allSatisfy { $0.attempt == 1 })
    }

    @Test("with concurrency = 1, a replay whose deliveries fail once is delivered in seq order: each event retried and settled before the next starts")
    func replayKeepsOrder() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        // Fails every first attempt (replays start again at attempt 1), succeeds on the second.
        let bed = try await OperatorBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "ordered"
            types = ["client.*"]
            exec = ["/bin/sh", "-c", "echo \\"$HOOKBUS_SEQ $HOOKBUS_ATTEMPT\\" >> {dir}/ordered.log; [ \\"$HOOKBUS_ATTEMPT\\" -ge 2 ]"]
            concurrency = 1
            """)
        let seqs = try await bed.publish((0..<4).map { EventLine.make(type: "client.added", source: "fleet", id: "c\($0)") })
        let once = seqs.flatMap { ["\($0) 1", "\($0) 2"] }
        try await bed.waitUntil("first deliveries settled") { try bed.ledger().settled("ordered", through: seqs[3]) }
        #expect(bed.lines("ordered.log") == once, "\(bed.lines("ordered.log"))")

        let replay = try await bed.cli("replay", "--from-seq", "\(seqs[0])", "--to-seq", "\(seqs[3])")
        #expect(replay.status == 0, "\(replay)")
        try await bed.waitUntil("the replay settled") {
            try bed.lines("ordered.log").count == 16 && bed.ledger().retries("ordered").isEmpty
        }
        #expect(Array(bed.lines("ordered.log").dropFirst(8)) == once, "\(bed.lines("ordered.log"))")
    }

    @Test("a replay larger than the slice of retries read at a time, at concurrency 8: every event delivered once more, none twice")
    func largeReplayOnceEach() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        // Retries are read 100 at a time here (10,000 in production): the replay
        // comes in six slices, each read while the last one's deliveries are
        // still being written.
        let bed = try await OperatorBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "many"
            types = ["client.*"]
            exec = ["/bin/sh", "-c", "cat > /dev/null; echo \\"$HOOKBUS_SEQ ${HOOKBUS_REPLAY:-0}\\" >> {dir}/many.log"]
            concurrency = 8
            """, environment: ["HOOKBUS_RETRY_SLICE": "100"])
        let seqs = try await bed.publish((0..<600).map { EventLine.make(type: "client.added", source: "fleet", id: "m\($0)") })
        try await bed.waitUntil("first deliveries settled") { try bed.ledger().settled("many", through: seqs.last!) }
        let replay = try await bed.cli("replay", "--all")
        #expect(replay.status == 0, "\(replay)")
        try await bed.waitUntil("the replay delivered") {
            try bed.lines("many.log").count >= 1_200 && bed.ledger().retries("many").isEmpty
        }
        // And nothing left in the runner: no row read twice, waiting in memory.
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            let stats = try await bed.cliJSON("stats") as? [String: Any] ?? [:]
            let many = (stats["subscribers"] as? [[String: Any]] ?? []).first { $0["name"] as? String == "many" }
            if JSONText.int(many?["retrying"]) == 0 && JSONText.int(many?["in_flight"]) == 0 { break }
            guard ContinuousClock.now < deadline else {
                Issue.record("the runner still holds retries: \(String(describing: many))")
                break
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        let lines = bed.lines("many.log")
        let expected = seqs.flatMap { ["\($0) 0", "\($0) 1"] }.sorted()
        #expect(lines.count == 1_200, "\(lines.count) deliveries")
        let counted = Dictionary(grouping: lines, by: { $0 }).mapValues(\.count)
        let twice = counted.filter { $0.value > 1 }.keys.sorted()
        let never = expected.filter { counted[$0] == nil }
        #expect(twice.isEmpty && never.isEmpty, "delivered more than once: \(twice); never: \(never)")
    }

    /// An exec subscriber's script: each delivery logs "seq attempt replay" to
    /// starts.log and waits for its go-file (`go-<seq>-<attempt>-<replay>`); a
    /// client.fails event fails its first attempt (not a replay) at once, a
    /// client.failslowly event once its go-file is there.
    static func holdScript(in scratch: ScratchDirectory) throws -> String {
        try scratch.write("hold.sh", """
            cat > /dev/null
            replay=${HOOKBUS_REPLAY:-0}
            echo "$HOOKBUS_SEQ $HOOKBUS_ATTEMPT $replay" >> \(scratch.root)/starts.log
            if [ "$HOOKBUS_EVENT_TYPE" = client.fails ] && [ "$HOOKBUS_ATTEMPT" = 1 ] && [ "$replay" = 0 ]; then exit 1; fi
            while [ ! -e "\(scratch.root)/go-$HOOKBUS_SEQ-$HOOKBUS_ATTEMPT-$replay" ]; do sleep 0.02; done
            if [ "$HOOKBUS_EVENT_TYPE" = client.failslowly ] && [ "$HOOKBUS_ATTEMPT" = 1 ] && [ "$replay" = 0 ]; then exit 1; fi
            exit 0
            """)
    }

    @Test("a replay that comes while the event's first attempt or a retry of it is under way is delivered once that attempt ends")
    func replayWhileInFlight() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let hold = try Self.holdScript(in: scratch)
        let bed = try await OperatorBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "held"
            types = ["client.*"]
            exec = ["/bin/sh", "\(hold)"]
            """)
        func go(_ name: String) throws { _ = try scratch.write("go-\(name)", "") }

        // A first attempt under way.
        let first = try await bed.publish(EventLine.make(type: "client.added", source: "fleet", id: "held-1"))
        try await bed.waitUntil("the first attempt started") { bed.lines("starts.log") == ["\(first) 1 0"] }
        let replayFirst = try await bed.cli("replay", "--from-seq", "\(first)", "--to-seq", "\(first)")
        #expect(replayFirst.status == 0, "\(replayFirst)")
        try go("\(first)-1-0")
        try await bed.waitUntil("the replay started") { bed.lines("starts.log").count == 2 }
        #expect(bed.lines("starts.log").last == "\(first) 1 1")
        try go("\(first)-1-1")
        try await bed.waitUntil("both settled") { try bed.ledger().retries("held").isEmpty && bed.ledger().settled("held", through: first) }

        // A retry under way (its first attempt failed).
        let second = try await bed.publish(EventLine.make(type: "client.fails", source: "fleet", id: "held-2"))
        try await bed.waitUntil("the retry started") { bed.lines("starts.log").suffix(2) == ["\(second) 1 0", "\(second) 2 0"] }
        let replaySecond = try await bed.cli("replay", "--from-seq", "\(second)", "--to-seq", "\(second)")
        #expect(replaySecond.status == 0, "\(replaySecond)")
        try go("\(second)-2-0")
        try await bed.waitUntil("the replay started") { bed.lines("starts.log").count == 5 }
        // A retry made due by a replay keeps its attempt count (section 9, replay).
        #expect(bed.lines("starts.log").last == "\(second) 2 1")
        try go("\(second)-2-1")
        try await bed.waitUntil("all settled") { try bed.ledger().retries("held").isEmpty && bed.ledger().settled("held", through: second) }
        #expect(bed.lines("starts.log") == ["\(first) 1 0", "\(first) 1 1", "\(second) 1 0", "\(second) 2 0", "\(second) 2 1"])

        // A first attempt under way that fails: the replay goes out at once, as
        // a replay (attempt 2), and no retry of the failed attempt besides it.
        let third = try await bed.publish(EventLine.make(type: "client.failslowly", source: "fleet", id: "held-3"))
        try await bed.waitUntil("the first attempt started") { bed.lines("starts.log").last == "\(third) 1 0" }
        let replayThird = try await bed.cli("replay", "--from-seq", "\(third)", "--to-seq", "\(third)")
        #expect(replayThird.status == 0, "\(replayThird)")
        try go("\(third)-1-0")
        try await bed.waitUntil("the replay started") { bed.lines("starts.log").count == 7 }
        #expect(bed.lines("starts.log").last == "\(third) 2 1")
        try go("\(third)-2-1")
        try await bed.waitUntil("all settled") { try bed.ledger().retries("held").isEmpty && bed.ledger().settled("held", through: third) }

        // A replay under way, replayed again: delivered once more after it.
        let fourth = try await bed.publish(EventLine.make(type: "client.added", source: "fleet", id: "held-4"))
        try go("\(fourth)-1-0")
        try await bed.waitUntil("the first delivery settled") {
            try bed.lines("starts.log").count == 8 && bed.ledger().settled("held", through: fourth)
        }
        let replayFourth = try await bed.cli("replay", "--from-seq", "\(fourth)", "--to-seq", "\(fourth)")
        #expect(replayFourth.status == 0, "\(replayFourth)")
        try await bed.waitUntil("the replay started") { bed.lines("starts.log").count == 9 }
        let again = try await bed.cli("replay", "--from-seq", "\(fourth)", "--to-seq", "\(fourth)")
        #expect(again.status == 0, "\(again)")
        try go("\(fourth)-1-1")  // the second replay finds it there too
        try await bed.waitUntil("the second replay delivered") {
            try bed.lines("starts.log").count == 10 && bed.ledger().retries("held").isEmpty
        }
        #expect(Array(bed.lines("starts.log").suffix(5)) == ["\(third) 1 0", "\(third) 2 1", "\(fourth) 1 0", "\(fourth) 1 1", "\(fourth) 1 1"])
    }

    @Test("a replay that came during a retry is delivered even when reading it back fails a few times: read again every second, with nothing else happening")
    func skippedReadRetried() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let hold = try Self.holdScript(in: scratch)
        // More failed reads than the writes after the attempt ends can retry
        // (its ops, a cursor move): only the runner's own retry gets past them.
        let bed = try await OperatorBed.start(in: scratch, subscribers: """
            [[subscribers]]
            name = "held"
            types = ["client.*"]
            exec = ["/bin/sh", "\(hold)"]
            """, environment: ["HOOKBUS_FAIL_SKIPPED_READS": "4"])
        // Its first attempt fails; the retry waits for its go-file.
        let seq = try await bed.publish(EventLine.make(type: "client.fails", source: "fleet", id: "r-1"))
        try await bed.waitUntil("the retry started") { bed.lines("starts.log") == ["\(seq) 1 0", "\(seq) 2 0"] }
        // Read while the retry runs: its row is left out, to be read back when it ends.
        let replay = try await bed.cli("replay", "--from-seq", "\(seq)", "--to-seq", "\(seq)")
        #expect(replay.status == 0, "\(replay)")
        _ = try scratch.write("go-\(seq)-2-0", "")
        try await bed.waitUntil("the replay started", timeout: .seconds(15)) { bed.lines("starts.log").count == 3 }
        #expect(bed.lines("starts.log").last == "\(seq) 2 1")
        #expect(bed.broker.log.contains("cannot read retries back; trying again in a second"), "\(bed.broker.log)")
        _ = try scratch.write("go-\(seq)-2-1", "")
        try await bed.waitUntil("settled") { try bed.ledger().retries("held").isEmpty && bed.ledger().settled("held", through: seq) }
    }

    @Test("replay refuses an unknown subscriber and an empty selection with exit status 1 and says why")
    func refusals() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await OperatorBed.start(in: scratch, subscribers: Self.subscribers)
        let seq = try await bed.publish(EventLine.make(type: "misc.other", source: "shop", id: "m-1"))

        // A bare replay would run every subscriber again on the whole outbox: it must say which events.
        let bare = try await bed.cli("replay")
        #expect(bare.status == 64 && bare.stderr.contains("say what to replay") && bare.stderr.contains("--all"), "\(bare)")
        let both = try await bed.cli("replay", "--all", "--from-seq", "1")
        #expect(both.status == 64 && both.stderr.contains("--all replays every stored event"), "\(both)")
        let unknown = try await bed.cli("replay", "--subscriber", "nobody")
        #expect(unknown.status == 1, "\(unknown)")
        #expect(unknown.stderr == "hookbus: bad_request (unknown_subscriber): no subscriber named \"nobody\"; known: alpha, beta\n", "\(unknown)")
        let noEvents = try await bed.cli("replay", "--from-seq", "\(seq + 1000)")
        #expect(noEvents.status == 1 && noEvents.stderr == "hookbus: bad_request (empty_selection): no stored event matches the selection\n", "\(noEvents)")
        let noTaker = try await bed.cli("replay", "--type", "misc.other")
        #expect(noTaker.status == 1, "\(noTaker)")
        #expect(noTaker.stderr.contains("1 event(s) match the selection but no selected subscriber takes their types"), "\(noTaker)")
        let badTime = try await bed.cli("replay", "--since", "yesterday")
        #expect(badTime.status != 0 && badTime.stderr.contains("not an RFC 3339 time"), "\(badTime)")
        #expect(try bed.ledger().retries("alpha").isEmpty && bed.ledger().retries("beta").isEmpty)
    }

    @Test("offline replay on a stopped broker's database queues the deliveries, which run when it starts; refused while the broker runs")
    func offline() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let bed = try await OperatorBed.start(in: scratch, subscribers: Self.subscribers)
        let seqs = try await bed.publish([
            EventLine.make(type: "order.created", source: "shop", id: "o-1"),
            EventLine.make(type: "order.paid", source: "shop", id: "o-2"),
            EventLine.make(type: "user.joined", source: "shop", id: "u-3"),
        ])
        var expected = Expected(alpha: [RecordedDelivery(seq: seqs[0], replay: false), RecordedDelivery(seq: seqs[1], replay: false)],
                                beta: [RecordedDelivery(seq: seqs[0], replay: false), RecordedDelivery(seq: seqs[2], replay: false)])
        try await Self.check(bed, expected, "first deliveries")
        let hookbus = try TestBinaries.hookbus()
        let config = scratch.path("hookbus.toml")
        let database = bed.broker.databasePath
        func offline(_ arguments: String...) async throws -> ToolResult {
            try await ToolRun.run(hookbus, ["replay", "--db", database, "--config", config] + arguments, scratch: scratch)
        }

        // The running broker holds the database: offline replay is refused and points at --socket.
        let busy = try await offline("--from-seq", "\(seqs[1])")
        #expect(busy.status == 1, "\(busy)")
        #expect(busy.stderr.contains("is in use by another hookbusd (pid \(bed.broker.pid))") && busy.stderr.contains("use --socket"), "\(busy)")

        #expect(try await bed.broker.stop() == 0)
        // --socket beside --db would be ignored: refused.
        let both = try await ToolRun.run(hookbus, ["replay", "--db", database, "--socket", bed.broker.socketPath, "--from-seq", "1"], scratch: scratch)
        #expect(both.status == 64 && both.stderr.contains("--socket and --db do not go together"), "\(both)")
        // A mistyped path is refused, not created.
        let typo = scratch.path("typo.db")
        let missing = try await ToolRun.run(hookbus, ["replay", "--db", typo, "--config", config, "--from-seq", "1", "--dry-run"], scratch: scratch)
        #expect(missing.status == 1 && missing.stderr.contains("no database at \(typo)"), "\(missing)")
        #expect(!FileManager.default.fileExists(atPath: typo) && !FileManager.default.fileExists(atPath: typo + ".lock"))
        // Without --config the configured subscribers are unknown, and it says so.
        let noConfig = try await ToolRun.run(hookbus, ["replay", "--db", database, "--from-seq", "1", "--dry-run", "--subscriber", "alpha"], scratch: scratch)
        #expect(noConfig.status == 1 && noConfig.stderr.contains("without --config only durable socket subscribers are known")
                && noConfig.stderr.contains("pass --config to name configured subscribers"), "\(noConfig)")
        // A dry run on the stopped database changes nothing.
        let dry = try await offline("--from-seq", "\(seqs[1])", "--dry-run", "--json")
        #expect(dry.status == 0, "\(dry)")
        #expect(Self.planned(try JSONText.object(dry.stdout)) == ["alpha": [seqs[1]], "beta": [seqs[2]]], "\(dry)")
        #expect(try bed.ledger().retries("alpha").isEmpty && bed.ledger().retries("beta").isEmpty)

        let queued = try await offline("--from-seq", "\(seqs[1])")
        #expect(queued.status == 0, "\(queued)")
        #expect(queued.stdoutLines.first == "replayed 2 deliveries of 2 event(s) (queued; they run when the broker starts)", "\(queued)")
        #expect(try bed.ledger().retries("alpha").map(\.seq) == [seqs[1]])
        #expect(try bed.ledger().retries("beta").map(\.seq) == [seqs[2]])
        #expect(bed.recorded("alpha").count == 2 && bed.recorded("beta").count == 2, "nothing runs while the broker is stopped")

        try await bed.broker.restart()
        expected.alpha.append(RecordedDelivery(seq: seqs[1], replay: true))
        expected.beta.append(RecordedDelivery(seq: seqs[2], replay: true))
        try await Self.check(bed, expected, "after the restart")
    }
}

/// Every subcommand says so, with exit status 69, when no broker listens.
@Suite("Operator: broker unreachable")
struct OperatorUnreachableTests {
    @Test("exit 69 and a message naming the socket", arguments: [
        ["replay", "--from-seq", "1"], ["stats"], ["stats", "--json"], ["tail"], ["dlq", "list"], ["dlq", "show", "1"],
        ["dlq", "retry", "--all"], ["dlq", "purge", "1"],
    ])
    func unreachable(_ arguments: [String]) async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let socket = scratch.path("nobody.sock")
        let result = try await ToolRun.run(try TestBinaries.hookbus(), arguments + ["--socket", socket], scratch: scratch)
        #expect(result.status == 69 && !result.signaled, "\(result)")
        #expect(result.stderr.hasPrefix("hookbus: cannot connect to hookbusd at \(socket)"), "\(result)")
        #expect(result.stdout.isEmpty, "\(result)")
    }
}
