/// Keeps a Prometheus file_sd JSON file, one target group per client
/// (`<ip>:<port>`, labels `fleet` and `hostname`), from client events;
/// rewritten atomically on every change and at startup.
///
/// Options: `path` (required), `port` (default 9100).
public struct PrometheusSDHook: Hook {
    public static let name = "prometheus-sd"
    public static var defaultTypes: [TypeFilter] { ClientDirectory.types }
    public static var priority: Int { 20 }

    public let path: String
    public let port: Int

    public init(options: HookOptions) throws {
        try options.only(["path", "port"])
        path = try options.string("path")
        port = try options.int("port", default: 9100)
        guard (1...65535).contains(port) else {
            throw HookOptions.Problem(description: "option 'port' of hook \(Self.name) must be 1 to 65535, got \(port)")
        }
    }

    public func handle(_ event: StoredEvent, context: HookContext) async throws {
        guard try await ClientDirectory.apply(event, to: context.state) else { return }
        let clients = try await ClientDirectory.clients(in: context.state)
        try AtomicFile.write(Self.render(clients, port: port), to: path)
    }

    public static func render(_ clients: [Client], port: Int) -> String {
        var out = JSONWriter()
        out.beginArray()
        for client in clients {
            out.beginObject()
            out.key("targets")
            out.beginArray()
            out.string("\(client.ip):\(port)")
            out.endArray()
            out.key("labels")
            out.beginObject()
            out.key("fleet"); out.string(client.fleet)
            out.key("hostname"); out.string(client.hostname)
            out.endObject()
            out.endObject()
        }
        out.endArray()
        out.newline()
        return String(decoding: out.bytes, as: UTF8.self)
    }
}
