import Foundation
import GRDB
import HookbusCore
@testable import HookbusServer
import Logging
import Synchronization
import Testing

/// In-process hooks registered by Swift code that embeds the library, run by
/// the public `Dispatcher` on a temporary database (no socket, no process):
/// a hook that throws and a hook that never returns do not stop the others;
/// hooks for one event start in priority, then registration order; a hook's
/// own timeout and retry policy apply.
@Suite("Dispatch: embedded hooks")
struct DispatchEmbeddedHookTests {
    @Test("a hook that throws and a hook that never returns do not stop the others; each is retried and dead-lettered under its own name")
    func throwingAndHangingHooksAreIsolated() async throws {
        let probe = "isolation-\(UUID().uuidString)"
        let retry = RetryPolicy(maxAttempts: 2, schedule: .explicit([.milliseconds(10)]))
        let rig = try EmbeddedDispatch(subscribers: [
            SubscriberConfig(name: "throws", kind: .hook(EmbeddedThrowingHook.name), types: [.prefix("iso.")],
                             timeout: .seconds(20), retry: retry, options: ["probe": .string(probe)]),
            SubscriberConfig(name: "hangs", kind: .hook(EmbeddedHangingHook.name), types: [.prefix("iso.")],
                             timeout: .milliseconds(100), retry: retry, options: ["probe": .string(probe)]),
            SubscriberConfig(name: "records", kind: .hook(EmbeddedRecordingHook.name), types: [.prefix("iso.")],
                             timeout: .seconds(20), retry: retry, options: ["probe": .string(probe)]),
        ])
        defer { rig.tearDown() }
        try await rig.run {
            let seqs = try await rig.publish((0..<5).map { "iso.event-\($0)" })
            try await rig.waitUntil("records got all 5 events") {
                EmbeddedHookProbe.shared.starts(probe).filter { $0.subscriber == "records" }.count == 5
            }
            try await rig.waitUntil("throws and hangs dead-lettered all 5") {
                try rig.store.deadLetterCount(for: "throws") == 5 && rig.store.deadLetterCount(for: "hangs") == 5
            }

            let starts = EmbeddedHookProbe.shared.starts(probe)
            let recorded = starts.filter { $0.subscriber == "records" }
            #expect(recorded.map(\.seq) == seqs && recorded.allSatisfy { $0.attempt == 1 }, "\(recorded)")
            // The context: the subscriber's name, its durable state, the broker's config.
            #expect(try await HookState(hook: "records", store: rig.store).get("seen") == "5")
            #expect(try await HookState(hook: "throws", store: rig.store).get("seen") == nil, "state is per subscriber")
            #expect(recorded.allSatisfy { $0.database == rig.config.databasePath })

            for (name, error) in [("throws", "hook throws threw: "), ("hangs", "hook hangs timed out after 100ms")] {
                let mine = starts.filter { $0.subscriber == name }
                #expect(mine.map(\.seq) == seqs.flatMap { [$0, $0] } && mine.map(\.attempt) == Array(repeating: [1, 2], count: 5).flatMap { $0 },
                        "\(name): every event tried twice, in order: \(mine)")
                let dead = try rig.deadLetters(name)
                #expect(dead.map(\.seq) == seqs, "\(name): \(dead)")
                for letter in dead {
                    #expect(letter.attempts == 2 && letter.reason == "max_attempts", "\(name): \(letter)")
                    #expect(letter.lastError.hasPrefix(error), "\(name): \(letter.lastError)")
                }
            }
            #expect(try rig.deadLetters("records").isEmpty)
        }
    }

    @Test("hooks woken by one event start in priority order, then registration order, whatever the config's order")
    func startOrder() async throws {
        let probe = "order-\(UUID().uuidString)"
        let once = RetryPolicy(maxAttempts: 1)
        // Config order reversed: the registry's order must win.
        let rig = try EmbeddedDispatch(subscribers: [
            EmbeddedRecordingLateHook.name, EmbeddedRecordingHook.name, EmbeddedHangingHook.name, EmbeddedThrowingHook.name,
        ].map { hook in
            SubscriberConfig(name: "sub-\(hook)", kind: .hook(hook), types: [.prefix("order.")], timeout: .milliseconds(50),
                             retry: once, options: ["probe": .string(probe)])
        }, hooks: [EmbeddedRecordingHook.self, EmbeddedRecordingLateHook.self])
        defer { rig.tearDown() }
        let expected = ["sub-test-throwing", "sub-test-hanging", "sub-test-recording", "sub-test-recording-late"]
        // The gate ranks the hooks in the registry's order, whatever the config's.
        let ranks = Dictionary(uniqueKeysWithValues: rig.dispatcher.runners.compactMap { runner in
            (runner.deliverer as? HookDeliverer).map { (runner.subscriber.name, $0.rank) }
        })
        #expect(expected.map { ranks[$0] } == [0, 1, 2, 3], "\(ranks)")
        // At each hook's start, the gate must say it may start: every hook ranked
        // above it has entered its `handle` for this event (or has passed it, or
        // is too busy to take it). The order in which the hooks' first lines
        // then run is up to the threads: the one let go may run before the one
        // that let it go has reached its first line, so that order is not checked.
        let gate = rig.dispatcher.gate
        EmbeddedHookProbe.shared.check(probe) { subscriber, seq, type in
            guard let rank = ranks[subscriber] else { return false }
            return gate.allowsStart(seq: seq, rank: rank, type: type)
        }
        try await rig.run {
            var wrong: [String] = []
            for round in 0..<Self.orderRounds {
                let seq = try await rig.publish(["order.event-\(round)"])[0]
                try await rig.waitUntil("four hooks started on seq \(seq), the hanging one done") {
                    try EmbeddedHookProbe.shared.starts(probe).filter { $0.seq == seq }.count == 4
                        && rig.store.deadLetterCount(for: "sub-test-hanging") == round + 1
                }
                let starts = EmbeddedHookProbe.shared.starts(probe).filter { $0.seq == seq }.sorted { $0.order < $1.order }
                let early = starts.filter { $0.allowed != true }
                if !early.isEmpty { wrong.append("seq \(seq): \(early.map(\.subscriber)) started before their turn") }
            }
            #expect(wrong.isEmpty, "\(wrong.count) of \(Self.orderRounds) events started hooks out of order: \(wrong)")
        }
    }

    static let orderRounds = 20

    @Test("events committed together go to a hook as one run; a failure or a time-out in it holds the events after it back until its retry is delivered")
    func runStopsAtAFailure() async throws {
        let probe = "run-\(UUID().uuidString)"
        let retry = RetryPolicy(maxAttempts: 3, schedule: .explicit([.milliseconds(10)]))
        let rig = try EmbeddedDispatch(subscribers: [
            SubscriberConfig(name: "picky", kind: .hook(EmbeddedPickyHook.name), types: [.prefix("run.")],
                             timeout: .seconds(1), retry: retry, options: ["probe": .string(probe)]),
        ], hooks: [EmbeddedPickyHook.self])
        defer { rig.tearDown() }
        try await rig.run {
            // A running subscriber reads new events from the committer's ring.
            try await rig.waitUntil("the runner reads the ring") { rig.committer.recent.isRead }
            // One commit: the runner reads all eight at once. (The timeout is long
            // enough that only the hanging event can run into it, even on a loaded machine.)
            let seqs = try await rig.publish(["run.a", "run.b", "run.c-fail", "run.d", "run.e-hang", "run.f", "run.g", "run.h"])
            #expect(rig.committer.recent.count >= 8)
            try await rig.waitUntil("picky delivered all 8") {
                EmbeddedHookProbe.shared.starts(probe).count == 10
            }
            let starts = EmbeddedHookProbe.shared.starts(probe).sorted { $0.order < $1.order }
            let expected = [(0, 1), (1, 1), (2, 1), (2, 2), (3, 1), (4, 1), (4, 2), (5, 1), (6, 1), (7, 1)]
            #expect(starts.map { "\($0.seq).\($0.attempt)" } == expected.map { "\(seqs[$0.0]).\($0.1)" },
                    "in seq order, each failed one retried before the next starts: \(starts)")
            #expect(try rig.deadLetters("picky").isEmpty)
            // The cursor passes every event of the run once each is settled (later seqs are the broker's own events).
            try await rig.waitUntil("picky's cursor past the last event") {
                try rig.store.cursor(for: "picky", initial: 0) >= seqs[7]
            }
        }
        // No subscriber runs: commits are no longer kept in memory.
        #expect(!rig.committer.recent.isRead)
    }

    @Test("a slow hook of higher priority does not hold back the hooks after it")
    func slowRunDoesNotHoldOthersBack() async throws {
        let probe = "run-slow-\(UUID().uuidString)"
        let rig = try EmbeddedDispatch(subscribers: [
            SubscriberConfig(name: "slow", kind: .hook(EmbeddedSlowHook.name), types: [.prefix("slow.")],
                             timeout: .seconds(60), options: ["probe": .string(probe)]),
            SubscriberConfig(name: "quick", kind: .hook(EmbeddedRecordingHook.name), types: [.prefix("slow.")],
                             timeout: .seconds(20), options: ["probe": .string(probe)]),
        ], hooks: [EmbeddedRecordingHook.self, EmbeddedSlowHook.self])
        defer { rig.tearDown() }
        try await rig.run {
            _ = try await rig.publish((0..<5).map { "slow.event-\($0)" })
            try await rig.waitUntil("the quick hook started all 5") {
                EmbeddedHookProbe.shared.starts(probe).filter { $0.subscriber == "quick" }.count == 5
            }
            // The slow hook takes 2 s an event: the quick one must not have waited for it event by event.
            let slow = EmbeddedHookProbe.shared.starts(probe).filter { $0.subscriber == "slow" }
            #expect(slow.count <= 2, "the quick hook kept pace with the slow one: \(slow)")
        }
    }

    @Test("a hook's own types, timeout and retry policy apply when the config file leaves them out")
    func declaredTimeoutAndRetry() async throws {
        let probe = "declared-\(UUID().uuidString)"
        // No types, no timeout, no retries: the hook declares `hang.*`, 100ms and 2 attempts;
        // the config's defaults (30s, 10 attempts) must not replace them.
        let rig = try EmbeddedDispatch(configText: """
            [[subscribers]]
            name = "hangs"
            hook = "\(EmbeddedHangingHook.name)"
            options = { probe = "\(probe)" }
            """)
        defer { rig.tearDown() }
        try await rig.run {
            let seq = try await rig.publish(["hang.event"])[0]
            try await rig.waitUntil("hangs started on seq \(seq) (its declared types)") {
                EmbeddedHookProbe.shared.starts(probe).contains { $0.seq == seq }
            }
            try await rig.waitUntil("hangs timed out twice (100ms each) and dead-lettered seq \(seq)", timeout: .seconds(10)) {
                try rig.store.deadLetterCount(for: "hangs") == 1
            }
            let dead = try rig.deadLetters("hangs")
            #expect(dead.first?.attempts == 2 && dead.first?.reason == "max_attempts", "\(dead)")
            #expect(dead.first?.lastError.hasPrefix("hook hangs timed out after 100ms") == true, "\(dead)")
        }
    }
}

// MARK: - The rig

/// A `Dispatcher` with its `Store` and `Committer` on a temporary database.
final class EmbeddedDispatch: Sendable {
    let directory: String
    let config: BrokerConfig
    let registry: HookRegistry
    let store: Store
    let committer: Committer
    let dispatcher: Dispatcher
    /// Quiet: tests keep logs off.
    static let logger = Logger(label: "hookbus-test") { _ in SwiftLogNoOpLogHandler() }

    /// A dispatcher for `subscribers`. The registry holds the throwing and the
    /// hanging hook, then `hooks` in this order.
    convenience init(subscribers: [SubscriberConfig], hooks: [any Hook.Type] = [EmbeddedRecordingHook.self]) throws {
        let scratch = try ScratchDirectory()
        var config = BrokerConfig()
        config.subscribers = subscribers
        try self.init(directory: scratch.root, config: config, registry: Self.registry(hooks))
    }

    /// A dispatcher for the subscribers of a config file's text, read as
    /// `hookbusd --config` reads it.
    convenience init(configText: String, hooks: [any Hook.Type] = [EmbeddedRecordingHook.self]) throws {
        let scratch = try ScratchDirectory()
        let registry = Self.registry(hooks)
        let file = try scratch.write("hookbus.toml", configText)
        let config = try ConfigLoader(knownHooks: registry.names).load(file: file)
        try self.init(directory: scratch.root, config: config, registry: registry)
    }

    private init(directory: String, config: BrokerConfig, registry: HookRegistry) throws {
        self.directory = directory
        var config = config
        config.databasePath = directory + "/hb.db"
        config.socketPath = directory + "/s.sock"
        config.durability = .normal
        self.config = config
        self.registry = registry
        store = try Store(path: config.databasePath, durability: .normal)
        let signal = SeqSignal()
        committer = Committer(store: store, logger: Self.logger, onCommit: { signal.publish($0) })
        dispatcher = try Dispatcher(config: config, store: store, committer: committer, signal: signal, hooks: registry,
                                    logger: Self.logger)
    }

    static func registry(_ hooks: [any Hook.Type]) -> HookRegistry {
        var registry = HookRegistry()
        registry.register(EmbeddedThrowingHook.self)
        registry.register(EmbeddedHangingHook.self)
        for hook in hooks { registry.register(hook) }
        return registry
    }

    /// Runs the dispatcher around `body`, then cancels it and closes the database.
    func run(_ body: () async throws -> Void) async throws {
        let dispatcher = self.dispatcher
        let running = Task { try await dispatcher.run() }
        do {
            try await body()
        } catch {
            running.cancel()
            _ = await running.result
            await committer.close()
            throw error
        }
        running.cancel()
        _ = await running.result
        await committer.close()
    }

    func tearDown() {
        try? store.close()
        if ProcessInfo.processInfo.environment["HOOKBUS_KEEP_TEST_DIRS"] == nil {
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    /// Commits one event per type and returns their seqs.
    func publish(_ types: [String]) async throws -> [Int64] {
        let decoder = RequestDecoder()
        let producer = Producer(uid: getuid(), gid: getgid(), pid: getpid())
        let events = try types.enumerated().map { index, type -> NewEvent in
            let line = #"{"type":"\#(type)","source":"embedded","id":"e\#(index)-\#(type)","data":{}}"#
            guard case .publish(let event) = decoder.decode(line: Array(line.utf8), producer: producer,
                                                             nowMicros: Timestamp.nowMicros()) else {
                throw HarnessError("not an event: \(line)")
            }
            return event
        }
        switch await committer.commit(events) {
        case .success(let outcomes):
            return outcomes.map { if case .stored(let seq, _) = $0 { seq } else { -1 } }
        case .failure(let error):
            throw HarnessError("commit failed: \(error)")
        }
    }

    func deadLetters(_ subscriber: String) throws -> [DispatchDeadLetter] {
        try store.pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT seq, event_id, event_type, event, attempts, reason, last_error FROM dead_letters
                WHERE subscriber = ? ORDER BY seq
                """, arguments: [subscriber]).map {
                DispatchDeadLetter(seq: $0["seq"], eventID: $0["event_id"], eventType: $0["event_type"], event: $0["event"],
                                   attempts: $0["attempts"], reason: $0["reason"], lastError: $0["last_error"], errors: [])
            }
        }
    }

    func waitUntil(_ what: String, timeout: Duration = .seconds(20), _ condition: () throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while try !condition() {
            if ContinuousClock.now >= deadline { throw HarnessError("waited \(timeout) for: \(what)") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

// MARK: - Test hooks

/// What the test hooks saw, for every test at once; each test reads its own
/// `probe` (a hook option).
final class EmbeddedHookProbe: Sendable {
    struct Start: Sendable, CustomStringConvertible {
        var subscriber: String
        var seq: Int64
        var attempt: Int
        var database: String
        /// Global start order.
        var order: Int
        /// What the probe's check said at the start (nil: no check).
        var allowed: Bool?

        var description: String { "\(subscriber)#\(seq).\(attempt)" }
    }

    static let shared = EmbeddedHookProbe()
    private let state = Mutex<(next: Int, starts: [String: [Start]])>((0, [:]))
    typealias Check = @Sendable (_ subscriber: String, _ seq: Int64, _ type: String) -> Bool
    private let checks = Mutex<[String: Check]>([:])

    /// Asks `check` at every start recorded under `probe`.
    func check(_ probe: String, _ check: @escaping Check) {
        checks.withLock { $0[probe] = check }
    }

    func started(_ probe: String, _ event: StoredEvent, _ context: HookContext) {
        let allowed = checks.withLock { $0[probe] }.map { $0(context.subscriber, event.seq, event.type) }
        state.withLock { state in
            state.next += 1
            state.starts[probe, default: []].append(Start(
                subscriber: context.subscriber, seq: event.seq, attempt: context.attempt,
                database: context.config.databasePath, order: state.next, allowed: allowed))
        }
    }

    func starts(_ probe: String) -> [Start] { state.withLock { $0.starts[probe] ?? [] } }
}

/// A test hook whose one option, `probe`, names the record its starts go to.
protocol ProbedHook: Hook {
    var probe: String { get }
    init(probe: String)
}

extension ProbedHook {
    init(options: HookOptions) throws {
        try options.only(["probe"])
        self.init(probe: try options.string("probe"))
    }
}

struct EmbeddedHookFailure: Error, CustomStringConvertible {
    var description: String
}

/// Always throws.
struct EmbeddedThrowingHook: ProbedHook {
    static let name = "test-throwing"
    static var priority: Int { 1 }
    let probe: String

    func handle(_ event: StoredEvent, context: HookContext) async throws {
        EmbeddedHookProbe.shared.started(probe, event, context)
        throw EmbeddedHookFailure(description: "boom at seq \(event.seq)")
    }
}

/// Never returns (it honours cancellation, as the `Hook` documentation asks).
/// Declares its own types, timeout and retry policy.
struct EmbeddedHangingHook: ProbedHook {
    static let name = "test-hanging"
    static var priority: Int { 2 }
    static var defaultTypes: [TypeFilter] { [.prefix("hang.")] }
    static var timeout: Duration? { .milliseconds(100) }
    static var retry: RetryPolicy? { RetryPolicy(maxAttempts: 2, schedule: .explicit([.milliseconds(10)])) }
    let probe: String

    func handle(_ event: StoredEvent, context: HookContext) async throws {
        EmbeddedHookProbe.shared.started(probe, event, context)
        try await Task.sleep(for: .seconds(3600))
    }
}

/// Records the delivery and counts it in its durable state.
struct EmbeddedRecordingHook: ProbedHook {
    static let name = "test-recording"
    static var priority: Int { 3 }
    let probe: String

    func handle(_ event: StoredEvent, context: HookContext) async throws {
        EmbeddedHookProbe.shared.started(probe, event, context)
        let seen = Int(try await context.state.get("seen") ?? "0") ?? 0
        try await context.state.set("seen", "\(seen + 1)")
    }
}

/// The same priority as `EmbeddedRecordingHook`, registered after it.
struct EmbeddedRecordingLateHook: ProbedHook {
    static let name = "test-recording-late"
    static var priority: Int { 3 }
    let probe: String

    func handle(_ event: StoredEvent, context: HookContext) async throws {
        EmbeddedHookProbe.shared.started(probe, event, context)
    }
}

/// Throws at the first attempt of an event whose type ends in `-fail`, and
/// hangs (until cancelled) at the first attempt of one ending in `-hang`.
struct EmbeddedPickyHook: ProbedHook {
    static let name = "test-picky"
    let probe: String

    func handle(_ event: StoredEvent, context: HookContext) async throws {
        EmbeddedHookProbe.shared.started(probe, event, context)
        guard context.attempt == 1 else { return }
        if event.type.hasSuffix("-fail") { throw EmbeddedHookFailure(description: "first try of \(event.type)") }
        if event.type.hasSuffix("-hang") { try await Task.sleep(for: .seconds(3600)) }
    }
}

/// Takes 2 s an event (it honours cancellation), ahead of the recording hooks.
struct EmbeddedSlowHook: ProbedHook {
    static let name = "test-slow"
    static var priority: Int { 2 }
    let probe: String

    func handle(_ event: StoredEvent, context: HookContext) async throws {
        EmbeddedHookProbe.shared.started(probe, event, context)
        try await Task.sleep(for: .seconds(2))
    }
}
