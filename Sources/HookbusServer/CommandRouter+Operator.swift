import Foundation
import HookbusCore
import Logging
import NIOCore

/// Operator commands: subscribe, replay and the dead letters.
extension CommandRouter {
    /// Reads a command's members with errors that name the member.
    struct Arguments {
        let command: Command

        func fail(_ name: String, _ expected: String) -> WireError {
            WireError(.badRequest, "wrong_type", attribute: name, "member '\(name)' of \(command.op) must be \(expected)")
        }

        func string(_ name: String) throws(WireError) -> String? {
            guard let member = command.member(name), member.kind != .null else { return nil }
            guard let text = member.string else { throw fail(name, "a string") }
            return text
        }

        func int(_ name: String) throws(WireError) -> Int64? {
            guard let member = command.member(name), member.kind != .null else { return nil }
            guard member.kind == .number, let value = Int64(command.text(of: member)) else { throw fail(name, "an integer") }
            return value
        }

        func bool(_ name: String) throws(WireError) -> Bool? {
            guard let member = command.member(name), member.kind != .null else { return nil }
            guard member.kind == .boolean else { throw fail(name, "true or false") }
            return command.text(of: member) == "true"
        }

        func list<T>(_ name: String, _ expected: String) throws(WireError) -> [T]? {
            guard let member = command.member(name), member.kind != .null else { return nil }
            let data = Data(command.text(of: member).utf8)
            guard member.kind == .array, let values = (try? JSONSerialization.jsonObject(with: data)) as? [T] else {
                throw fail(name, expected)
            }
            return values
        }

        /// An array of integers, read from the line's own text (no 1.9, no true).
        func integers(_ name: String) throws(WireError) -> [Int64]? {
            guard let member = command.member(name), member.kind != .null else { return nil }
            let text = command.text(of: member)
            guard member.kind == .array else { throw fail(name, "an array of integers") }
            let inner = text.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
            if inner.isEmpty { return [] }
            var values: [Int64] = []
            for part in inner.split(separator: ",") {
                guard let value = Int64(part.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                    throw fail(name, "an array of integers")
                }
                values.append(value)
            }
            return values
        }

        func filters(_ name: String) throws(WireError) -> [TypeFilter]? {
            guard let texts: [String] = try list(name, "an array of type filters") else { return nil }
            var filters: [TypeFilter] = []
            for text in texts {
                switch TypeFilter.parse(text) {
                case .success(let filter): filters.append(filter)
                case .failure(let problem):
                    throw WireError(.badRequest, "bad_type_filter", attribute: name, "type filter \"\(EventValidator.clipped(text))\": \(problem.reason)")
                }
            }
            return filters
        }

        func time(_ name: String) throws(WireError) -> Int64? {
            guard let text = try string(name) else { return nil }
            guard let micros = Timestamp.parse(text) else { throw fail(name, "an RFC 3339 time like 2026-11-23T04:30:00Z") }
            return micros
        }
    }

    /// Validates a `subscribe` and builds its runner (the connection runs it).
    func subscribe(
        _ command: Command, producer: Producer, outbound: NIOAsyncChannelOutboundWriter<ConnectionOutput>,
        logger: Logger, disconnect: @escaping @Sendable () -> Void
    ) -> Result<(SubscriberRunner, SocketDeliverer, Bool, Int64), WireError> {
        let arguments = Arguments(command: command)
        do throws(WireError) {
            let name = try arguments.string("name")
            // The same names the config file allows.
            if let name, !SubscriberConfig.isValidName(name) {
                throw WireError(.badRequest, "bad_name", attribute: "name",
                                "subscriber name must be 1 to 64 ASCII letters, digits, '-', '_' or '.'")
            }
            let types = try arguments.filters("types") ?? [.all]
            guard !types.isEmpty else { throw arguments.fail("types", "a non-empty array of type filters") }
            let window = try arguments.int("window") ?? 16
            guard (1...1024).contains(window) else { throw arguments.fail("window", "an integer from 1 to 1024") }
            let fromSeq = try arguments.int("from_seq")
            if fromSeq != nil && name != nil {
                throw WireError(.badRequest, "bad_request", attribute: "from_seq",
                                "from_seq is for unnamed (live) subscriptions; a named one resumes from its cursor")
            }
            let timeout = dispatcher.defaultTimeout
            let deadlines = dispatcher.deadlines
            do {
                let made = try dispatcher.makeSocketRunner(
                    name: name, types: types, window: Int(window), fromSeq: fromSeq,
                    deliverer: {
                        SocketDeliverer(name: $0, timeout: timeout, window: Int(window), deadlines: deadlines, logger: logger,
                                        outbound: outbound, disconnect: disconnect)
                    })
                return .success((made.runner, made.deliverer, made.durable, made.runner.stats.snapshot.cursor))
            } catch {
                throw error.wireError
            }
        } catch {
            return .failure(error)
        }
    }

    func replay(_ command: Command, into out: inout JSONWriter) {
        let arguments = Arguments(command: command)
        do throws(WireError) {
            var selection = ReplaySelection()
            selection.fromSeq = try arguments.int("from_seq")
            selection.toSeq = try arguments.int("to_seq")
            selection.since = try arguments.time("since")
            selection.until = try arguments.time("until")
            selection.types = try arguments.filters("types") ?? []
            selection.subscribers = Self.unique(try arguments.list("subscribers", "an array of subscriber names") ?? [])
            let dryRun = try arguments.bool("dry_run") ?? false
            let plan: ReplayPlan
            do {
                plan = try store.planReplay(selection, subscribers: try dispatcher.subscriberInfos())
                if !dryRun {
                    try store.applyReplay(plan)
                    dispatcher.reload(Set(plan.deliveries.map(\.subscriber)))
                }
            } catch let error as OperatorError {
                throw error.wireError
            } catch {
                throw WireError(.unavailable, "storage_failed", "replay failed: \(error)")
            }
            Reply.ok(op: "replay", into: &out) { out in
                out.key("dry_run"); out.bool(dryRun)
                out.key("events"); out.int(plan.events)
                out.key("deliveries"); out.int(plan.total)
                out.key("subscribers")
                out.beginArray()
                for (subscriber, seqs) in plan.deliveries {
                    out.beginObject()
                    out.key("name"); out.string(subscriber)
                    out.key("count"); out.int(seqs.count)
                    out.key("seqs")
                    out.beginArray()
                    for seq in seqs.prefix(1000) { out.int(seq) }
                    out.endArray()
                    out.endObject()
                }
                out.endArray()
            }
        } catch {
            Reply.error(error, into: &out)
        }
    }

    func deadLetters(_ command: Command, into out: inout JSONWriter) {
        let arguments = Arguments(command: command)
        do throws(WireError) {
            let subscriber = try arguments.string("subscriber")
            switch command.op {
            case "dlq.list":
                let limit = try arguments.int("limit") ?? 1000
                let (letters, total) = try storage { try store.deadLetters(subscriber: subscriber, limit: Int(max(1, limit))) }
                Reply.ok(op: command.op, into: &out) { out in
                    out.key("dead_letters")
                    out.beginArray()
                    for letter in letters { Self.write(letter, full: false, into: &out) }
                    out.endArray()
                    out.key("total"); out.int(total)
                }
            case "dlq.show":
                guard let id = try arguments.int("id") else { throw arguments.fail("id", "the id of a dead letter") }
                guard let letter = try storage({ try store.deadLetter(id: id) }) else {
                    throw WireError(.badRequest, "unknown_dead_letter", attribute: "id", "no dead letter with id \(id)")
                }
                Reply.ok(op: command.op, into: &out) { out in
                    out.key("dead_letter")
                    Self.write(letter, full: true, into: &out)
                }
            default:  // dlq.retry, dlq.purge
                // An id given twice is one dead letter (counted once, retried once).
                let ids = try arguments.integers("ids").map(Self.unique)
                let all = try arguments.bool("all") ?? false
                guard (ids != nil) != all else {
                    throw WireError(.badRequest, "bad_request", attribute: "ids", "give either 'ids' or \"all\":true")
                }
                let (chosen, skipped): ([DeadLetter], [DeadLetter]) = try storage {
                    if command.op == "dlq.purge" { return (try store.purgeDeadLetters(ids: ids, subscriber: subscriber), []) }
                    // Configured and durable socket subscribers. Not an unnamed
                    // subscription, even one connected now: it ends with its
                    // connection, which may be under way (its rows are then forgotten).
                    let known = Set(try dispatcher.subscriberInfos().map(\.name))
                    return try store.retryDeadLetters(ids: ids, subscriber: subscriber, known: known)
                }
                if command.op == "dlq.retry" { dispatcher.reload(Set(chosen.map(\.subscriber))) }
                dispatcher.deadLettersChanged(chosen)
                Reply.ok(op: command.op, into: &out) { out in
                    out.key("count"); out.int(chosen.count)
                    out.key("ids")
                    out.beginArray()
                    for letter in chosen { out.int(letter.id) }
                    out.endArray()
                    if command.op == "dlq.retry" {
                        out.key("skipped")
                        out.beginArray()
                        for letter in skipped { out.int(letter.id) }
                        out.endArray()
                    }
                }
            }
        } catch {
            Reply.error(error, into: &out)
        }
    }

    /// `values` without repeats, in their first order.
    static func unique<T: Hashable>(_ values: [T]) -> [T] {
        var seen = Set<T>()
        return values.filter { seen.insert($0).inserted }
    }

    private func storage<T>(_ body: () throws -> T) throws(WireError) -> T {
        do {
            return try body()
        } catch let error as OperatorError {
            throw error.wireError
        } catch {
            throw WireError(.unavailable, "storage_failed", "\(error)")
        }
    }

    static func write(_ letter: DeadLetter, full: Bool, into out: inout JSONWriter) {
        out.beginObject()
        out.key("id"); out.int(letter.id)
        out.key("subscriber"); out.string(letter.subscriber)
        out.key("seq"); out.int(letter.seq)
        out.key("event_id"); out.string(letter.eventID)
        out.key("event_type"); out.string(letter.eventType)
        out.key("attempts"); out.int(letter.attempts)
        out.key("reason"); out.string(letter.reason)
        out.key("last_error"); out.string(letter.lastError)
        out.key("first_failed_at"); out.string(Timestamp.format(micros: letter.firstFailedAt))
        out.key("last_failed_at"); out.string(Timestamp.format(micros: letter.lastFailedAt))
        out.key("replay"); out.bool(letter.replay)
        if full {
            out.key("errors"); out.raw(Array(letter.errors.utf8))
            out.key("event"); out.raw(Array(letter.event.utf8))
        }
        out.endObject()
    }
}
