/// The hooks compiled into the broker, by name.
///
/// Register a hook with one line: `registry.register(MyHook.self)`. The config
/// file enables it (`[[subscribers]] hook = "my-hook"`) and may override its
/// types, timeout, retries and options.
public struct HookRegistry: Sendable {
    public struct Entry: Sendable {
        public var type: any Hook.Type
        /// Registration order, the tie-breaker after priority.
        public var index: Int
    }

    public private(set) var entries: [String: Entry] = [:]

    public init() {}

    /// The registry with hookbus's built-in hooks.
    public static var builtIn: HookRegistry {
        var registry = HookRegistry()
        registry.register(HostsFileHook.self)
        registry.register(PrometheusSDHook.self)
        registry.register(LatencyProbeHook.self)
        return registry
    }

    public mutating func register(_ hook: any Hook.Type) {
        precondition(entries[hook.name] == nil, "hook \(hook.name) registered twice")
        entries[hook.name] = Entry(type: hook, index: entries.count)
    }

    public var names: Set<String> { Set(entries.keys) }

    public func entry(_ name: String) -> Entry? { entries[name] }

    /// Names sorted as hooks start for one event: priority, then registration order.
    public func ordered(_ names: [String]) -> [String] {
        names.sorted { lhs, rhs in
            let (a, b) = (entries[lhs], entries[rhs])
            let pa = a?.type.priority ?? Int.max, pb = b?.type.priority ?? Int.max
            if pa != pb { return pa < pb }
            return (a?.index ?? Int.max) < (b?.index ?? Int.max)
        }
    }
}
