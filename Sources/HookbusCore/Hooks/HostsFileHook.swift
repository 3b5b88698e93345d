/// Keeps a hosts file, one `<ip> <hostname>.<fleet>.<domain>` line per client,
/// from client events; rewritten atomically on every change and at startup.
///
/// Options: `path` (required), `domain` (required).
public struct HostsFileHook: Hook {
    public static let name = "hosts-file"
    public static var defaultTypes: [TypeFilter] { ClientDirectory.types }
    public static var priority: Int { 10 }

    public let path: String
    public let domain: String

    public init(options: HookOptions) throws {
        try options.only(["path", "domain"])
        path = try options.string("path")
        domain = try options.string("domain")
    }

    public func handle(_ event: StoredEvent, context: HookContext) async throws {
        guard try await ClientDirectory.apply(event, to: context.state) else { return }
        let clients = try await ClientDirectory.clients(in: context.state)
        try AtomicFile.write(Self.render(clients, domain: domain), to: path)
        context.logger.debug("hosts file rewritten", metadata: ["hookbus.entries": "\(clients.count)"])
    }

    public static func render(_ clients: [Client], domain: String) -> String {
        clients.map { "\($0.ip) \($0.hostname).\($0.fleet).\(domain)\n" }.joined()
    }
}
