import GRDB

/// Which stored events to hand again to which subscribers.
public struct ReplaySelection: Sendable, Equatable {
    public var fromSeq: Int64?
    public var toSeq: Int64?
    /// Receipt time bounds, microseconds since the epoch, inclusive.
    public var since: Int64?
    public var until: Int64?
    public var types: [TypeFilter] = []
    /// Named subscribers; empty means every subscriber whose types match.
    public var subscribers: [String] = []

    public init() {}
}

/// What a replay does: for each subscriber, the seqs it will get again.
public struct ReplayPlan: Sendable, Equatable {
    public var deliveries: [(subscriber: String, seqs: [Int64])]
    public var events: Int

    public var total: Int { deliveries.reduce(0) { $0 + $1.seqs.count } }

    public static func == (lhs: ReplayPlan, rhs: ReplayPlan) -> Bool {
        lhs.events == rhs.events && lhs.deliveries.map(\.subscriber) == rhs.deliveries.map(\.subscriber)
            && lhs.deliveries.map(\.seqs) == rhs.deliveries.map(\.seqs)
    }
}

extension Store {
    /// The subscribers this database knows: the configured ones, plus durable
    /// socket subscribers recorded by earlier connections.
    public func knownSubscribers(configured: [SubscriberInfo]) throws -> [SubscriberInfo] {
        let recorded = try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT subscriber, kind, types FROM subscriber_cursors WHERE kind = 'socket'")
                .map { row -> SubscriberInfo in
                    let text: String = row["types"] ?? "[]"
                    let filters = Self.decodeFilters(text)
                    return SubscriberInfo(name: row["subscriber"], kind: "socket", types: filters)
                }
        }
        let names = Set(configured.map(\.name))
        return configured + recorded.filter { !names.contains($0.name) && !$0.name.hasPrefix("~") }
    }

    /// Works out a replay without changing anything.
    /// - Throws: `OperatorError` for an unknown subscriber or an empty selection.
    public func planReplay(_ selection: ReplaySelection, subscribers known: [SubscriberInfo]) throws -> ReplayPlan {
        var targets = known
        if !selection.subscribers.isEmpty {
            targets = []
            for name in selection.subscribers {
                guard let subscriber = known.first(where: { $0.name == name }) else {
                    throw OperatorError("unknown_subscriber", "no subscriber named \"\(EventValidator.clipped(name))\"; known: "
                        + (known.map(\.name).sorted().joined(separator: ", ").nonEmpty ?? "none"))
                }
                targets.append(subscriber)
            }
        }
        var conditions: [String] = []
        var arguments: [any DatabaseValueConvertible] = []
        if let from = selection.fromSeq { conditions.append("seq >= ?"); arguments.append(from) }
        if let to = selection.toSeq { conditions.append("seq <= ?"); arguments.append(to) }
        if let since = selection.since { conditions.append("received_at >= ?"); arguments.append(since) }
        if let until = selection.until { conditions.append("received_at <= ?"); arguments.append(until) }
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let rows = try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT seq, type FROM outbox \(whereClause) ORDER BY seq",
                             arguments: StatementArguments(arguments)).map { (seq: $0["seq"] as Int64, type: $0["type"] as String) }
        }
        let events = rows.filter { selection.types.isEmpty || selection.types.matches($0.type) }
        var plan = ReplayPlan(deliveries: [], events: 0)
        var touched = Set<Int64>()
        for subscriber in targets {
            let seqs = events.filter { subscriber.types.matches($0.type) }.map(\.seq)
            guard !seqs.isEmpty else { continue }
            touched.formUnion(seqs)
            plan.deliveries.append((subscriber.name, seqs))
        }
        plan.events = touched.count
        guard plan.total > 0 else {
            throw OperatorError("empty_selection", events.isEmpty
                ? "no stored event matches the selection"
                : "\(events.count) event(s) match the selection but no selected subscriber takes their types")
        }
        return plan
    }

    /// Queues the plan's deliveries, marked as replays, due now. A delivery
    /// already waiting for a retry is made due now and marked as a replay.
    /// - Returns: the number of deliveries queued.
    @discardableResult
    public func applyReplay(_ plan: ReplayPlan, nowMicros: Int64 = Timestamp.nowMicros()) throws -> Int {
        try pool.write { db in
            let statement = try db.cachedStatement(sql: """
                INSERT INTO retries (subscriber, seq, attempt, next_attempt_at, replay) VALUES (?, ?, 0, ?, 1)
                ON CONFLICT (subscriber, seq) DO UPDATE SET next_attempt_at = excluded.next_attempt_at, replay = 1
                """)
            for (subscriber, seqs) in plan.deliveries {
                for seq in seqs { try statement.execute(arguments: [subscriber, seq, nowMicros]) }
            }
            return plan.total
        }
    }

    /// Records what a socket subscriber asked for, so it is known while away.
    public func recordSocketSubscriber(_ name: String, types: [TypeFilter]) throws {
        var out = JSONWriter()
        out.beginArray()
        for filter in types { out.string(filter.description) }
        out.endArray()
        let text = String(decoding: out.bytes, as: UTF8.self)
        try pool.write { db in
            try db.execute(sql: "UPDATE subscriber_cursors SET kind = 'socket', types = ? WHERE subscriber = ?",
                           arguments: [text, name])
        }
    }

    /// Forgets every live (unnamed) subscription: at startup none is connected.
    public func forgetEphemeralSubscribers() throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM subscriber_cursors WHERE subscriber LIKE '~%'")
            try db.execute(sql: "DELETE FROM retries WHERE subscriber LIKE '~%'")
        }
    }

    /// Forgets an ephemeral subscriber: its cursor and whatever it still owed.
    public func forgetSubscriber(_ name: String) throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM subscriber_cursors WHERE subscriber = ?", arguments: [name])
            try db.execute(sql: "DELETE FROM retries WHERE subscriber = ?", arguments: [name])
        }
    }

    static func decodeFilters(_ json: String) -> [TypeFilter] {
        let texts = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String] ?? []
        return texts.compactMap { try? TypeFilter.parse($0).get() }
    }
}

extension String {
    var nonEmpty: String? { isEmpty ? nil : self }
}

import Foundation
