import Logging

/// An in-process hook: Swift code compiled into the broker that receives events.
///
/// Add one by writing a type that conforms to `Hook` in a file of its own and
/// registering it with one line (`registry.register(MyHook.self)`). A hook is a
/// subscriber of its own: it has its own cursor, its own retries and its own
/// dead letters, so a hook that throws, hangs or is slow never stops another.
public protocol Hook: Sendable {
    /// The name used in the config file (`hook = "<name>"`), in logs and in stats.
    static var name: String { get }
    /// Types it wants unless the config says otherwise.
    static var defaultTypes: [TypeFilter] { get }
    /// Lower runs first among hooks woken by the same event. Ties keep registration order.
    static var priority: Int { get }
    /// How long one delivery may take before it counts as failed (nil: the config's default).
    static var timeout: Duration? { get }
    /// Its retry policy (nil: the config's default).
    static var retry: RetryPolicy? { get }

    /// Builds the hook from its options in the config file; throws to refuse bad options.
    init(options: HookOptions) throws

    /// Handles one delivery. Throwing (or exceeding the timeout) schedules a retry.
    func handle(_ event: StoredEvent, context: HookContext) async throws
    /// Background work for as long as dispatch runs (flushing a file now and
    /// then, say). Started with dispatch, cancelled when it stops: return once
    /// cancelled. The default does nothing.
    func run() async
}

extension Hook {
    public static var defaultTypes: [TypeFilter] { [.all] }
    public static var priority: Int { 100 }
    public static var timeout: Duration? { nil }
    public static var retry: RetryPolicy? { nil }
    public func run() async {}
}

/// A hook's options from the config file, with typed accessors whose errors name the option.
public struct HookOptions: Sendable {
    public var hook: String
    public var values: [String: ConfigValue]

    public init(hook: String, values: [String: ConfigValue]) {
        self.hook = hook
        self.values = values
    }

    public struct Problem: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    public func string(_ key: String, default fallback: String? = nil) throws -> String {
        switch values[key] {
        case .string(let text)?: return text
        case nil:
            if let fallback { return fallback }
            throw Problem(description: "hook \(hook) needs option '\(key)'")
        case let other?: throw Problem(description: "option '\(key)' of hook \(hook) must be a string, got \(other)")
        }
    }

    public func int(_ key: String, default fallback: Int) throws -> Int {
        switch values[key] {
        case .int(let number)?: return number
        case nil: return fallback
        case let other?: throw Problem(description: "option '\(key)' of hook \(hook) must be an integer, got \(other)")
        }
    }

    /// Refuses options the hook does not know, so a typo is not silently ignored.
    public func only(_ known: Set<String>) throws {
        for key in values.keys.sorted() where !known.contains(key) {
            throw Problem(description: "hook \(hook) has no option '\(key)' (known: \(known.sorted().joined(separator: ", ")))")
        }
    }
}

/// What a hook gets with each delivery.
public struct HookContext: Sendable {
    /// 1 for the first try.
    public var attempt: Int
    public var replay: Bool
    public var subscriber: String
    public var logger: Logger
    /// The broker's configuration.
    public var config: BrokerConfig
    /// A small durable key-value store of the hook's own, in the broker's database.
    public var state: HookState

    public init(attempt: Int, replay: Bool, subscriber: String, logger: Logger, config: BrokerConfig, state: HookState) {
        self.attempt = attempt
        self.replay = replay
        self.subscriber = subscriber
        self.logger = logger
        self.config = config
        self.state = state
    }
}

/// Thrown by a hook that refuses an event for good (bad data, say): the
/// delivery goes to the dead letters at once instead of being retried.
public struct HookRejection: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
