/// Everything `hookbusd` runs with: the embedded defaults, overridden by the
/// config file, overridden by command-line flags. protocol/CONFIG.md lists
/// every key.
public struct BrokerConfig: Sendable {
    public var socketPath = "./hookbus.sock"
    public var databasePath = "./hookbus.db"
    /// Permission bits of the socket file. 0660: the owner and the group may connect.
    public var socketMode: UInt32 = 0o660
    /// Group given to the socket file, by name or number; nil keeps the broker's.
    public var socketGroup: String?
    public var durability: Durability = .full
    public var limits = Limits()
    public var access = AccessPolicy()
    /// Deliveries in flight at once across all subscribers.
    public var maxInflight = 50
    /// Delivered events older than this are pruned.
    public var retention: Duration = .seconds(7 * 24 * 3600)
    public var logLevel = "info"
    public var defaults = SubscriberDefaults()
    public var subscribers: [SubscriberConfig] = []
    /// The file the config came from, for messages; nil for the embedded defaults.
    public var file: String?

    public init() {}
}

/// Bounds that keep one client or one mistake from taking the broker down.
public struct Limits: Sendable, Equatable {
    /// Longest accepted line, in bytes. 1 MiB: far above any sane event, far
    /// below what would let a client pin memory.
    public var maxLineBytes = 1 << 20
    /// Connections served at once; more are answered with one refusal line and closed.
    public var maxConnections = 1024
    /// Batches of lines (one read each, at most 64 KiB) a connection may have
    /// read and not yet answered; past it the broker stops reading from that
    /// connection until it catches up. Bounds what one producer can make the
    /// broker hold.
    public var maxInflightPerConnection = 8
    /// Outbox size (database pages in use) beyond which publishing answers
    /// `unavailable`; 0 means no limit but the disk's.
    public var maxOutboxBytes: Int64 = 0

    public init() {}
}

/// Values every subscriber gets unless it sets its own (`[defaults]`).
public struct SubscriberDefaults: Sendable, Equatable {
    public var retry = RetryPolicy()
    public var timeout: Duration = .seconds(30)
    public var concurrency = 1

    public init() {}
}

/// One `[[subscribers]]` table.
public struct SubscriberConfig: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case exec([String])
        case pipe([String])
        case hook(String)
        /// A client that subscribed on the socket.
        case socket
    }

    public var name: String
    public var kind: Kind
    public var types: [TypeFilter]
    public var timeout: Duration
    public var retry: RetryPolicy
    public var concurrency: Int
    /// Hook options (`options = { ... }`), or extra environment for processes (`env`).
    public var options: [String: ConfigValue]
    public var environment: [String: String]
    /// Run processes as this user and group (numbers, resolved from the names
    /// in the config); nil keeps the broker's.
    public var runAs: RunAs?
    /// Whether the subscriber's table set `timeout` / its retry keys itself;
    /// if not, a hook's declared values win over `[defaults]`.
    public var timeoutSet = false
    public var retrySet = false

    /// Subscriber names, in the config and on the socket alike: 1 to 64 ASCII
    /// letters, digits, `-`, `_` and `.`. ASCII only: a name is shown in
    /// `stats`, logs and `HOOKBUS_SUBSCRIBER`, and a look-alike letter from
    /// another script ("nоtify" with a Cyrillic о) must not pass for another.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.utf8.allSatisfy { byte in
                (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte)
                    || byte == 0x2D || byte == 0x5F || byte == 0x2E
            }
    }

    /// - Parameters:
    ///   - timeout: nil: a hook's declared timeout, else 30 s.
    ///   - retry: nil: a hook's declared policy, else the default policy.
    public init(
        name: String, kind: Kind, types: [TypeFilter], timeout: Duration? = nil,
        retry: RetryPolicy? = nil, concurrency: Int = 1,
        options: [String: ConfigValue] = [:], environment: [String: String] = [:]
    ) {
        self.name = name
        self.kind = kind
        self.types = types
        self.timeout = timeout ?? .seconds(30)
        self.retry = retry ?? RetryPolicy()
        self.timeoutSet = timeout != nil
        self.retrySet = retry != nil
        self.concurrency = concurrency
        self.options = options
        self.environment = environment
        self.runAs = nil
    }
}

/// The credentials a subscriber process runs with.
public struct RunAs: Sendable, Equatable {
    public var uid: UInt32?
    public var gid: UInt32?

    public init(uid: UInt32?, gid: UInt32?) {
        self.uid = uid
        self.gid = gid
    }
}

/// A scalar or list from the config file, handed to hooks as their options.
public enum ConfigValue: Sendable, Equatable {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case array([ConfigValue])

    public var string: String? { if case .string(let value) = self { value } else { nil } }
    public var int: Int? { if case .int(let value) = self { value } else { nil } }
}
