import HookbusCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The Unix socket server: accepts producers and clients, one task each.
///
/// On graceful shutdown it stops accepting, asks every connection to answer
/// what it has read and stop reading, waits for them (force-closing the ones
/// still stuck after `drainTimeout`, say a client that never reads), and
/// removes the socket file.
public final class Listener: Service {
    private let config: BrokerConfig
    private let committer: Committer
    private let decoder: RequestDecoder
    private let commands: CommandRouter
    private let logger: Logger
    private let group: any EventLoopGroup
    private let connections = Mutex<[ObjectIdentifier: any Channel]>([:])
    private let connectionCount = Atomic<Int>(0)
    private let nextConnectionID = Atomic<Int>(1)
    /// Refused lines, and connections past `max_connections`, are logged at a bounded rate.
    private let refusalLog = LogLimiter()
    private let connectionRefusalLog = LogLimiter()
    private let draining = Atomic<Bool>(false)
    private let onReady: @Sendable () -> Void
    /// How long connections get to finish once shutdown starts.
    static let drainTimeout: TimeAmount = .seconds(5)

    public init(
        config: BrokerConfig, committer: Committer, commands: CommandRouter, logger: Logger,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        onReady: @escaping @Sendable () -> Void = {}
    ) {
        self.config = config
        self.committer = committer
        self.decoder = RequestDecoder()
        self.commands = commands
        self.logger = logger
        self.group = group
        self.onReady = onReady
    }

    public func run() async throws {
        let path = config.socketPath
        let maxLineBytes = config.limits.maxLineBytes
        let inflight = config.limits.maxInflightPerConnection
        let maxConnections = config.limits.maxConnections
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .bind(unixDomainSocketPath: path) { channel in
                PeerCredentials.read(from: channel).flatMapThrowing { producer in
                    // Counted here, before anything is read: a connection over the
                    // limit must not get its events committed by the fast path.
                    // (`serve` gives the place back when the connection ends.)
                    let admitted = self.connectionCount.add(1, ordering: .relaxed).newValue <= maxConnections
                    do {
                        let connection = self.connectionLogger(producer: producer)
                        let ingest = Ingest(decoder: self.decoder, producer: producer, access: self.config.access,
                                            committer: self.committer, logger: connection, refusalLog: self.refusalLog)
                        try channel.pipeline.syncOperations.addHandlers(
                            LineFramingHandler(maxLineBytes: maxLineBytes),
                            IngestHandler(ingest: ingest, maxInflightBatches: inflight, forwardAll: !admitted))
                        let wrapped = try NIOAsyncChannel<FrameBatch, ConnectionOutput>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(backPressureStrategy: .init(
                                lowWatermark: max(1, inflight / 2), highWatermark: inflight)))
                        return Accepted(channel: wrapped, ingest: ingest, admitted: admitted)
                    } catch {
                        self.connectionCount.subtract(1, ordering: .relaxed)  // never served
                        throw error
                    }
                }
            }
        do {
            try SocketFile.applyPermissions(path, mode: config.socketMode, group: config.socketGroup)
        } catch {
            try? await server.channel.close()
            removeSocketFile()
            throw error
        }
        logger.info("listening", metadata: ["hookbus.socket": "\(path)", "hookbus.socket_mode": "\(String(config.socketMode, radix: 8))"])
        onReady()

        let serverChannel = server.channel
        let forceClose = Mutex<Scheduled<Void>?>(nil)
        defer { forceClose.withLock { $0?.cancel() } }
        try await withGracefulShutdownHandler {
            try await server.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { tasks in
                    for try await accepted in inbound {
                        tasks.addTask { await self.serve(accepted) }
                    }
                }
            }
        } onGracefulShutdown: {
            self.logger.info("shutting down: no new connections; answering what was read")
            self.draining.store(true, ordering: .sequentiallyConsistent)
            serverChannel.close(promise: nil)
            let open = self.connections.withLock { Array($0.values) }
            for channel in open {
                channel.pipeline.fireUserInboundEventTriggered(DrainEvent())
            }
            let scheduled = serverChannel.eventLoop.scheduleTask(in: Self.drainTimeout) {
                for channel in self.connections.withLock({ Array($0.values) }) { channel.close(promise: nil) }
            }
            forceClose.withLock { $0 = scheduled }
        }
        removeSocketFile()
        logger.info("listener stopped")
    }

    private func removeSocketFile() {
        _ = config.socketPath.withCString { unlink($0) }
    }

    /// An accepted connection, ready to serve.
    private struct Accepted: Sendable {
        var channel: NIOAsyncChannel<FrameBatch, ConnectionOutput>
        var ingest: Ingest
        /// Within `max_connections` (counted when it was accepted).
        var admitted: Bool
    }

    private func connectionLogger(producer: Producer) -> Logger {
        let id = nextConnectionID.add(1, ordering: .relaxed).oldValue
        var logger = self.logger
        logger[metadataKey: "hookbus.connection"] = "\(id)"
        logger[metadataKey: "hookbus.peer.uid"] = "\(producer.uid)"
        logger[metadataKey: "hookbus.peer.pid"] = "\(producer.pid)"
        return logger
    }

    private func serve(_ accepted: Accepted) async {
        let channel = accepted.channel
        let logger = accepted.ingest.logger
        let key = ObjectIdentifier(channel.channel)
        defer { connectionCount.subtract(1, ordering: .relaxed) }
        if !accepted.admitted {
            if let suppressed = connectionRefusalLog.admit() {
                var metadata: Logger.Metadata = ["hookbus.limit": "\(config.limits.maxConnections)"]
                if suppressed > 0 { metadata["hookbus.suppressed"] = "\(suppressed)" }
                logger.warning("connection refused: too many connections", metadata: metadata)
            }
            var out = JSONWriter()
            Reply.error(WireError(.unavailable, "too_many_connections",
                                  "the broker serves at most \(config.limits.maxConnections) connections (max_connections); try again later"),
                        into: &out)
            try? await channel.executeThenClose { _, outbound in
                try await outbound.write(.bytes(ByteBuffer(bytes: out.bytes)))
            }
            return
        }
        connections.withLock { $0[key] = channel.channel }
        if draining.load(ordering: .sequentiallyConsistent) {
            // Accepted just as shutdown began, after the drain was broadcast.
            channel.channel.pipeline.fireUserInboundEventTriggered(DrainEvent())
        }
        defer { connections.withLock { _ = $0.removeValue(forKey: key) } }
        logger.debug("connection opened")
        await Connection(channel: channel, ingest: accepted.ingest, commands: commands).serve()
        logger.debug("connection closed")
    }
}

#if canImport(Glibc)
import Glibc
#endif
