import HookbusCore
import Logging
import ServiceLifecycle
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Delivers every committed event to every subscriber whose types match.
///
/// One `SubscriberRunner` per subscriber, each in its own task, so a slow or
/// failing subscriber never delays another; a global limiter caps deliveries
/// in flight. Dispatch reads the outbox and never blocks ingest: it learns of
/// new events from the committer's `SeqSignal`.
public final class Dispatcher: Service {
    let runners: [SubscriberRunner]
    /// The hooks of hook subscribers, whose `run()` lasts as long as dispatch.
    private let hooks: [any Hook]
    /// Makes the hooks woken by one event start in priority order.
    let gate: HookStartGate
    /// Times out deliveries (swept with the gate).
    let deadlines: Deadlines
    private let committer: Committer
    private let limiter: InflightLimiter
    private let logger: Logger
    private let signal: SeqSignal
    private let lifecycle: LifecycleEvents
    private let store: Store
    private let config: BrokerConfig
    /// Durable socket subscriber names held by a connection right now.
    private let socketNames = Mutex<Set<String>>([])

    /// Builds the runners; creates the cursor of a subscriber seen for the first
    /// time, so no event committed after this call is missed.
    /// - Throws: `ConfigError` when a hook's options are refused, `StoreError` on storage failure.
    public init(
        config: BrokerConfig, store: Store, committer: Committer, signal: SeqSignal,
        hooks: HookRegistry, logger: Logger
    ) throws {
        self.committer = committer
        self.signal = signal
        self.store = store
        // Live subscriptions do not outlive their connection, nor a crash.
        try store.forgetEphemeralSubscribers()
        self.config = config
        self.logger = logger
        let limiter = InflightLimiter(capacity: config.maxInflight)
        self.limiter = limiter
        var runners: [SubscriberRunner] = []
        var built: [any Hook] = []
        let lifecycle = LifecycleEvents(committer: committer, logger: logger)
        self.lifecycle = lifecycle
        let forward: @Sendable (DeadLetterNotice) async -> Void = { notice in
            await lifecycle.announceDeadLetter(notice, store: store)
        }
        // Hooks first, in priority then registration order, so that when one event
        // wakes several hooks they start in that order; then the other subscribers.
        // Hook subscribers sorted by their hook's priority, then its registration
        // order, then config order (sorted() is stable).
        let hookSubscribers = config.subscribers.filter { if case .hook = $0.kind { true } else { false } }
        let rank = { (subscriber: SubscriberConfig) -> (Int, Int) in
            guard case .hook(let name) = subscriber.kind, let entry = hooks.entry(name) else { return (Int.max, Int.max) }
            return (entry.type.priority, entry.index)
        }
        let ordered = hookSubscribers.sorted { rank($0) < rank($1) }
            + config.subscribers.filter { if case .hook = $0.kind { false } else { true } }
        let gate = HookStartGate()
        self.gate = gate
        let deadlines = Deadlines()
        self.deadlines = deadlines
        for subscriber in ordered {
            var subscriber = subscriber
            let deliverer: any Deliverer
            let kind: String
            switch subscriber.kind {
            case .exec(let argv):
                kind = "exec"
                deliverer = ExecDeliverer(argv: argv, timeout: subscriber.timeout, environment: subscriber.environment,
                                         runAs: subscriber.runAs, logger: logger)
            case .pipe(let argv):
                kind = "pipe"
                deliverer = PipeDeliverer(name: subscriber.name, argv: argv, environment: subscriber.environment,
                                          runAs: subscriber.runAs, timeout: subscriber.timeout, deadlines: deadlines,
                                          logger: logger)
            case .socket:
                throw ConfigError(file: config.file ?? "(defaults)", key: "subscribers \"\(subscriber.name)\"",
                                  reason: "socket subscribers subscribe on the socket; they are not configured")
            case .hook(let hookName):
                kind = "hook"
                guard let entry = hooks.entry(hookName) else {
                    throw ConfigError(file: config.file ?? "(defaults)", key: "subscribers \"\(subscriber.name)\".hook",
                                      reason: "unknown hook \"\(hookName)\"")
                }
                if subscriber.types.isEmpty { subscriber.types = entry.type.defaultTypes }
                let hook: any Hook
                do {
                    hook = try entry.type.init(options: HookOptions(hook: hookName, values: subscriber.options))
                } catch {
                    throw ConfigError(file: config.file ?? "(defaults)", key: "subscribers \"\(subscriber.name)\".options",
                                      reason: "\(error)")
                }
                built.append(hook)
                var hookLogger = logger
                hookLogger[metadataKey: "hookbus.hook"] = "\(hookName)"
                if !subscriber.timeoutSet, let declared = entry.type.timeout { subscriber.timeout = declared }
                if !subscriber.retrySet, let declared = entry.type.retry { subscriber.retry = declared }
                let rank = gate.add(types: subscriber.types, position: try store.cursor(for: subscriber.name, initial: try store.lastSeq()))
                deliverer = HookDeliverer(hook: hook, timeout: subscriber.timeout, store: store,
                                          config: config, logger: hookLogger, gate: gate, rank: rank,
                                          deadlines: deadlines)
            }
            runners.append(try SubscriberRunner(
                subscriber: subscriber, kind: kind, store: store, committer: committer, deliverer: deliverer,
                limiter: limiter, signal: signal, logger: logger, onDeadLetter: forward))
        }
        self.runners = runners
        self.hooks = built
        let all = runners
        signal.listen { _ in
            for runner in all { runner.wake() }
        }
        // Seed the signal with what is already stored.
        signal.publish(try store.lastSeq())
    }

    /// How long deliveries in flight get to finish once shutdown starts; then
    /// they are cancelled (processes killed) and delivered again next start.
    static let shutdownGrace: Duration = .seconds(10)

    public func run() async throws {
        let runners = self.runners
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    await withDiscardingTaskGroup { runnersGroup in
                        for runner in runners {
                            // In-process hooks run on dispatch's own threads, which give way
                            // to a pressed ingest (`DispatchExecutor`). The other kinds wait on
                            // processes and sockets served by the global executor: there the
                            // hops between the two would cost more than they give.
                            let executor: any TaskExecutor =
                                runner.kind == "hook" ? DispatchExecutor.shared : globalConcurrentExecutor
                            runnersGroup.addTask(executorPreference: executor) { await runner.run() }
                        }
                    }
                    // Runners end only once stopped; with none at all, this task
                    // must still last until shutdown.
                    try? await gracefulShutdown()
                }
                group.addTask { await self.retain() }
                let hooks = self.hooks
                group.addTask {
                    // Hooks' background work, until dispatch stops (this task is cancelled then).
                    await withDiscardingTaskGroup { hookGroup in
                        for hook in hooks {
                            hookGroup.addTask(executorPreference: DispatchExecutor.shared) { await hook.run() }
                        }
                    }
                    while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
                }
                let gate = self.gate
                let deadlines = self.deadlines
                let hasHooks = !hooks.isEmpty
                group.addTask {
                    // Times out deliveries, and bounds the hook start gate's
                    // waits (`HookStartGate.maxWait`).
                    while !Task.isCancelled {
                        try? await Task.sleep(for: Deadlines.sweepInterval)
                        // Hooks' deadlines wait while hooks give way to ingest.
                        deadlines.sweep(pressed: hasHooks && DispatchExecutor.shared.givingWay)
                        gate.sweep()
                    }
                }
                group.addTask {
                    // Ends `shutdownGrace` after shutdown began, unless cancelled first.
                    try? await gracefulShutdown()
                    try? await Task.sleep(for: Self.shutdownGrace)
                }
                await self.lifecycle.publish(type: "hookbus.started", data: { out in
                    out.key("pid"); out.int(getpid())
                    out.key("subscribers"); out.int(runners.count)
                })
                self.logger.info("dispatch started", metadata: ["hookbus.subscribers": "\(runners.count)"])
                // The runners end once stopped and idle; the grace may end first.
                await group.next()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            for runner in runners { runner.stop() }
        }
        logger.info("dispatch stopped")
    }

    /// The subscribers replay and retention consider: configured ones, then
    /// durable socket subscribers known to the database.
    func subscriberInfos() throws -> [SubscriberInfo] {
        try store.knownSubscribers(configured: runners.map {
            SubscriberInfo(name: $0.subscriber.name, kind: $0.kind, types: $0.subscriber.types)
        })
    }

    /// Asks the runners of these subscribers to read their retry rows again.
    func reload(_ names: Set<String>) {
        for runner in runners where names.contains(runner.subscriber.name) { runner.reload() }
        let sockets = socketRunners.withLock { Array($0.values) }
        for runner in sockets where names.contains(runner.subscriber.name) { runner.reload() }
    }

    private let socketRunners = Mutex<[String: SubscriberRunner]>([:])
    /// The counters of durable socket subscribers' ended connections, carried
    /// over to their next one.
    private let pastSocketStats = Mutex<[String: SubscriberStats.Snapshot]>([:])

    /// Runners of the clients subscribed on the socket right now, by name.
    var connectedSocketRunners: [SubscriberRunner] {
        socketRunners.withLock { $0.values.sorted { $0.subscriber.name < $1.subscriber.name } }
    }

    /// A runner for a client that subscribed on the socket, or a refusal.
    /// The caller runs it, and calls `release` when the connection ends.
    func makeSocketRunner(
        name: String?, types: [TypeFilter], window: Int, fromSeq: Int64?, deliverer: (String) -> SocketDeliverer
    ) throws(OperatorError) -> (runner: SubscriberRunner, deliverer: SocketDeliverer, durable: Bool) {
        let durable = name != nil
        let subscriberName = name ?? "~ephemeral-\(EventIDGenerator().next())"
        if durable {
            guard !runners.contains(where: { $0.subscriber.name == subscriberName }) else {
                throw OperatorError("name_taken", "\"\(subscriberName)\" is a configured subscriber; choose another name")
            }
            let claimed = socketNames.withLock { $0.insert(subscriberName).inserted }
            guard claimed else {
                throw OperatorError("subscriber_in_use",
                                    "subscriber \"\(subscriberName)\" is already connected on another connection; "
                                    + "one connection holds a durable name at a time")
            }
        }
        let socket = deliverer(subscriberName)
        let subscriber = SubscriberConfig(
            name: subscriberName, kind: .socket, types: types, timeout: config.defaults.timeout,
            retry: config.defaults.retry, concurrency: window)
        do {
            let start: Int64? = durable ? nil : fromSeq.map { $0 - 1 }
            let lifecycle = self.lifecycle
            let store = self.store
            let runner = try SubscriberRunner(
                subscriber: subscriber, kind: "socket", store: store, committer: committer, deliverer: socket,
                limiter: limiter, signal: signal, logger: logger, initialCursor: start,
                onDeadLetter: { notice in await lifecycle.announceDeadLetter(notice, store: store) })
            if durable {
                try store.recordSocketSubscriber(subscriberName, types: types)
                if let earlier = pastSocketStats.withLock({ $0.removeValue(forKey: subscriberName) }) {
                    runner.stats.carryOver(earlier)
                }
            }
            socketRunners.withLock { $0[subscriberName] = runner }
            return (runner, socket, durable)
        } catch {
            if durable { _ = socketNames.withLock { $0.remove(subscriberName) } }
            throw OperatorError("storage_failed", "cannot set up subscriber \(subscriberName): \(error)", code: .unavailable)
        }
    }

    /// The connection of a socket subscriber ended.
    func release(_ runner: SubscriberRunner, durable: Bool) {
        let name = runner.subscriber.name
        socketRunners.withLock { _ = $0.removeValue(forKey: name) }
        if durable {
            // Before the name is free: the next connection must find them.
            let snapshot = runner.stats.snapshot
            pastSocketStats.withLock { $0[name] = snapshot }
            _ = socketNames.withLock { $0.remove(name) }
        } else {
            do {
                try store.forgetSubscriber(name)
            } catch {
                logger.error("cannot forget an ephemeral subscriber", metadata: ["hookbus.subscriber": "\(name)", "hookbus.error": "\(error)"])
            }
        }
    }

    func listen(_ runner: SubscriberRunner) -> Int {
        signal.listen { _ in runner.wake() }
    }

    func unlisten(_ token: Int) {
        signal.unlisten(token)
    }

    /// The timeout socket subscribers get to ack a delivery.
    var defaultTimeout: Duration { config.defaults.timeout }

    /// Keeps the `dead` counters in step after a retry or purge.
    func deadLettersChanged(_ letters: [DeadLetter]) {
        var removed: [String: Int] = [:]
        for letter in letters { removed[letter.subscriber, default: 0] += 1 }
        for runner in runners + connectedSocketRunners {
            if let count = removed[runner.subscriber.name] { runner.stats.update { $0.dead = max(0, $0.dead - count) } }
        }
    }


    /// Prunes delivered events older than `retention`, now and then, until shutdown.
    private func retain() async {
        let retention = config.retention.milliseconds * 1000
        let interval = Duration.milliseconds(min(max(config.retention.milliseconds / 2, 200), 60_000))
        let configured = runners.map { SubscriberInfo(name: $0.subscriber.name, kind: $0.kind, types: $0.subscriber.types) }
        while !Task.isCancelled {
            do {
                let pruned = try store.prune(receivedBefore: Timestamp.nowMicros() - retention, subscribers: configured)
                if pruned > 0 {
                    logger.info("retention pruned delivered events", metadata: ["hookbus.events": "\(pruned)"])
                }
            } catch {
                logger.error("retention failed", metadata: ["hookbus.error": "\(error)"])
            }
            do {
                try await Task.sleep(for: interval)
            } catch {
                return
            }
        }
    }

    /// Deliveries in flight across all subscribers.
    var inFlight: Int { limiter.inUse }
    var maxInflight: Int { limiter.capacity }
}
