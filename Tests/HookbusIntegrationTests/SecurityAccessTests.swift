import Foundation
import HookbusClient
import Testing

/// Access control with real, different users (DESIGN.md "Security"): the
/// socket file's mode and group decide who may connect; `[[access.publish]]`
/// rules (uids or gids, per type filter) decide who may publish what;
/// `[access.operate]` decides who may subscribe, replay and touch dead
/// letters. Refusals are `unauthorized`, naming the uid and what was refused.
/// The tests run as root and switch the client to hbtest1 / hbtest2 with setpriv.
@Suite("Security: access control", .enabled(if: SecurityUsers.available, "needs root, useradd, setpriv and /usr/bin/python3"))
struct SecurityAccessTests {
    static func event(_ type: String, id: String) -> String {
        EventLine.make(type: type, source: "sec", id: id, data: #"{"ip":"10.9.0.1","hostname":"h","fleet":"f"}"#)
    }

    @Test("publish rules by uid and by gid, per type; operator commands for uid 0 only; ping and stats for all; refusals name the uid")
    func allowLists() async throws {
        let (one, two) = try SecurityUsers.both()
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        try scratch.openToOthers()
        let config = try scratch.write("hookbus.toml", """
            socket_mode = "0666"
            durability = "normal"

            [[access.publish]]
            uids = [\(one.uid)]
            types = ["client.*"]

            [[access.publish]]
            gids = [\(two.gid)]
            types = ["metrics.*"]

            [[access.publish]]
            uids = [0]
            types = ["*"]

            [access.operate]
            uids = [0]

            [[subscribers]]
            name = "audit"
            types = ["client.*", "other.*"]
            exec = ["/bin/sh", "-c", "cat > /dev/null"]
            """)
        let broker = try await scratch.startBroker(config: config)

        // hbtest1: client.* only; no operator command; ping and stats.
        let first = try await SecurityClient.run(as: one, socket: broker.socketPath, lines: [
            Self.event("client.added", id: "a1"),
            Self.event("other.x", id: "a2"),
            Self.event("metrics.cpu", id: "a3"),
            #"{"op":"ping"}"#,
            #"{"op":"stats"}"#,
            #"{"op":"replay","from_seq":1,"dry_run":true}"#,
            #"{"op":"dlq.list"}"#,
            #"{"op":"dlq.purge","all":true}"#,
            #"{"op":"subscribe","name":"spy","types":["*"]}"#,
        ], scratch: scratch)
        let replies = first.replies
        #expect(replies[0].ok && replies[0].id == "a1", "\(replies[0])")
        for (index, type) in [(1, "other.x"), (2, "metrics.cpu")] {
            let reply = replies[index]
            #expect(reply.code == "unauthorized" && reply.reason == "publish_denied", "\(reply)")
            #expect(reply.message?.contains("uid \(one.uid)") == true && reply.message?.contains(type) == true,
                    "the refusal names the uid and the type: \(reply)")
        }
        #expect(replies[3].ok && replies[3].op == "ping", "\(replies[3])")
        #expect(replies[4].ok && replies[4].op == "stats", "\(replies[4])")
        for (index, op) in [(5, "replay"), (6, "dlq.list"), (7, "dlq.purge"), (8, "subscribe")] {
            let reply = replies[index]
            #expect(reply.code == "unauthorized" && reply.reason == "operator_denied", "\(op): \(reply)")
            #expect(reply.message?.contains("uid \(one.uid)") == true && reply.message?.contains(op) == true,
                    "the refusal names the uid and the command: \(reply)")
        }

        // hbtest2: metrics.* through its group's rule, nothing else.
        let second = try await SecurityClient.run(as: two, socket: broker.socketPath, lines: [
            Self.event("client.added", id: "b1"),
            Self.event("metrics.cpu", id: "b2"),
            #"{"op":"dlq.list"}"#,
        ], scratch: scratch)
        #expect(second.replies[0].reason == "publish_denied" && second.replies[0].message?.contains("uid \(two.uid)") == true,
                "\(second.replies[0])")
        #expect(second.replies[1].ok, "\(second.replies[1])")
        #expect(second.replies[2].reason == "operator_denied" && second.replies[2].message?.contains("uid \(two.uid)") == true,
                "\(second.replies[2])")

        // Root: everything.
        let root = try broker.connect()
        #expect(try root.call(Self.event("other.x", id: "r1")).ok)
        let replay = try root.call(#"{"op":"replay","from_seq":1,"dry_run":true}"#)
        #expect(replay.ok, "\(replay)")
        #expect(try root.call(#"{"op":"dlq.list"}"#).ok)
        let subscribe = try broker.connect().call(#"{"op":"subscribe","name":"root-sub","types":["client.*"]}"#)
        #expect(subscribe.ok && subscribe.op == "subscribe", "\(subscribe)")

        // Stored: what was allowed, with the producer's credentials; nothing refused.
        let rows = Dictionary(uniqueKeysWithValues: try broker.outbox().rows(source: "sec").map { ($0.id, $0) })
        #expect(Set(rows.keys) == ["a1", "b2", "r1"])
        #expect(rows["a1"]?.producerUID == Int64(one.uid) && rows["a1"]?.producerGID == Int64(one.gid), "\(String(describing: rows["a1"]))")
        #expect(rows["b2"]?.producerUID == Int64(two.uid) && rows["b2"]?.producerGID == Int64(two.gid))
        #expect(rows["r1"]?.producerUID == 0)
        #expect(try DispatchLedger(path: broker.databasePath).cursor("spy") == nil, "the refused subscriber left no trace")
    }

    @Test("a flood of refused lines: every line is answered, the log gets a bounded number of warnings, and the next one says how many were left out")
    func refusalLogIsBounded() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker(config: try scratch.write("hookbus.toml", """
            durability = "normal"

            [[access.publish]]
            uids = [0]
            types = ["client.*"]
            """))
        let socket = broker.socketPath
        let flood = (0..<2_000).map { Self.event("other.x", id: "f\($0)") } + [Self.event("client.added", id: "ok")]
        let started = ContinuousClock.now
        let answers = try await onThread { () -> [WireReply] in
            var replies: [WireReply] = []
            try Publisher(client: try SocketClient.connect(socket, timeout: BrokerProcess.deadline), window: 64)
                .publish(flood) { _, line in replies.append(try WireReply(line)) }
            return replies
        }
        let elapsed = ContinuousClock.now - started
        #expect(answers.count == 2_001 && answers.dropLast().allSatisfy { $0.reason == "publish_denied" } && answers.last?.ok == true)
        let warnings = broker.log.split(separator: "\n").filter { $0.contains("warning") && $0.contains("] refused") }
        // A burst of 20, then 10 a second.
        let bound = 20 + Int(elapsed.components.seconds + 1) * 10
        #expect(!warnings.isEmpty && warnings.count <= bound, "\(warnings.count) refusal warnings for 2,000 refused lines in \(elapsed)")
        // Later, one more refusal is logged, with the count of those left out.
        try await Task.sleep(for: .milliseconds(300))
        let late = try broker.connect().call(Self.event("other.y", id: "late"))
        #expect(late.reason == "publish_denied", "\(late)")
        // (The late line says how many were left out, unless a line of the flood's end
        // got a token and said it already.)
        let refused = broker.log.split(separator: "\n").filter { $0.contains("] refused") }
        #expect(refused.last?.contains("other.y") == true && refused.contains { $0.contains("hookbus.suppressed=") }, "\(refused)")
    }

    @Test("socket_mode = \"0600\": another user cannot connect at all (EACCES); root can")
    func ownerOnlySocket() async throws {
        let (one, _) = try SecurityUsers.both()
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        try scratch.openToOthers()
        let broker = try await scratch.startBroker(config: try scratch.write("hookbus.toml", "socket_mode = \"0600\"\n"))
        let outcome = try await SecurityClient.run(as: one, socket: broker.socketPath, lines: [#"{"op":"ping"}"#], scratch: scratch)
        #expect(outcome.connectError == "EACCES", "\(outcome)")
        #expect(try broker.connect().call(#"{"op":"ping"}"#).ok)
    }

    @Test("socket_mode = \"0660\" with socket_group: the group's member connects, another user gets EACCES")
    func groupSocket() async throws {
        let (one, two) = try SecurityUsers.both()
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        try scratch.openToOthers()
        let group = try SecurityUsers.groupName(one.gid)
        let broker = try await scratch.startBroker(config: try scratch.write("hookbus.toml", """
            socket_mode = "0660"
            socket_group = "\(group)"

            """))
        var info = stat()
        #expect(lstat(broker.socketPath, &info) == 0 && info.st_gid == one.gid && info.st_mode & 0o777 == 0o660)

        let member = try await SecurityClient.run(as: one, socket: broker.socketPath,
                                                  lines: [#"{"op":"ping"}"#, Self.event("client.added", id: "g1")], scratch: scratch)
        #expect(member.connectError == nil && member.replies.allSatisfy(\.ok), "\(member)")
        let stranger = try await SecurityClient.run(as: two, socket: broker.socketPath, lines: [#"{"op":"ping"}"#], scratch: scratch)
        #expect(stranger.connectError == "EACCES", "\(stranger)")
        #expect(try broker.outbox().row(source: "sec", id: "g1")?.producerUID == Int64(one.uid))
    }
}
