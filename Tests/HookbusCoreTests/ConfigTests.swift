import Testing
@testable import HookbusCore

/// A config that must be refused, with the key and a fragment of the reason.
struct BadConfig: Sendable, CustomTestStringConvertible {
    var name: String
    var toml: String
    var key: String
    var reason: String

    var testDescription: String { name }
}

/// A valid subscriber table, to which a row adds or changes keys.
private func subscriber(_ lines: String, name: String = "a") -> String {
    "[[subscribers]]\nname = \"\(name)\"\n" + lines + "\n"
}

private let valid = "types = [\"*\"]\nexec = [\"/bin/true\"]"

private let badConfigs: [BadConfig] = [
    BadConfig(name: "unknown user in an [[access.publish]] rule", toml: "[[access.publish]]\nuids = [\"no-such-user-hb\"]",
              key: "access.publish[0].uids", reason: "\"no-such-user-hb\" is not a known user"),
    BadConfig(name: "unknown top-level key", toml: "sockets = \"/tmp/x\"", key: "sockets", reason: "unknown key"),
    BadConfig(name: "subscriber name with a space", toml: subscriber(valid, name: "my notifier"),
              key: "subscribers[0].name", reason: "1 to 64 ASCII letters"),
    BadConfig(name: "subscriber name with a Cyrillic letter", toml: subscriber(valid, name: "n\u{043E}tify"),
              key: "subscribers[0].name", reason: "1 to 64 ASCII letters"),
    BadConfig(name: "unknown key in [defaults]", toml: "[defaults]\nretries = 3", key: "defaults.retries", reason: "unknown key"),
    BadConfig(name: "unknown subscriber key", toml: subscriber(valid + "\nretries = 3"),
              key: #"subscribers[0] "a".retries"#, reason: "unknown key"),
    BadConfig(name: "bad durability", toml: #"durability = "fast""#, key: "durability", reason: #""full" or "normal""#),
    BadConfig(name: "durability of the wrong type", toml: "durability = 1", key: "durability", reason: "must be a string"),
    BadConfig(name: "socket_mode not octal", toml: #"socket_mode = "0999""#, key: "socket_mode", reason: "octal mode"),
    BadConfig(name: "socket_mode symbolic", toml: #"socket_mode = "rw-rw----""#, key: "socket_mode", reason: "octal mode"),
    BadConfig(name: "socket_mode too large", toml: #"socket_mode = "01777""#, key: "socket_mode", reason: "octal mode"),
    BadConfig(name: "bad duration 5x", toml: "[defaults]\ntimeout = \"5x\"", key: "defaults.timeout", reason: "bad duration \"5x\""),
    BadConfig(name: "bad duration 1.5s", toml: "[defaults]\nbackoff_max = \"1.5s\"", key: "defaults.backoff_max",
              reason: "bad duration \"1.5s\""),
    BadConfig(name: "bad duration s", toml: "retention = \"s\"", key: "retention", reason: "bad duration \"s\""),
    BadConfig(name: "bad duration in a subscriber", toml: subscriber(valid + "\ntimeout = \"30\""),
              key: #"subscribers[0] "a".timeout"#, reason: "bad duration"),
    BadConfig(name: "bad duration in a backoff list", toml: subscriber(valid + "\nbackoff = [\"1s\", \"soon\"]"),
              key: #"subscribers[0] "a".backoff"#, reason: "bad duration \"soon\""),
    BadConfig(name: "duplicate subscriber name", toml: subscriber(valid) + subscriber(valid),
              key: #"subscribers[1] "a".name"#, reason: "duplicate subscriber name"),
    BadConfig(name: "subscriber without a name", toml: "[[subscribers]]\n" + valid, key: "subscribers[0].name",
              reason: "needs a name"),
    BadConfig(name: "exec and pipe", toml: subscriber("types = [\"*\"]\nexec = [\"a\"]\npipe = [\"b\"]"),
              key: #"subscribers[0] "a".exec"#, reason: "exec and pipe are both given"),
    BadConfig(name: "no kind", toml: subscriber("types = [\"*\"]"), key: #"subscribers[0] "a".exec"#, reason: "none is given"),
    BadConfig(name: "empty exec", toml: subscriber("types = [\"*\"]\nexec = []"), key: #"subscribers[0] "a".exec"#,
              reason: "must not be empty"),
    BadConfig(name: "unknown hook", toml: subscriber("types = [\"*\"]\nhook = \"mailer\""), key: #"subscribers[0] "a".hook"#,
              reason: "unknown hook \"mailer\"; known hooks: hosts-file, prometheus-sd"),
    BadConfig(name: "no types", toml: subscriber("exec = [\"x\"]"), key: #"subscribers[0] "a".types"#, reason: "at least one type filter"),
    BadConfig(name: "empty types", toml: subscriber("types = []\nexec = [\"x\"]"), key: #"subscribers[0] "a".types"#,
              reason: "at least one type filter"),
    BadConfig(name: "type filter client*", toml: subscriber("types = [\"client*\"]\nexec = [\"x\"]"),
              key: #"subscribers[0] "a".types"#, reason: "\"client*\": '*' may appear only"),
    BadConfig(name: "type filter *.x", toml: subscriber("types = [\"*.x\"]\nexec = [\"x\"]"),
              key: #"subscribers[0] "a".types"#, reason: "\"*.x\": '*' may appear only"),
    BadConfig(name: "types not strings", toml: subscriber("types = [1]\nexec = [\"x\"]"),
              key: #"subscribers[0] "a".types"#, reason: "array of strings"),
    BadConfig(name: "backoff list with backoff_initial", toml: subscriber(valid + "\nbackoff = [\"1s\"]\nbackoff_initial = \"1s\""),
              key: #"subscribers[0] "a".backoff"#, reason: "not both"),
    BadConfig(name: "backoff list with backoff_initial in [defaults]",
              toml: "[defaults]\nbackoff = [\"1s\"]\nbackoff_initial = \"2s\"", key: "defaults.backoff", reason: "not both"),
    BadConfig(name: "empty backoff list", toml: subscriber(valid + "\nbackoff = []"), key: #"subscribers[0] "a".backoff"#,
              reason: "must not be empty"),
    BadConfig(name: "backoff_initial above backoff_max", toml: "[defaults]\nbackoff_initial = \"10m\"\nbackoff_max = \"5m\"",
              key: "defaults.backoff_initial", reason: "longer than backoff_max"),
    BadConfig(name: "concurrency zero", toml: subscriber(valid + "\nconcurrency = 0"), key: #"subscribers[0] "a".concurrency"#,
              reason: "at least 1"),
    BadConfig(name: "max_attempts not an integer", toml: "[defaults]\nmax_attempts = \"ten\"", key: "defaults.max_attempts",
              reason: "must be an integer"),
    BadConfig(name: "max_line_bytes too small", toml: "max_line_bytes = 10", key: "max_line_bytes", reason: "at least 256"),
    BadConfig(name: "bad log_level", toml: #"log_level = "loud""#, key: "log_level", reason: "must be one of"),
    BadConfig(name: "subscribers not an array of tables", toml: #"subscribers = "all""#, key: "subscribers",
              reason: "array of tables"),
    BadConfig(name: "env value not a string", toml: subscriber(valid + "\nenv = { DEBUG = 1 }"), key: #"subscribers[0] "a".env.DEBUG"#,
              reason: "must be a string"),
    BadConfig(name: "TOML syntax error", toml: "socket = \n", key: "(syntax)", reason: "line 1"),
    BadConfig(name: "TOML syntax error: unclosed table", toml: "durability = \"full\"\n[defaults\n", key: "(syntax)", reason: "line 2"),
    BadConfig(name: "TOML duplicate key", toml: "socket = \"a\"\nsocket = \"b\"\n", key: "(syntax)", reason: "line 2"),
]

private let designExampleTOML = """
    socket = "/run/hookbus/hookbus.sock"
    database = "/var/lib/hookbus/hookbus.db"
    socket_mode = "0660"
    durability = "full"

    [defaults]
    max_attempts = 10
    backoff_initial = "1s"
    backoff_max = "5m"
    timeout = "30s"

    [[subscribers]]
    name = "notify"
    types = ["client.added", "client.removed"]
    exec = ["/usr/local/bin/notify.sh"]

    [[subscribers]]
    name = "indexer"
    types = ["*"]
    pipe = ["python3", "indexer.py"]
    concurrency = 8

    [[subscribers]]
    name = "hosts"
    types = ["client.*", "hookbus.started"]
    hook = "hosts-file"
    options = { path = "/run/wg_fleet_hosts", domain = "fleet.example" }
    """

@Suite("Config loading")
struct ConfigTests {
    private let loader = ConfigLoader(knownHooks: ["hosts-file", "prometheus-sd"])

    @Test("the DESIGN.md example parses")
    func designExample() throws {
        let config = try loader.parse(designExampleTOML, file: "test.toml")
        #expect(config.file == "test.toml")
        #expect(config.socketPath == "/run/hookbus/hookbus.sock")
        #expect(config.databasePath == "/var/lib/hookbus/hookbus.db")
        #expect(config.socketMode == 0o660)
        #expect(config.durability == .full)
        #expect(config.defaults.retry == RetryPolicy(maxAttempts: 10, schedule: .exponential(initial: .seconds(1), max: .seconds(300))))
        #expect(config.defaults.timeout == .seconds(30))

        #expect(config.subscribers.map(\.name) == ["notify", "indexer", "hosts"])
        let notify = config.subscribers[0]
        #expect(notify.kind == .exec(["/usr/local/bin/notify.sh"]))
        #expect(notify.types == [.exact("client.added"), .exact("client.removed")])
        #expect(notify.concurrency == 1)
        #expect(notify.timeout == .seconds(30))
        #expect(notify.retry == config.defaults.retry)
        #expect(notify.options.isEmpty)

        let indexer = config.subscribers[1]
        #expect(indexer.kind == .pipe(["python3", "indexer.py"]))
        #expect(indexer.types == [.all])
        #expect(indexer.concurrency == 8)

        let hosts = config.subscribers[2]
        #expect(hosts.kind == .hook("hosts-file"))
        #expect(hosts.types == [.prefix("client."), .exact("hookbus.started")])
        #expect(hosts.types.matches("client.hostname.changed"))
        #expect(hosts.options == ["path": .string("/run/wg_fleet_hosts"), "domain": .string("fleet.example")])
        #expect(hosts.concurrency == 1)
    }

    @Test("an empty file gives the embedded defaults")
    func emptyFile() throws {
        let config = try loader.parse("", file: "empty.toml")
        let defaults = BrokerConfig()
        #expect(config.socketPath == defaults.socketPath)
        #expect(config.databasePath == defaults.databasePath)
        #expect(config.socketMode == 0o660)
        #expect(config.durability == .full)
        #expect(config.limits == Limits())
        #expect(config.defaults == SubscriberDefaults())
        #expect(config.subscribers.isEmpty)
    }

    @Test("defaults and per-subscriber overrides combine")
    func overrides() throws {
        let text = """
            durability = "normal"
            max_line_bytes = 4096
            retention = "2h"

            [defaults]
            max_attempts = 3
            backoff_max = "1m"
            concurrency = 2

            [[subscribers]]
            name = "a"
            types = ["x"]
            exec = ["/bin/a", "--flag"]
            backoff = ["1s", "5s", "30s", "2m"]
            timeout = "250ms"
            env = { MODE = "test" }

            [[subscribers]]
            name = "b"
            types = ["y.*"]
            hook = "prometheus-sd"
            max_attempts = 7
            backoff_initial = "2s"
            options = { port = 9100, tags = ["a", "b"], on = true }
            """
        let config = try loader.parse(text, file: "test.toml")
        #expect(config.durability == .normal)
        #expect(config.limits.maxLineBytes == 4096)
        #expect(config.retention == .seconds(7200))
        #expect(config.defaults.retry == RetryPolicy(maxAttempts: 3, schedule: .exponential(initial: .seconds(1), max: .seconds(60))))
        let a = config.subscribers[0]
        #expect(a.kind == .exec(["/bin/a", "--flag"]))
        #expect(a.retry == RetryPolicy(maxAttempts: 3, schedule: .explicit([.seconds(1), .seconds(5), .seconds(30), .seconds(120)])))
        #expect(a.timeout == .milliseconds(250))
        #expect(a.concurrency == 2)
        #expect(a.environment == ["MODE": "test"])
        let b = config.subscribers[1]
        #expect(b.retry == RetryPolicy(maxAttempts: 7, schedule: .exponential(initial: .seconds(2), max: .seconds(60))))
        #expect(b.options == ["port": .int(9100), "tags": .array([.string("a"), .string("b")]), "on": .bool(true)])
    }

    @Test("a bad config is refused with the key and the reason", arguments: badConfigs)
    func refused(_ row: BadConfig) {
        let error = #expect(throws: ConfigError.self) { try loader.parse(row.toml, file: "test.toml") }
        #expect(error?.file == "test.toml")
        #expect(error?.key == row.key)
        #expect(error?.reason.contains(row.reason) == true, "reason: \(error?.reason ?? "none")")
    }

    @Test("ConfigError's description names the file, the key and the reason")
    func description() {
        let error = #expect(throws: ConfigError.self) { try loader.parse(#"durability = "fast""#, file: "/etc/hookbus.toml") }
        let text = error.map(String.init(describing:)) ?? ""
        #expect(text.contains("/etc/hookbus.toml"))
        #expect(text.contains("durability"))
        #expect(text.contains(#""full" or "normal""#))
        #expect(text.contains("fast"))
    }

    @Test("with the hooks given, a hook option the hook refuses is a configuration error at its key", arguments: [
        ("hook = \"hosts-file\"\noptions = { domain = \"x\" }", "hook hosts-file needs option 'path'"),
        ("hook = \"hosts-file\"\noptions = { path = \"/tmp/h\", dir = \"/tmp\" }", "hook hosts-file has no option 'dir'"),
        ("hook = \"prometheus-sd\"\noptions = { path = \"/tmp/p\", port = 70000 }", "must be 1 to 65535, got 70000"),
    ])
    func hookOptionsRefused(toml: String, reason: String) {
        let loader = ConfigLoader(hooks: .builtIn)
        let error = #expect(throws: ConfigError.self) { try loader.parse(subscriber(toml, name: "hosts"), file: "test.toml") }
        #expect(error?.key == #"subscribers[0] "hosts".options"#)
        #expect(error?.reason.contains(reason) == true, "reason: \(error?.reason ?? "none")")
        // Without the hooks, only the hook's name is checked.
        #expect(throws: Never.self) { try ConfigLoader(knownHooks: ["hosts-file", "prometheus-sd"]).parse(subscriber(toml, name: "hosts"), file: "test.toml") }
    }

    @Test("load names a file it cannot read")
    func unreadableFile() {
        let error = #expect(throws: ConfigError.self) { try loader.load(file: "/nonexistent/hookbus.toml") }
        #expect(error?.file == "/nonexistent/hookbus.toml")
        #expect(error?.key == "(file)")
        #expect(error?.reason == "cannot read: No such file or directory", "\(String(describing: error))")
        let directory = #expect(throws: ConfigError.self) { try loader.load(file: "/tmp") }
        #expect(directory?.reason == "cannot read: it is a directory, not a config file", "\(String(describing: directory))")
    }

    @Test("a duration too large to hold says so")
    func hugeDuration() {
        let error = #expect(throws: ConfigError.self) {
            try loader.parse("[defaults]\ntimeout = \"9223372036854775807h\"", file: "test.toml")
        }
        #expect(error?.key == "defaults.timeout" && error?.reason == "bad duration \"9223372036854775807h\": too large",
                "\(String(describing: error))")
    }
}
