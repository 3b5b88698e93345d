import HookbusCore
import Logging
import NIOCore

/// Where a connection's events go to be stored: the `Committer`, or a
/// stand-in that decides when commits finish (the handler's unit tests).
protocol EventCommitting: Sendable {
    func submit(events: [NewEvent], ops: [LedgerOp], mayWriteInline: Bool,
                completion: @escaping @Sendable (Committer.Outcome) -> Void)
}

extension Committer: EventCommitting {}

extension EventCommitting {
    /// Stores `events` and returns their outcomes once committed.
    func commit(_ events: [NewEvent]) async -> Committer.Outcome {
        if events.isEmpty { return .success([]) }
        return await withCheckedContinuation { continuation in
            submit(events: events, ops: [], mayWriteInline: false) { continuation.resume(returning: $0) }
        }
    }
}

/// Decoding and answering of a connection's lines, shared by the event-loop
/// fast path (`IngestHandler`) and the async `Connection`.
struct Ingest: Sendable {
    let decoder: RequestDecoder
    let producer: Producer
    let access: AccessPolicy
    let committer: any EventCommitting
    let logger: Logger
    /// Shared by all connections: refusals logged at `warning` are bounded.
    var refusalLog = LogLimiter()

    /// Every line of a batch decoded, with the access rules applied.
    func decode(_ frames: [Frame]) -> [Request] {
        let now = Timestamp.nowMicros()
        return frames.map { decode($0, nowMicros: now) }
    }

    /// One line decoded, with the access rules applied.
    private func decode(_ frame: Frame, nowMicros now: Int64) -> Request {
        let request = decoder.decode(frame, producer: producer, nowMicros: now)
        switch request {
        case .publish(let event):
            if let refusal = access.checkPublish(producer, type: event.type) { return .refused(refusal) }
        case .command(let command) where AccessPolicy.isOperatorCommand(command.op):
            if let refusal = access.checkOperate(producer, op: command.op) { return .refused(refusal) }
        default:
            break
        }
        return request
    }

    /// What a publish-only batch needs kept to answer it: per line, an event
    /// or the refusal (the events themselves go to the committer).
    enum Slot: Sendable {
        case event
        case refused(WireError)
    }

    /// A batch decoded for the event loop's fast path, if every line is an
    /// event or a refusal (the access rules applied as in `decode`): the
    /// events in order, and a slot per line. nil as soon as a line is a
    /// command the rules let through: the batch then goes to `Connection`,
    /// which decodes it again (`decode`) and answers it in order.
    ///
    /// Each event goes straight into `events`: taking it out of a `Request`
    /// afterwards copied it, a retain and a release for each of its six
    /// strings and arrays (swift_retain and swift_release were a quarter of
    /// the event loops' samples at 4 × 64).
    func decodePublishOnly(_ frames: [Frame]) -> (events: [NewEvent], slots: [Slot])? {
        let now = Timestamp.nowMicros()
        var events: [NewEvent] = []
        var slots: [Slot] = []
        events.reserveCapacity(frames.count)
        slots.reserveCapacity(frames.count)
        for frame in frames {
            switch decode(frame, nowMicros: now) {
            case .publish(let event):
                events.append(event)
                slots.append(.event)
            case .refused(let error):
                slots.append(.refused(error))
            case .command:
                return nil
            }
        }
        return (events, slots)
    }

    /// The events of a batch, in order.
    static func events(of requests: [Request]) -> [NewEvent] {
        var events: [NewEvent] = []
        events.reserveCapacity(requests.count)
        for case .publish(let event) in requests { events.append(event) }
        return events
    }

    /// The reply to a refused line, logged as it deserves.
    func refuse(_ error: WireError, into out: inout JSONWriter) {
        if error.code == .unauthorized {
            if let suppressed = refusalLog.admit() {
                var metadata: Logger.Metadata = ["hookbus.error.reason": "\(error.reason)", "hookbus.error": "\(error.message)"]
                if suppressed > 0 { metadata["hookbus.suppressed"] = "\(suppressed)" }
                logger.warning("refused", metadata: metadata)
            }
        } else {
            logger.debug("line refused", metadata: ["hookbus.error.reason": "\(error.reason)"])
        }
        Reply.error(error, into: &out)
    }

    /// The replies of a publish-only batch, in line order, once its events
    /// were committed (or refused together).
    func answer(_ slots: [Slot], committed: Committer.Outcome) -> [UInt8] {
        var out = JSONWriter(capacity: 48 * slots.count)
        var eventIndex = 0
        for index in slots.indices {
            switch slots[index] {
            case .event:
                replyToEvent(eventIndex, committed: committed, into: &out)
                eventIndex += 1
            case .refused(let error):
                refuse(error, into: &out)
            }
        }
        return out.bytes
    }

    private func replyToEvent(_ eventIndex: Int, committed: Committer.Outcome, into out: inout JSONWriter) {
        switch committed {
        case .success(let outcomes): Reply.published(outcomes[eventIndex], into: &out)
        case .failure(let error): Reply.error(error, into: &out)
        }
    }

    /// Writes the reply to an event or a refused line and returns true; returns
    /// false (writing nothing) for a command. `eventIndex` counts the events
    /// answered so far, the index of this one's outcome in `committed`.
    func reply(to request: Request, eventIndex: inout Int, committed: Committer.Outcome, into out: inout JSONWriter) -> Bool {
        switch request {
        case .publish:
            replyToEvent(eventIndex, committed: committed, into: &out)
            eventIndex += 1
            return true
        case .refused(let error):
            refuse(error, into: &out)
            return true
        case .command:
            return false
        }
    }
}
