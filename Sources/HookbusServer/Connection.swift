import HookbusCore
import Logging
import NIOCore

/// One client connection: reads batches of lines, answers every line in order
/// with one reply, and writes the replies of a batch at once.
///
/// A connection that subscribes (`{"op":"subscribe"}`) also runs that
/// subscription's runner as a child task; it pushes delivery lines on the same
/// connection and takes `ack` / `nack` lines, which get no reply.
///
/// Never throws: a broken client ends its own connection and nothing else.
struct Connection: Sendable {
    let channel: NIOAsyncChannel<FrameBatch, ConnectionOutput>
    let ingest: Ingest
    let commands: CommandRouter
    var producer: Producer { ingest.producer }
    var logger: Logger { ingest.logger }

    /// The subscription a connection holds, once it subscribed.
    struct Subscription {
        var runner: SubscriberRunner
        var deliverer: SocketDeliverer
        var durable: Bool
        var token: Int
    }

    func serve() async {
        do {
            try await channel.executeThenClose { inbound, outbound in
                var subscription: Subscription?
                var running = false
                defer {
                    if let subscription {
                        commands.dispatcher.unlisten(subscription.token)
                        // Its runner never started (the subscribe reply could not be
                        // written): give the name and the cursor back here.
                        if !running { commands.dispatcher.release(subscription.runner, durable: subscription.durable) }
                    }
                }
                try await withThrowingDiscardingTaskGroup { group in
                    // However the loop ends, the subscription ends with it: what
                    // waits for an ack fails (and is retried), the runner stops.
                    defer {
                        if let subscription {
                            // Stop first, so the runner starts nothing new once the
                            // failures of what was waiting come in.
                            subscription.runner.stop()
                            subscription.deliverer.close()
                        }
                    }
                    do {
                        for try await batch in inbound {
                            var started: SubscriberRunner?
                            let replies = await answer(batch.frames, subscription: &subscription, outbound: outbound, started: &started)
                            do {
                                // The event loop's fast path waits for the end mark before it
                                // answers again. Written after the replies, in their order; a
                                // batch without replies (acks) sends it past the writer, which
                                // may be waiting for the client to read its deliveries.
                                if replies.isEmpty {
                                    channel.channel.triggerUserOutboundEvent(BatchAnsweredEvent(), promise: nil)
                                } else {
                                    try await outbound.write(.bytes(ByteBuffer(bytes: replies)))
                                    try await outbound.write(.batchAnswered)
                                }
                            } catch {
                                // The client is gone. End the loop without throwing, so a
                                // subscription ends as it should (stopped by the defers above,
                                // what waited for an ack failed and recorded) rather than
                                // cancelled mid-way.
                                logger.debug("cannot write to the connection", metadata: ["hookbus.error": "\(error)"])
                                break
                            }
                            // Deliveries start only once the subscribe reply is written.
                            if let runner = started {
                                let durable = subscription?.durable ?? false
                                running = true
                                group.addTask {
                                    await runner.run()
                                    commands.dispatcher.release(runner, durable: durable)
                                }
                            }
                            if batch.isLast { break }
                        }
                    } catch {
                        // The client is gone (a reset, say): end like any other end
                        // of input, so a subscription stops cleanly, not cancelled.
                        logger.debug("cannot read from the connection", metadata: ["hookbus.error": "\(error)"])
                    }
                }
            }
        } catch {
            logger.debug("connection ended with an error", metadata: ["hookbus.error": "\(error)"])
        }
    }

    /// The reply bytes for one batch: events are committed together, then every
    /// line is answered in the order it came.
    func answer(
        _ frames: [Frame], subscription: inout Subscription?,
        outbound: NIOAsyncChannelOutboundWriter<ConnectionOutput>, started: inout SubscriberRunner?
    ) async -> [UInt8] {
        let requests = ingest.decode(frames)
        let committed = await ingest.committer.commit(Ingest.events(of: requests))

        var out = JSONWriter(capacity: 48 * requests.count)
        var eventIndex = 0
        for request in requests {
            if ingest.reply(to: request, eventIndex: &eventIndex, committed: committed, into: &out) { continue }
            guard case .command(let command) = request else { continue }
            switch command.op {
            case "ack", "nack":
                acknowledge(command, subscription: subscription, into: &out)
            case "subscribe":
                if subscription != nil {
                    Reply.error(WireError(.badRequest, "already_subscribed", attribute: "op",
                                          "this connection already holds a subscription; open another connection"), into: &out)
                    continue
                }
                let disconnect: @Sendable () -> Void = { [channel = channel.channel] in channel.close(promise: nil) }
                switch commands.subscribe(command, producer: producer, outbound: outbound, logger: logger, disconnect: disconnect) {
                case .success(let (runner, deliverer, durable, cursor)):
                    let token = commands.dispatcher.listen(runner)
                    subscription = Subscription(runner: runner, deliverer: deliverer, durable: durable, token: token)
                    started = runner
                    Reply.ok(op: "subscribe", into: &out) { out in
                        out.key("subscriber"); out.string(runner.subscriber.name)
                        out.key("durable"); out.bool(durable)
                        out.key("window"); out.int(runner.subscriber.concurrency)
                        out.key("cursor"); out.int(cursor)
                    }
                case .failure(let error):
                    Reply.error(error, into: &out)
                }
            default:
                await commands.handle(command, producer: producer, into: &out)
            }
        }
        return out.bytes
    }

    /// `ack` and `nack` get no reply when valid; a malformed one is refused.
    private func acknowledge(_ command: Command, subscription: Subscription?, into out: inout JSONWriter) {
        guard let subscription else {
            Reply.error(WireError(.badRequest, "not_subscribed", attribute: "op",
                                  "\(command.op) without a subscription on this connection"), into: &out)
            return
        }
        guard let member = command.member("delivery"), member.kind == .number,
              let id = Int(command.text(of: member)) else {
            Reply.error(WireError(.badRequest, "missing_delivery", attribute: "delivery",
                                  "\(command.op) needs the integer 'delivery' of the delivery line it answers"), into: &out)
            return
        }
        let known: Bool
        if command.op == "ack" {
            known = subscription.deliverer.ack(id)
        } else {
            let retry = command.member("retry").map { command.text(of: $0) != "false" } ?? true
            known = subscription.deliverer.nack(id, retry: retry, error: command.member("error")?.string)
        }
        if !known {
            logger.debug("ack or nack for a delivery not waiting", metadata: ["hookbus.delivery": "\(id)"])
        }
    }
}
