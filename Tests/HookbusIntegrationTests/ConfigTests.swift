import Foundation
import Testing

/// The socket file's permissions, and a config file that stops startup.
@Suite("Socket mode and config")
struct ConfigTests {
    static func mode(of path: String) throws -> UInt32 {
        var info = stat()
        guard lstat(path, &info) == 0 else { throw HarnessError("cannot stat \(path): \(String(cString: strerror(errno)))") }
        return UInt32(info.st_mode) & 0o7777
    }

    @Test("the socket file is created with mode 0660 by default")
    func defaultMode() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()
        #expect(try Self.mode(of: broker.socketPath) == 0o660)
    }

    @Test("a new database and its -wal and -shm files are the broker's user's alone (0600), whatever the umask")
    func databaseMode() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()
        #expect(try broker.connect().call(EventLine.make(source: "mode", id: "m1")).ok)
        for suffix in ["", "-wal", "-shm"] {
            #expect(try Self.mode(of: broker.databasePath + suffix) == 0o600, "\(broker.databasePath)\(suffix)")
        }
    }

    @Test("started with a low descriptor limit, hookbusd raises its soft limit to the hard one, and warns when that is short of max_connections")
    func descriptorLimit() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let prlimit = URL(fileURLWithPath: "/usr/bin/prlimit")
        try #require(FileManager.default.isExecutableFile(atPath: prlimit.path), "prlimit (util-linux) is missing")
        for (limits, warns) in [("256:4096", false), ("256:512", true)] {
            let broker = scratch.broker(socket: "l-\(warns).sock", database: "l-\(warns).db")
            try await broker.start(wrappedIn: [prlimit.path, "--nofile=\(limits)", "--"])
            let soft = try String(contentsOfFile: "/proc/\(broker.pid)/limits", encoding: .utf8)
                .split(separator: "\n").first { $0.hasPrefix("Max open files") }?
                .split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first
            #expect(soft.map(String.init) == limits.split(separator: ":").last.map(String.init), "\(String(describing: soft))")
            #expect(broker.log.contains("max_connections = 1024 needs about") == warns, "\(broker.log)")
            #expect(try await broker.stop() == 0)
        }
    }

    @Test("socket_mode from the config file", arguments: [0o600, 0o666])
    func configuredMode(mode: UInt32) async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let config = try scratch.write("hookbus.toml", "socket_mode = \"0\(String(mode, radix: 8))\"\n")
        let broker = try await scratch.startBroker(config: config)
        #expect(try Self.mode(of: broker.socketPath) == mode)
    }

    @Test("socket and database paths come from the config file when no flag overrides them")
    func pathsFromConfig() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let config = try scratch.write("hookbus.toml", """
            socket = "\(scratch.path("conf.sock"))"
            database = "\(scratch.path("conf.db"))"
            socket_mode = "0640"

            """)
        let broker = scratch.broker(socket: "conf.sock", database: "conf.db", config: config, pathsOnCommandLine: false)
        try await broker.start()
        #expect(try Self.mode(of: broker.socketPath) == 0o640)
        let reply = try broker.connect().call(EventLine.make(source: "conf", id: "c1"))
        #expect(reply.ok, "\(reply)")
        #expect(try broker.outbox().row(source: "conf", id: "c1")?.seq == reply.seq)
    }

    @Test("an unknown --log-level is a usage error, not a silent fall back to info")
    func badLogLevelFlag() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let socket = scratch.path("s.sock")
        let result = try await ToolRun.run(try TestBinaries.hookbusd(),
                                           ["--log-level", "verbose", "--socket", socket, "--db", scratch.path("hb.db")],
                                           scratch: scratch)
        #expect(!result.signaled && result.status == 64, "\(result)")
        #expect(result.stderr.contains("--log-level: must be one of trace, debug, info"), "\(result)")
        #expect(result.stderr.contains("\"verbose\""), "\(result)")
        #expect(!FileManager.default.fileExists(atPath: socket))
    }

    /// A config line, the key the error must name, and words the reason must contain.
    struct BadConfig: Sendable, CustomTestStringConvertible {
        var text: String
        var key: String
        var reason: String
        var testDescription: String { text.trimmingCharacters(in: .newlines) }
    }

    static let badConfigs = [
        BadConfig(text: "socket_mode = \"0660\"\nbogus_key = 1\n", key: "bogus_key", reason: "unknown key"),
        BadConfig(text: "durability = \"sometimes\"\n", key: "durability", reason: "must be"),
        BadConfig(text: "max_line_bytes = \"big\"\n", key: "max_line_bytes", reason: "must be an integer"),
        BadConfig(text: "retention = \"5 days\"\n", key: "retention", reason: "bad duration"),
        BadConfig(text: "socket_mode = \"rw-rw----\"\n", key: "socket_mode", reason: "octal"),
        BadConfig(text: "[defaults]\ntimeout = \"30\"\n", key: "defaults.timeout", reason: "bad duration"),
        BadConfig(text: "[[subscribers]]\nname = \"hosts\"\nhook = \"hosts-file\"\noptions = { domain = \"x\" }\n",
                  key: #"subscribers[0] "hosts".options"#, reason: "hook hosts-file needs option 'path'"),
    ]

    @Test("a bad config stops startup with exit status 78, naming the file, the key and the reason", arguments: badConfigs)
    func badConfig(_ bad: BadConfig) async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let config = try scratch.write("bad.toml", bad.text)
        let socket = scratch.path("s.sock")
        let result = try await ToolRun.run(try TestBinaries.hookbusd(),
                                           ["--config", config, "--socket", socket, "--db", scratch.path("hb.db")],
                                           scratch: scratch)
        #expect(!result.signaled && result.status == 78, "\(result)")
        #expect(result.stderr.contains(config), "the message does not name the file: \(result)")
        #expect(result.stderr.contains(bad.key), "the message does not name the key: \(result)")
        #expect(result.stderr.contains(bad.reason), "the message does not give the reason: \(result)")
        #expect(!FileManager.default.fileExists(atPath: socket), "a broker with a bad config must not serve")
        #expect(!FileManager.default.fileExists(atPath: scratch.path("hb.db")), "a bad config must stop the broker before it opens the database")
    }
}
