import Foundation
import Testing

/// Subscriber processes run as the configured `user` / `group` (privileges
/// dropped: uid, gid, no supplementary groups), with a clean environment
/// (PATH, the delivery's HOOKBUS_* and the configured `env`, nothing of the
/// broker's) and no descriptor but stdin, stdout and stderr.
@Suite("Security: subscriber processes", .enabled(if: SecurityUsers.available, "needs root and useradd"))
struct SecuritySubscriberTests {
    /// Run by `sh -c` (no script file, so the shell opens nothing of its own):
    /// records who it runs as, its own descriptors and the environment it was
    /// started with (/proc/$$/environ: what the broker passed, before the shell
    /// added anything), then its stdin. The descriptors are listed first, by a
    /// child shell, because while the shell itself redirects it holds a copy of
    /// the descriptor it replaced.
    static let probe = #"""
        out="$PROBE_DIR/$HOOKBUS_SUBSCRIBER"
        sh -c 'ls /proc/$PPID/fd > "$1"' list "$out.fd"
        { id -u; id -g; id -G; } > "$out.id"
        tr '\000' '\n' < /proc/$$/environ > "$out.env"
        """#

    /// The exec form: the probe, then the event on stdin, then a marker.
    static let execProbe = probe + "\ncat > \"$out.stdin\"\necho done > \"$out.done\"\n"

    /// The pipe form: the probe at start, then answer every delivery ok.
    static let pipeProbe = probe + #"""

        echo done > "$out.done"
        while read -r line; do
            n=${line#*\"delivery\":}
            n=${n%%,*}
            printf '{"delivery":%s,"ok":true}\n' "$n"
        done
        """#

    /// The delivery's variables an exec child may get (HOOKBUS_REPLAY only on a replay).
    static let deliveryVariables: Set<String> = [
        "HOOKBUS_SEQ", "HOOKBUS_EVENT_ID", "HOOKBUS_EVENT_TYPE", "HOOKBUS_SUBSCRIBER", "HOOKBUS_ATTEMPT", "HOOKBUS_REPLAY",
    ]

    static func toml(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n") + "\""
    }

    @Test("exec and pipe subscribers with user / group run as that uid and gid only, with fds 0, 1, 2 and PATH, HOOKBUS_* and their env")
    func droppedPrivilegesCleanEnvironmentNoDescriptors() async throws {
        let (one, two) = try SecurityUsers.both()
        let bed = try ReliabilityBed(config: """
            durability = "normal"

            [[subscribers]]
            name = "as-user"
            types = ["probe.*"]
            user = "\(one.name)"
            exec = ["/bin/sh", "-c", \(Self.toml(Self.execProbe)), "probe"]
            env = { PROBE_DIR = "{dir}/out", EXTRA_SETTING = "configured" }

            [[subscribers]]
            name = "as-group"
            types = ["probe.*"]
            user = "\(one.name)"
            group = "\(try SecurityUsers.groupName(two.gid))"
            exec = ["/bin/sh", "-c", \(Self.toml(Self.execProbe)), "probe"]
            env = { PROBE_DIR = "{dir}/out" }

            [[subscribers]]
            name = "pipe-user"
            types = ["probe.*"]
            user = "\(two.uid)"
            pipe = ["/bin/sh", "-c", \(Self.toml(Self.pipeProbe)), "probe"]
            env = { PROBE_DIR = "{dir}/out" }
            """, environment: ["HB_BROKER_SECRET": "must-not-leak", "HOME": "/root"])
        defer { bed.cleanUp() }
        try bed.scratch.openToOthers()
        let out = try bed.scratch.worldWritable("out")
        try await bed.broker.start()
        let reply = try bed.broker.connect().call(EventLine.make(type: "probe.x", source: "probe", id: "p1"))
        #expect(reply.ok, "\(reply)")

        let expected: [(name: String, uid: UInt32, gid: UInt32)] = [
            ("as-user", one.uid, one.gid), ("as-group", one.uid, two.gid), ("pipe-user", two.uid, two.gid),
        ]
        let deadline = ContinuousClock.now + .seconds(30)
        while !expected.allSatisfy({ FileManager.default.fileExists(atPath: "\(out)/\($0.name).done") }) {
            if ContinuousClock.now >= deadline { throw HarnessError("the probes did not all run within 30 s\n\(bed.broker.log)") }
            try await Task.sleep(for: .milliseconds(20))
        }

        for (name, uid, gid) in expected {
            func lines(_ suffix: String) -> [String] {
                ((try? String(contentsOfFile: "\(out)/\(name).\(suffix)", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            }
            // Who: the uid and gid configured, and no other group (root's supplementary groups dropped).
            #expect(lines("id") == ["\(uid)", "\(gid)", "\(gid)"], "\(name): id -u, id -g, id -G")
            var info = stat()
            #expect(stat("\(out)/\(name).id", &info) == 0 && info.st_uid == uid && info.st_gid == gid, "\(name): the file it wrote is its own")

            // Descriptors: stdin, stdout, stderr; nothing of the broker's.
            #expect(lines("fd") == ["0", "1", "2"], "\(name): open descriptors")

            // Environment: PATH, the delivery's HOOKBUS_* (exec) and the configured env; nothing else.
            var environment: [String: String] = [:]
            for line in lines("env") {
                guard let equals = line.firstIndex(of: "=") else { continue }
                environment[String(line[..<equals])] = String(line[line.index(after: equals)...])
            }
            let configured: Set<String> = name == "as-user" ? ["PROBE_DIR", "EXTRA_SETTING"] : ["PROBE_DIR"]
            // A pipe process serves many deliveries: of HOOKBUS_* it gets only its subscriber's name.
            let allowed = configured.union(["PATH"]).union(name == "pipe-user" ? ["HOOKBUS_SUBSCRIBER"] : Self.deliveryVariables)
            let extra = Set(environment.keys).subtracting(allowed)
            #expect(extra.isEmpty, "\(name): variables it should not have: \(extra.sorted())")
            #expect(environment["HB_BROKER_SECRET"] == nil && environment["HOME"] == nil, "\(name): the broker's environment leaked")
            #expect(environment["PATH"]?.isEmpty == false && environment["PROBE_DIR"] == out, "\(name): \(environment)")
            if name == "as-user" { #expect(environment["EXTRA_SETTING"] == "configured") }
            if name != "pipe-user" {
                #expect(environment["HOOKBUS_SUBSCRIBER"] == name && environment["HOOKBUS_EVENT_ID"] == "p1"
                        && environment["HOOKBUS_SEQ"] == reply.seq.map(String.init), "\(name): \(environment)")
                #expect(lines("stdin").count == 1, "\(name): the event on stdin")
            }
        }
        try await bed.waitUntilSettled(["as-user", "as-group", "pipe-user"], through: try #require(reply.seq))
    }
}

extension ReliabilityBed {
    /// Waits until every subscriber in `names` has settled through `seq`.
    func waitUntilSettled(_ names: [String], through seq: Int64) async throws {
        let ledger = try DispatchLedger(path: broker.databasePath)
        let deadline = ContinuousClock.now + .seconds(30)
        while try !names.allSatisfy({ try ledger.settled($0, through: seq) }) {
            if ContinuousClock.now >= deadline { throw HarnessError("\(names) not settled through \(seq) within 30 s\n\(broker.log)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
