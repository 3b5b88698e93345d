import TOMLKit
#if canImport(Glibc)
import Glibc
#endif

/// Reads a TOML config file into a `BrokerConfig`. Every unknown key, wrong
/// type, bad value, duplicate subscriber name, unknown hook and hook option
/// the hook refuses is an error that names the file, the key and the reason.
public struct ConfigLoader {
    /// Hook names the broker knows; a `hook = "..."` naming another is an error.
    public var knownHooks: Set<String>
    /// The hooks themselves, when given: each hook subscriber's `options` are
    /// checked by building the hook, so a bad option is refused with the other
    /// configuration errors, before the broker opens anything.
    public var hooks: HookRegistry?

    public init(knownHooks: Set<String>) {
        self.knownHooks = knownHooks
    }

    public init(hooks: HookRegistry) {
        self.knownHooks = hooks.names
        self.hooks = hooks
    }

    public func load(file: String) throws(ConfigError) -> BrokerConfig {
        let text: String
        switch Self.read(file) {
        case .success(let read): text = read
        case .failure(let reason): throw ConfigError(file: file, key: "(file)", reason: "cannot read: \(reason.text)")
        }
        return try parse(text, file: file)
    }

    struct ReadFailure: Error { var text: String }

    /// The file's text, or why it cannot be had (the system's words, or that
    /// it is a directory, or not UTF-8).
    static func read(_ file: String) -> Result<String, ReadFailure> {
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(ReadFailure(text: String(cString: strerror(errno)))) }
        defer { close(fd) }
        var info = stat()
        if fstat(fd, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR {
            return .failure(ReadFailure(text: "it is a directory, not a config file"))
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count < 0 { return .failure(ReadFailure(text: String(cString: strerror(errno)))) }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { return .failure(ReadFailure(text: "it is not UTF-8 text")) }
        return .success(text)
    }

    public func parse(_ text: String, file: String) throws(ConfigError) -> BrokerConfig {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError(file: file, key: "(syntax)",
                              reason: "line \(error.source.begin.line), column \(error.source.begin.column): \(error.description)")
        } catch {
            throw ConfigError(file: file, key: "(syntax)", reason: "\(error)")
        }
        var reader = TableReader(table: table, file: file, path: "")
        var config = BrokerConfig()
        config.file = file
        if let value = try reader.string("socket") { config.socketPath = value }
        if let value = try reader.string("database") { config.databasePath = value }
        if let value = try reader.string("socket_mode") {
            guard let mode = UInt32(value, radix: 8), mode <= 0o777 else {
                throw reader.error("socket_mode", "must be an octal mode like \"0660\", got \"\(value)\"")
            }
            config.socketMode = mode
        }
        if let group = try reader.string("socket_group") {
            guard gid_t(group) != nil || getgrnam(group) != nil else {
                throw reader.error("socket_group", "\"\(group)\" is not a known group name or number")
            }
            config.socketGroup = group
        }
        if let value = try reader.string("durability") {
            guard let durability = Durability(rawValue: value) else {
                throw reader.error("durability", "must be \"full\" or \"normal\", got \"\(value)\"")
            }
            config.durability = durability
        }
        if let value = try reader.int("max_line_bytes", min: 256) { config.limits.maxLineBytes = value }
        if let value = try reader.int("max_connections", min: 1) { config.limits.maxConnections = value }
        if let value = try reader.int("max_outbox_bytes", min: 0) { config.limits.maxOutboxBytes = Int64(value) }
        if let value = try reader.int("max_inflight", min: 1) { config.maxInflight = value }
        if let value = try reader.int("max_inflight_per_connection", min: 1) { config.limits.maxInflightPerConnection = value }
        if var access = try reader.table("access") {
            config.access = try readAccess(&access)
            try access.finish()
        }
        if let value = try reader.duration("retention") { config.retention = value }
        if let value = try reader.string("log_level") {
            let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
            guard levels.contains(value) else {
                throw reader.error("log_level", "must be one of \(levels.joined(separator: ", ")), got \"\(value)\"")
            }
            config.logLevel = value
        }
        if var defaults = try reader.table("defaults") {
            config.defaults = try readDefaults(&defaults, base: config.defaults)
            try defaults.finish()
        }
        if let subscribers = try reader.tableArray("subscribers") {
            var names = Set<String>()
            for (index, sub) in subscribers.enumerated() {
                var sub = sub
                let subscriber = try readSubscriber(&sub, index: index, defaults: config.defaults)
                guard names.insert(subscriber.name).inserted else {
                    throw sub.error("name", "duplicate subscriber name \"\(subscriber.name)\"")
                }
                try sub.finish()
                config.subscribers.append(subscriber)
            }
        }
        try reader.finish()
        return config
    }

    private func readAccess(_ reader: inout TableReader) throws(ConfigError) -> AccessPolicy {
        var policy = AccessPolicy()
        if let rules = try reader.tableArray("publish") {
            for var rule in rules {
                let peers = try readPeers(&rule)
                let texts = try rule.stringList("types") ?? ["*"]
                var types: [TypeFilter] = []
                for text in texts {
                    switch TypeFilter.parse(text) {
                    case .success(let filter): types.append(filter)
                    case .failure(let problem): throw rule.error("types", "\"\(text)\": \(problem.reason)")
                    }
                }
                try rule.finish()
                policy.publish.append(AccessPolicy.PublishRule(peers: peers, types: types))
            }
        }
        if var operate = try reader.table("operate") {
            policy.operate = try readPeers(&operate)
            try operate.finish()
        }
        return policy
    }

    /// `uids` and `gids`: numbers or names, resolved now so a typo stops startup.
    private func readPeers(_ reader: inout TableReader) throws(ConfigError) -> AccessPolicy.Peers {
        var peers = AccessPolicy.Peers()
        for (key, isUser) in [("uids", true), ("gids", false)] {
            guard let values = try reader.idList(key) else { continue }
            for value in values {
                guard let id = isUser ? Self.uid(value) : Self.gid(value) else {
                    throw reader.error(key, "\"\(value)\" is not a known \(isUser ? "user" : "group")")
                }
                if isUser { peers.uids.insert(id) } else { peers.gids.insert(id) }
            }
        }
        if peers.uids.isEmpty && peers.gids.isEmpty {
            throw reader.error("uids", "name at least one uid or gid (an empty rule would allow nobody)")
        }
        return peers
    }

    static func uid(_ text: String) -> UInt32? {
        if let number = UInt32(text) { return number }
        return getpwnam(text).map { $0.pointee.pw_uid }
    }

    static func gid(_ text: String) -> UInt32? {
        if let number = UInt32(text) { return number }
        return getgrnam(text).map { $0.pointee.gr_gid }
    }

    private func readDefaults(_ reader: inout TableReader, base: SubscriberDefaults) throws(ConfigError) -> SubscriberDefaults {
        var defaults = base
        defaults.retry = try readRetry(&reader, base: base.retry)
        if let value = try reader.duration("timeout") { defaults.timeout = value }
        if let value = try reader.int("concurrency", min: 1) { defaults.concurrency = value }
        return defaults
    }

    private func readRetry(_ reader: inout TableReader, base: RetryPolicy) throws(ConfigError) -> RetryPolicy {
        var retry = base
        if let value = try reader.int("max_attempts", min: 1) { retry.maxAttempts = value }
        let initial = try reader.duration("backoff_initial")
        let maximum = try reader.duration("backoff_max")
        let list = try reader.durationList("backoff")
        if list != nil && (initial != nil || maximum != nil) {
            throw reader.error("backoff", "give either an explicit backoff list or backoff_initial/backoff_max, not both")
        }
        if let list {
            guard !list.isEmpty else { throw reader.error("backoff", "the list must not be empty") }
            retry.schedule = .explicit(list)
        } else if initial != nil || maximum != nil {
            var (start, cap) = (Duration.seconds(1), Duration.seconds(300))
            if case .exponential(let i, let m) = base.schedule { (start, cap) = (i, m) }
            start = initial ?? start
            cap = maximum ?? cap
            guard start <= cap else {
                throw reader.error("backoff_initial", "\(start.spelled) is longer than backoff_max \(cap.spelled)")
            }
            retry.schedule = .exponential(initial: start, max: cap)
        }
        return retry
    }

    private func readSubscriber(_ reader: inout TableReader, index: Int, defaults: SubscriberDefaults) throws(ConfigError) -> SubscriberConfig {
        guard let name = try reader.string("name") else { throw reader.error("name", "every subscriber needs a name") }
        guard SubscriberConfig.isValidName(name) else {
            throw reader.error("name", "\"\(name)\" must be 1 to 64 ASCII letters, digits, '-', '_' or '.'")
        }
        reader.path = "subscribers[\(index)] \"\(name)\"."
        let exec = try reader.stringList("exec")
        let pipe = try reader.stringList("pipe")
        let hook = try reader.string("hook")
        let given = [exec != nil ? "exec" : nil, pipe != nil ? "pipe" : nil, hook != nil ? "hook" : nil].compactMap { $0 }
        guard given.count == 1 else {
            let why = given.isEmpty ? "none is given" : "\(given.joined(separator: " and ")) are both given"
            throw reader.error(given.first ?? "exec", "a subscriber has exactly one of exec, pipe and hook; \(why)")
        }
        let kind: SubscriberConfig.Kind
        if let exec {
            guard !exec.isEmpty, !exec[0].isEmpty else { throw reader.error("exec", "the command must not be empty") }
            kind = .exec(exec)
        } else if let pipe {
            guard !pipe.isEmpty, !pipe[0].isEmpty else { throw reader.error("pipe", "the command must not be empty") }
            kind = .pipe(pipe)
        } else {
            let hookName = hook ?? ""
            guard knownHooks.contains(hookName) else {
                throw reader.error("hook", "unknown hook \"\(hookName)\"; known hooks: \(knownHooks.sorted().joined(separator: ", "))")
            }
            kind = .hook(hookName)
        }
        let typeTexts = try reader.stringList("types") ?? []
        // A hook may leave `types` out and get the ones it declares.
        if typeTexts.isEmpty && (hook == nil || reader.has("types")) {
            throw reader.error("types", "give at least one type filter, e.g. [\"client.*\"] or [\"*\"]")
        }
        var types: [TypeFilter] = []
        for text in typeTexts {
            switch TypeFilter.parse(text) {
            case .success(let filter): types.append(filter)
            case .failure(let problem): throw reader.error("types", "\"\(text)\": \(problem.reason)")
            }
        }
        let retrySet = ["max_attempts", "backoff_initial", "backoff_max", "backoff"].contains { reader.has($0) }
        let timeoutSet = reader.has("timeout")
        let retry = try readRetry(&reader, base: defaults.retry)
        let timeout = try reader.duration("timeout") ?? defaults.timeout
        let concurrency = try reader.int("concurrency", min: 1) ?? defaults.concurrency
        var options: [String: ConfigValue] = [:]
        if var table = try reader.table("options") {
            options = try table.all()
        }
        if case .hook(let hookName) = kind, let entry = hooks?.entry(hookName) {
            do {
                _ = try entry.type.init(options: HookOptions(hook: hookName, values: options))
            } catch {
                throw reader.error("options", "\(error)")
            }
        }
        var environment: [String: String] = [:]
        if var table = try reader.table("env") {
            for (key, value) in try table.all() {
                guard let text = value.string else { throw reader.error("env.\(key)", "must be a string") }
                environment[key] = text
            }
        }
        var runAs: RunAs?
        let user = try reader.string("user")
        let group = try reader.string("group")
        if user != nil || group != nil {
            if case .hook = kind { throw reader.error("user", "user and group apply to exec and pipe subscribers, not hooks") }
            var uid: UInt32?
            var gid: UInt32?
            if let user {
                guard let entry = UInt32(user).flatMap({ getpwuid($0) }) ?? getpwnam(user) else {
                    throw reader.error("user", "\"\(user)\" is not a known user")
                }
                uid = entry.pointee.pw_uid
                gid = entry.pointee.pw_gid
            }
            if let group {
                guard let id = Self.gid(group) else { throw reader.error("group", "\"\(group)\" is not a known group") }
                gid = id
            }
            runAs = RunAs(uid: uid, gid: gid)
        }
        var subscriber = SubscriberConfig(name: name, kind: kind, types: types, timeout: timeout, retry: retry,
                                          concurrency: concurrency, options: options, environment: environment)
        // Values from [defaults] count as unset, so a hook's declared ones win.
        subscriber.runAs = runAs
        subscriber.timeoutSet = timeoutSet
        subscriber.retrySet = retrySet
        return subscriber
    }
}

/// Reads keys from one TOML table and remembers which it read, so `finish()`
/// can report the first key nobody asked for.
struct TableReader {
    let table: TOMLTable
    let file: String
    var path: String
    private var used = Set<String>()

    init(table: TOMLTable, file: String, path: String) {
        self.table = table
        self.file = file
        self.path = path
    }

    func has(_ key: String) -> Bool { table[key] != nil }

    func error(_ key: String, _ reason: String) -> ConfigError {
        ConfigError(file: file, key: path + key, reason: reason)
    }

    private mutating func value(_ key: String) -> (any TOMLValueConvertible)? {
        used.insert(key)
        return table[key]
    }

    mutating func string(_ key: String) throws(ConfigError) -> String? {
        guard let value = value(key) else { return nil }
        guard let text = value.string else { throw error(key, "must be a string, got \(value.type)") }
        return text
    }

    mutating func int(_ key: String, min: Int) throws(ConfigError) -> Int? {
        guard let value = value(key) else { return nil }
        guard let number = value.int else { throw error(key, "must be an integer, got \(value.type)") }
        guard number >= min else { throw error(key, "must be at least \(min), got \(number)") }
        return number
    }

    /// Why `text` is not a duration.
    static func badDuration(_ text: String) -> String {
        let digits = text.prefix { $0.isASCII && $0.isNumber }
        if !digits.isEmpty, ["ms", "s", "m", "h"].contains(String(text.dropFirst(digits.count))) {
            return "bad duration \"\(text)\": too large"
        }
        return "bad duration \"\(text)\": expected an integer with ms, s, m or h, like \"30s\""
    }

    mutating func duration(_ key: String) throws(ConfigError) -> Duration? {
        guard let text = try string(key) else { return nil }
        guard let duration = Duration.parse(text) else {
            throw error(key, Self.badDuration(text))
        }
        return duration
    }

    mutating func stringList(_ key: String) throws(ConfigError) -> [String]? {
        guard let value = value(key) else { return nil }
        guard let array = value.array else { throw error(key, "must be an array of strings, got \(value.type)") }
        var out: [String] = []
        for item in array {
            guard let text = item.string else { throw error(key, "must be an array of strings; found \(item.type)") }
            out.append(text)
        }
        return out
    }

    /// A list of ids: integers or names, as strings.
    mutating func idList(_ key: String) throws(ConfigError) -> [String]? {
        guard let value = value(key) else { return nil }
        guard let array = value.array else { throw error(key, "must be an array of numbers or names, got \(value.type)") }
        var out: [String] = []
        for item in array {
            if let number = item.int, number >= 0 {
                out.append(String(number))
            } else if let text = item.string {
                out.append(text)
            } else {
                throw error(key, "must be an array of numbers or names; found \(item.type)")
            }
        }
        return out
    }

    mutating func durationList(_ key: String) throws(ConfigError) -> [Duration]? {
        guard let texts = try stringList(key) else { return nil }
        var out: [Duration] = []
        for text in texts {
            guard let duration = Duration.parse(text) else {
                throw error(key, Self.badDuration(text))
            }
            out.append(duration)
        }
        return out
    }

    mutating func table(_ key: String) throws(ConfigError) -> TableReader? {
        guard let value = value(key) else { return nil }
        guard let inner = value.table else { throw error(key, "must be a table, got \(value.type)") }
        return TableReader(table: inner, file: file, path: path + key + ".")
    }

    mutating func tableArray(_ key: String) throws(ConfigError) -> [TableReader]? {
        guard let value = value(key) else { return nil }
        guard let array = value.array else { throw error(key, "must be an array of tables ([[\(key)]]), got \(value.type)") }
        var out: [TableReader] = []
        for (index, item) in array.enumerated() {
            guard let inner = item.table else { throw error("\(key)[\(index)]", "must be a table, got \(item.type)") }
            out.append(TableReader(table: inner, file: file, path: "\(path)\(key)[\(index)]."))
        }
        return out
    }

    /// Every key of the table as a `ConfigValue` (hook options are free-form).
    mutating func all() throws(ConfigError) -> [String: ConfigValue] {
        var out: [String: ConfigValue] = [:]
        for key in table.keys {
            guard let value = value(key) else { continue }
            out[key] = try convert(value, key: key)
        }
        return out
    }

    private func convert(_ value: any TOMLValueConvertible, key: String) throws(ConfigError) -> ConfigValue {
        if let text = value.string { return .string(text) }
        if let bool = value.bool { return .bool(bool) }
        if let int = value.int { return .int(int) }
        if let double = value.double { return .double(double) }
        if let array = value.array {
            var items: [ConfigValue] = []
            for item in array { items.append(try convert(item, key: key)) }
            return .array(items)
        }
        throw error(key, "must be a string, number, boolean or array, got \(value.type)")
    }

    func finish() throws(ConfigError) {
        for key in table.keys.sorted() where !used.contains(key) {
            throw error(key, "unknown key")
        }
    }
}
