import Foundation
import Logging
import Testing
@testable import HookbusCore

/// The clients the built-in hooks track, kept in a hook's durable state
/// (`HookState` on a temporary database): added, renamed (keyed by ip) and
/// removed, and rebuilt from the database after a restart.
@Suite("Hook client directory and state")
struct HookClientDirectoryTests {
    /// A temporary database with events stored in it, as the broker stores them.
    final class Bed {
        let directory: URL
        /// Optional only so `reopen()` can let go of the old store (and its lock file) first.
        private var opened: Store?
        private var count = 0

        init() throws {
            directory = try makeTemporaryDirectory()
            opened = try Store(path: directory.appendingPathComponent("hookbus.db").path, durability: .normal)
        }

        deinit {
            try? opened?.close()
            try? FileManager.default.removeItem(at: directory)
        }

        var store: Store { opened! }

        func state(_ hook: String = "hosts") -> HookState { HookState(hook: hook, store: store) }

        /// Stores an event of `type` with `data` and returns it as dispatch reads it.
        func event(_ type: String, _ data: String) throws -> StoredEvent {
            count += 1
            _ = try store.append([makeEvent(id: "e\(count)", source: "fleet", type: type, data: data)])
            let seq = try store.lastSeq()
            return try #require(try store.event(seq: seq))
        }

        /// Applies a client event to `state` and returns ClientDirectory's answer.
        @discardableResult
        func apply(_ type: String, _ data: String, to state: HookState? = nil) async throws -> Bool {
            try await ClientDirectory.apply(try event(type, data), to: state ?? self.state())
        }

        func clients(_ state: HookState? = nil) async throws -> [Client] {
            try await ClientDirectory.clients(in: state ?? self.state())
        }

        /// Closes the database and opens it again, as a broker restart does.
        func reopen() throws {
            try opened?.close()
            opened = nil
            opened = try Store(path: directory.appendingPathComponent("hookbus.db").path, durability: .normal)
        }
    }

    static func added(_ ip: String, _ hostname: String, _ fleet: String) -> String {
        #"{"ip":"\#(ip)","hostname":"\#(hostname)","fleet":"\#(fleet)"}"#
    }

    @Test("client.added adds, client.hostname_changed renames the client with that ip, client.removed removes it")
    func addedRenamedRemoved() async throws {
        let bed = try Bed()
        #expect(try await bed.apply("client.added", Self.added("10.0.0.2", "alpha", "f1")))
        #expect(try await bed.apply("client.added", Self.added("10.0.0.3", "beta", "f1")))
        #expect(try await bed.clients() == [
            Client(ip: "10.0.0.2", hostname: "alpha", fleet: "f1"), Client(ip: "10.0.0.3", hostname: "beta", fleet: "f1"),
        ])

        // Renamed, keyed by ip: no fleet given, the fleet stays.
        #expect(try await bed.apply("client.hostname_changed", #"{"ip":"10.0.0.2","hostname":"alpha-2"}"#))
        #expect(try await bed.clients() == [
            Client(ip: "10.0.0.2", hostname: "alpha-2", fleet: "f1"), Client(ip: "10.0.0.3", hostname: "beta", fleet: "f1"),
        ])
        // A change may move it to another fleet too; the old name is gone, not kept beside.
        #expect(try await bed.apply("client.hostname_changed", #"{"ip":"10.0.0.3","hostname":"beta-2","fleet":"f2"}"#))
        #expect(try await bed.clients() == [
            Client(ip: "10.0.0.2", hostname: "alpha-2", fleet: "f1"), Client(ip: "10.0.0.3", hostname: "beta-2", fleet: "f2"),
        ])

        #expect(try await bed.apply("client.removed", #"{"ip":"10.0.0.2"}"#))
        #expect(try await bed.clients() == [Client(ip: "10.0.0.3", hostname: "beta-2", fleet: "f2")])
        // Removing a client that is not there is not an error.
        #expect(try await bed.apply("client.removed", #"{"ip":"10.0.0.99","hostname":"ghost","fleet":"f1"}"#))
        // Added again for a known ip: replaces it.
        #expect(try await bed.apply("client.added", Self.added("10.0.0.3", "gamma", "f3")))
        #expect(try await bed.clients() == [Client(ip: "10.0.0.3", hostname: "gamma", fleet: "f3")])
    }

    @Test("clients sort by address, numerically for IPv4, anything else after")
    func sortedByAddress() async throws {
        let bed = try Bed()
        for (ip, name) in [("10.0.0.100", "c"), ("fd00::1", "v6"), ("10.0.0.9", "a"), ("9.255.255.255", "z"), ("10.0.0.10", "b")] {
            try await bed.apply("client.added", Self.added(ip, name, "f"))
        }
        #expect(try await bed.clients().map(\.ip) == ["9.255.255.255", "10.0.0.9", "10.0.0.10", "10.0.0.100", "fd00::1"])
    }

    @Test("hookbus.started asks for a rewrite without changing anything; other types ask for nothing")
    func otherTypes() async throws {
        let bed = try Bed()
        try await bed.apply("client.added", Self.added("10.0.0.2", "alpha", "f1"))
        #expect(try await bed.apply("hookbus.started", #"{"pid":1}"#))
        #expect(try await !bed.apply("client.heartbeat", #"{"ip":"10.0.0.2","hostname":"other","fleet":"f9"}"#))
        #expect(try await !bed.apply("server.added", Self.added("10.0.0.5", "srv", "f1")))
        #expect(try await bed.clients() == [Client(ip: "10.0.0.2", hostname: "alpha", fleet: "f1")])
    }

    /// A client event the hooks cannot use: refused for good (a dead letter at once), state untouched.
    struct Unusable: Sendable, CustomTestStringConvertible {
        var type: String
        var data: String
        var reason: String
        var testDescription: String { "\(type) \(data)" }
    }

    @Test("client events without what the hooks need are rejected, naming what is missing", arguments: [
        Unusable(type: "client.added", data: #"{"hostname":"a","fleet":"f"}"#, reason: "has no data.ip"),
        Unusable(type: "client.added", data: #"{"ip":"","hostname":"a","fleet":"f"}"#, reason: "has no data.ip"),
        Unusable(type: "client.added", data: #"{"ip":7,"hostname":"a","fleet":"f"}"#, reason: "has no data.ip"),
        Unusable(type: "client.added", data: #"{"ip":"10.0.0.1","fleet":"f"}"#, reason: "lacks data.hostname or data.fleet"),
        Unusable(type: "client.added", data: #"{"ip":"10.0.0.1","hostname":"","fleet":"f"}"#, reason: "lacks data.hostname or data.fleet"),
        Unusable(type: "client.added", data: #"{"ip":"10.0.0.1","hostname":"a"}"#, reason: "lacks data.hostname or data.fleet"),
        Unusable(type: "client.hostname_changed", data: #"{"ip":"10.9.9.9","hostname":"x"}"#, reason: "lacks data.hostname or data.fleet"),
        Unusable(type: "client.removed", data: #"{}"#, reason: "has no data.ip"),
        Unusable(type: "client.added", data: #"[1,2]"#, reason: "has no data object"),
        Unusable(type: "client.added", data: #""10.0.0.1""#, reason: "has no data object"),
        // What would put lines of its own into a hosts file, or nonsense into a target list.
        Unusable(type: "client.added", data: #"{"ip":"10.0.0.1","hostname":"x.evil\n6.6.6.6 github.com #","fleet":"f"}"#,
                 reason: #"data.hostname "x.evil\u{a}6.6.6.6 github.com #" is not a DNS label"#),
        Unusable(type: "client.added", data: #"{"ip":"10.0.0.1","hostname":"a","fleet":"prod example"}"#,
                 reason: #"data.fleet "prod example" is not a DNS label"#),
        Unusable(type: "client.hostname_changed", data: #"{"ip":"10.0.0.2","hostname":"-a"}"#, reason: "is not a DNS label"),
        Unusable(type: "client.added", data: #"{"ip":"10.0.0.1 6.6.6.6","hostname":"a","fleet":"f"}"#,
                 reason: #"data.ip "10.0.0.1 6.6.6.6" is not an IPv4 or IPv6 address"#),
        Unusable(type: "client.added", data: #"{"ip":"web1","hostname":"a","fleet":"f"}"#, reason: "is not an IPv4 or IPv6 address"),
    ])
    func rejected(_ bad: Unusable) async throws {
        let bed = try Bed()
        try await bed.apply("client.added", Self.added("10.0.0.2", "alpha", "f1"))
        let event = try bed.event(bad.type, bad.data)
        let rejection = await #expect(throws: HookRejection.self) {
            try await ClientDirectory.apply(event, to: bed.state())
        }
        #expect(rejection?.description.contains(bad.reason) == true, "\(rejection?.description ?? "")")
        #expect(rejection?.description.contains("seq \(event.seq)") == true, "\(rejection?.description ?? "")")
        #expect(try await bed.clients() == [Client(ip: "10.0.0.2", hostname: "alpha", fleet: "f1")])
    }

    @Test("each hook has its own state, and it survives closing and reopening the database")
    func statePerHookAndDurable() async throws {
        let bed = try Bed()
        try await bed.apply("client.added", Self.added("10.0.0.2", "alpha", "f1"), to: bed.state("hosts"))
        try await bed.apply("client.added", Self.added("10.0.0.3", "beta", "f1"), to: bed.state("sd"))
        #expect(try await bed.clients(bed.state("hosts")).map(\.ip) == ["10.0.0.2"])
        #expect(try await bed.clients(bed.state("sd")).map(\.ip) == ["10.0.0.3"])

        try bed.reopen()
        #expect(try await bed.clients(bed.state("hosts")) == [Client(ip: "10.0.0.2", hostname: "alpha", fleet: "f1")])
        #expect(try await bed.clients(bed.state("sd")) == [Client(ip: "10.0.0.3", hostname: "beta", fleet: "f1")])
    }

    @Test("HookState: set, get, overwrite, remove, and all sorted by key")
    func hookStateBasics() async throws {
        let bed = try Bed()
        let state = bed.state("kv")
        #expect(try await state.get("missing") == nil)
        try await state.set("b", "2")
        try await state.set("a", "1")
        try await state.set("c", "3")
        try await state.set("b", "two")
        #expect(try await state.get("b") == "two")
        try await state.remove("c")
        try await state.remove("never-set")
        #expect(try await state.all().map { "\($0.key)=\($0.value)" } == ["a=1", "b=two"])
        #expect(try await bed.state("other").all().isEmpty)
    }

    static let logger = Logger(label: "hookbus-test") { _ in SwiftLogNoOpLogHandler() }

    static func context(_ subscriber: String, _ bed: Bed) -> HookContext {
        HookContext(attempt: 1, replay: false, subscriber: subscriber, logger: logger, config: BrokerConfig(),
                    state: bed.state(subscriber))
    }

    @Test("the hooks write their files from client events, and hookbus.started rebuilds deleted files identically after a restart")
    func hooksWriteAndRebuild() async throws {
        let bed = try Bed()
        let hostsPath = bed.directory.appendingPathComponent("hosts").path
        let sdPath = bed.directory.appendingPathComponent("sd.json").path
        let hosts = try HostsFileHook(options: HookOptions(hook: "hosts-file", values: [
            "path": .string(hostsPath), "domain": .string("fleet.example"),
        ]))
        let sd = try PrometheusSDHook(options: HookOptions(hook: "prometheus-sd", values: ["path": .string(sdPath)]))
        func deliver(_ type: String, _ data: String) async throws {
            let event = try bed.event(type, data)
            try await hosts.handle(event, context: Self.context("hosts", bed))
            try await sd.handle(event, context: Self.context("sd", bed))
        }

        try await deliver("client.added", Self.added("10.0.0.10", "alpha", "f1"))
        try await deliver("client.added", Self.added("10.0.0.9", "beta", "f2"))
        try await deliver("client.hostname_changed", #"{"ip":"10.0.0.10","hostname":"alpha-2"}"#)
        try await deliver("client.added", Self.added("10.0.0.11", "gone", "f1"))
        try await deliver("client.removed", #"{"ip":"10.0.0.11"}"#)
        let expectedHosts = "10.0.0.9 beta.f2.fleet.example\n10.0.0.10 alpha-2.f1.fleet.example\n"
        let expectedSD = #"[{"targets":["10.0.0.9:9100"],"labels":{"fleet":"f2","hostname":"beta"}},"#
            + #"{"targets":["10.0.0.10:9100"],"labels":{"fleet":"f1","hostname":"alpha-2"}}]"# + "\n"
        #expect(try String(contentsOfFile: hostsPath, encoding: .utf8) == expectedHosts)
        #expect(try String(contentsOfFile: sdPath, encoding: .utf8) == expectedSD)

        // An event that does not concern clients does not rewrite anything.
        try FileManager.default.removeItem(atPath: hostsPath)
        try await deliver("server.added", Self.added("10.0.0.50", "srv", "f1"))
        #expect(!FileManager.default.fileExists(atPath: hostsPath))

        // Restart: files gone, database reopened, hookbus.started.
        try? FileManager.default.removeItem(atPath: sdPath)
        try bed.reopen()
        try await deliver("hookbus.started", #"{"pid":42}"#)
        #expect(try String(contentsOfFile: hostsPath, encoding: .utf8) == expectedHosts)
        #expect(try String(contentsOfFile: sdPath, encoding: .utf8) == expectedSD)
    }
}
