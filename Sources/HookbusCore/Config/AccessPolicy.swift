/// Who may do what on the socket, by the peer credentials of the connection
/// (SO_PEERCRED). The socket file's mode and group decide who can connect at
/// all; these allow-lists narrow what a connected peer may do.
///
/// With no `[[access.publish]]` rule every peer may publish every type; with
/// rules, a publish needs a rule that names the peer's uid or gid and whose
/// types match the event's. With no `[access.operate]` every peer may run the
/// operator commands (subscribe, replay, dlq.*); with it, only the uids and
/// gids it names. `ping` and `stats` are open to every peer.
public struct AccessPolicy: Sendable, Equatable {
    /// Peers named by uid or by (primary) gid.
    public struct Peers: Sendable, Equatable {
        public var uids: Set<UInt32> = []
        public var gids: Set<UInt32> = []

        public init(uids: Set<UInt32> = [], gids: Set<UInt32> = []) {
            self.uids = uids
            self.gids = gids
        }

        public func contains(_ producer: Producer) -> Bool {
            uids.contains(producer.uid) || gids.contains(producer.gid)
        }
    }

    public struct PublishRule: Sendable, Equatable {
        public var peers: Peers
        public var types: [TypeFilter]

        public init(peers: Peers, types: [TypeFilter]) {
            self.peers = peers
            self.types = types
        }
    }

    public var publish: [PublishRule] = []
    public var operate: Peers?

    public init(publish: [PublishRule] = [], operate: Peers? = nil) {
        self.publish = publish
        self.operate = operate
    }

    /// Nil if allowed, else the refusal naming the uid and what was refused.
    public func checkPublish(_ producer: Producer, type: String) -> WireError? {
        guard !publish.isEmpty else { return nil }
        if publish.contains(where: { $0.peers.contains(producer) && $0.types.matches(type) }) { return nil }
        return WireError(.unauthorized, "publish_denied", attribute: "type",
                         "uid \(producer.uid) (gid \(producer.gid)) may not publish events of type \"\(EventValidator.clipped(type))\"")
    }

    /// Nil if allowed, else the refusal naming the uid and the command.
    public func checkOperate(_ producer: Producer, op: String) -> WireError? {
        guard let operate, !operate.contains(producer) else { return nil }
        return WireError(.unauthorized, "operator_denied", attribute: "op",
                         "uid \(producer.uid) (gid \(producer.gid)) may not run \(op): it is not in access.operate")
    }

    /// The commands `access.operate` guards.
    public static func isOperatorCommand(_ op: String) -> Bool {
        op == "subscribe" || op == "replay" || op.hasPrefix("dlq.")
    }
}
