import HookbusCore
import Logging
import ServiceLifecycle
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
    private let committer: Committer
    private let limiter: InflightLimiter
    private let logger: Logger
    private let signal: SeqSignal
    private let lifecycle: LifecycleEvents

    /// Builds the runners; creates the cursor of a subscriber seen for the first
    /// time, so no event committed after this call is missed.
    /// - Throws: `ConfigError` when a hook's options are refused, `StoreError` on storage failure.
    public init(
        config: BrokerConfig, store: Store, committer: Committer, signal: SeqSignal,
        hooks: HookRegistry, logger: Logger
    ) throws {
        self.committer = committer
        self.signal = signal
        self.logger = logger
        let limiter = InflightLimiter(capacity: config.maxInflight)
        self.limiter = limiter
        var runners: [SubscriberRunner] = []
        let lifecycle = LifecycleEvents(committer: committer, logger: logger)
        self.lifecycle = lifecycle
        let forward: @Sendable (DeadLetterNotice) async -> Void = { notice in
            await lifecycle.announceDeadLetter(notice, store: store)
        }
        // Hooks first, in priority then registration order, so that when one event
        // wakes several hooks they start in that order; then the other subscribers.
        let hookNames = hooks.ordered(config.subscribers.compactMap { if case .hook = $0.kind { $0.name } else { nil } })
        let ordered = hookNames.compactMap { name in config.subscribers.first { $0.name == name } }
            + config.subscribers.filter { if case .hook = $0.kind { false } else { true } }
        for (index, subscriber) in ordered.enumerated() {
            var subscriber = subscriber
            let deliverer: any Deliverer
            let kind: String
            switch subscriber.kind {
            case .exec(let argv):
                kind = "exec"
                deliverer = ExecDeliverer(argv: argv, timeout: subscriber.timeout, environment: subscriber.environment, logger: logger)
            case .pipe(let argv):
                kind = "pipe"
                deliverer = PipeDeliverer(name: subscriber.name, argv: argv, environment: subscriber.environment,
                                          timeout: subscriber.timeout, logger: logger)
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
                var hookLogger = logger
                hookLogger[metadataKey: "hookbus.hook"] = "\(hookName)"
                deliverer = HookDeliverer(hook: hook, hookName: hookName, timeout: subscriber.timeout, store: store,
                                          config: config, logger: hookLogger)
            }
            _ = index
            runners.append(try SubscriberRunner(
                subscriber: subscriber, kind: kind, store: store, committer: committer, deliverer: deliverer,
                limiter: limiter, signal: signal, logger: logger, onDeadLetter: forward))
        }
        self.runners = runners
        let all = runners
        signal.listen { _ in
            for runner in all { runner.wake() }
        }
        // Seed the signal with what is already stored.
        signal.publish(try store.lastSeq())
    }

    public func run() async throws {
        let runners = self.runners
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for runner in runners {
                    group.addTask { await runner.run() }
                }
                await self.lifecycle.publish(type: "hookbus.started", data: { out in
                    out.key("pid"); out.int(getpid())
                    out.key("subscribers"); out.int(runners.count)
                })
                self.logger.info("dispatch started", metadata: ["hookbus.subscribers": "\(runners.count)"])
            }
        } onGracefulShutdown: {
            for runner in runners { runner.stop() }
        }
        logger.info("dispatch stopped")
    }

    /// Deliveries in flight across all subscribers.
    var inFlight: Int { limiter.inUse }
    var maxInflight: Int { limiter.capacity }
}
