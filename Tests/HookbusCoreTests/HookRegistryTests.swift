import Testing
@testable import HookbusCore

/// `HookRegistry`: hooks by name, and the order in which the hooks woken by
/// one event start (priority, then registration order).
@Suite("Hook registry")
struct HookRegistryTests {
    struct Negative: Hook {
        static let name = "negative"
        static var priority: Int { -1 }
        init(options: HookOptions) throws {}
        func handle(_ event: StoredEvent, context: HookContext) async throws {}
    }

    struct Early: Hook {
        static let name = "early"
        static var priority: Int { 5 }
        init(options: HookOptions) throws {}
        func handle(_ event: StoredEvent, context: HookContext) async throws {}
    }

    struct TieFirst: Hook {
        static let name = "tie-first"
        static var priority: Int { 50 }
        init(options: HookOptions) throws {}
        func handle(_ event: StoredEvent, context: HookContext) async throws {}
    }

    struct TieSecond: Hook {
        static let name = "tie-second"
        static var priority: Int { 50 }
        init(options: HookOptions) throws {}
        func handle(_ event: StoredEvent, context: HookContext) async throws {}
    }

    /// Declares nothing but its name: every default of the protocol.
    struct Plain: Hook {
        static let name = "plain"
        init(options: HookOptions) throws {}
        func handle(_ event: StoredEvent, context: HookContext) async throws {}
    }

    /// Registered in an order unrelated to priority: Plain (100), TieFirst (50),
    /// Early (5), Negative (-1), TieSecond (50).
    static var registry: HookRegistry {
        var registry = HookRegistry()
        registry.register(Plain.self)
        registry.register(TieFirst.self)
        registry.register(Early.self)
        registry.register(Negative.self)
        registry.register(TieSecond.self)
        return registry
    }

    static let expectedOrder = ["negative", "early", "tie-first", "tie-second", "plain"]

    @Test("ordered: lower priority first; equal priorities in registration order; whatever order the names come in",
          arguments: [
              ["plain", "tie-first", "early", "negative", "tie-second"],
              ["tie-second", "negative", "early", "tie-first", "plain"],
              ["early", "plain", "tie-second", "tie-first", "negative"],
              expectedOrder,
          ])
    func orderedByPriorityThenRegistration(_ names: [String]) {
        #expect(Self.registry.ordered(names) == Self.expectedOrder)
    }

    @Test("ordered keeps only the names asked for")
    func orderedSubset() {
        #expect(Self.registry.ordered(["tie-second", "plain", "tie-first"]) == ["tie-first", "tie-second", "plain"])
        #expect(Self.registry.ordered(["plain"]) == ["plain"])
        #expect(Self.registry.ordered([]) == [])
    }

    @Test("a name the registry does not know sorts after every known hook")
    func unknownNamesLast() {
        #expect(Self.registry.ordered(["unknown", "plain", "negative"]) == ["negative", "plain", "unknown"])
    }

    @Test("entries remember their registration index; names lists every hook")
    func entries() throws {
        let registry = Self.registry
        #expect(registry.names == ["plain", "tie-first", "early", "negative", "tie-second"])
        #expect(try #require(registry.entry("plain")).index == 0)
        #expect(try #require(registry.entry("tie-second")).index == 4)
        #expect(registry.entry("tie-second")?.type.priority == 50)
        #expect(registry.entry("nope") == nil)
    }

    @Test("a hook that declares nothing gets every type, priority 100, and the config's timeout and retries")
    func protocolDefaults() {
        #expect(Plain.defaultTypes == [.all])
        #expect(Plain.priority == 100)
        #expect(Plain.timeout == nil)
        #expect(Plain.retry == nil)
    }

    @Test("the built-in registry: hosts-file (priority 10) before prometheus-sd (20), both on client events and hookbus.started; latency-probe takes what it is given")
    func builtIn() {
        let registry = HookRegistry.builtIn
        #expect(registry.names == ["hosts-file", "prometheus-sd", "latency-probe"])
        #expect(registry.ordered(["prometheus-sd", "hosts-file"]) == ["hosts-file", "prometheus-sd"])
        #expect(registry.entry("latency-probe")?.type.defaultTypes == [.all])
        for name in ["hosts-file", "prometheus-sd"] {
            let types = registry.entry(name)?.type.defaultTypes ?? []
            for type in ["client.added", "client.hostname_changed", "client.removed", "hookbus.started"] {
                #expect(types.matches(type), "\(name) does not want \(type)")
            }
            #expect(!types.matches("hookbus.dead_lettered") && !types.matches("server.added"), "\(name): \(types)")
        }
    }
}
