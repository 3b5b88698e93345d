import HookbusCore
import Logging
import NIOCore

/// One client connection: reads batches of lines, answers every line in order
/// with one reply, and writes the replies of a batch at once.
///
/// Never throws: a broken client ends its own connection and nothing else.
struct Connection: Sendable {
    let channel: NIOAsyncChannel<FrameBatch, ByteBuffer>
    let producer: Producer
    let decoder: RequestDecoder
    let committer: Committer
    let commands: CommandRouter
    let logger: Logger

    func serve() async {
        do {
            try await channel.executeThenClose { inbound, outbound in
                for try await batch in inbound {
                    let replies = await answer(batch.frames)
                    if !replies.isEmpty {
                        try await outbound.write(ByteBuffer(bytes: replies))
                    }
                    if batch.isLast { break }
                }
            }
        } catch {
            logger.debug("connection ended with an error", metadata: ["hookbus.error": "\(error)"])
        }
    }

    /// The reply bytes for one batch: events are committed together, then every
    /// line is answered in the order it came.
    func answer(_ frames: [Frame]) async -> [UInt8] {
        let now = Timestamp.nowMicros()
        let requests = frames.map { decoder.decode($0, producer: producer, nowMicros: now) }
        var events: [NewEvent] = []
        for case .publish(let event) in requests { events.append(event) }
        let committed = await committer.commit(events)

        var out = JSONWriter(capacity: 48 * requests.count)
        var eventIndex = 0
        for request in requests {
            switch request {
            case .publish:
                switch committed {
                case .success(let outcomes): Reply.published(outcomes[eventIndex], into: &out)
                case .failure(let error): Reply.error(error, into: &out)
                }
                eventIndex += 1
            case .refused(let error):
                logger.debug("line refused", metadata: ["hookbus.error.reason": "\(error.reason)"])
                Reply.error(error, into: &out)
            case .command(let command):
                await commands.handle(command, producer: producer, into: &out)
            }
        }
        return out.bytes
    }
}
