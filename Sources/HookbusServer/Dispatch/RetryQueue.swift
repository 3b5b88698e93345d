import HookbusCore

/// A subscriber's retries waiting for their time, by seq, in seq order.
///
/// `fill` looks at the lowest seqs only (a waiting retry holds one of the
/// subscriber's places, and the places go to the lowest seqs), so it must not
/// sort every row each time: a replay loads 10,000 rows at once, and sorting
/// them for each delivery made a replay of 20,000 events take nine times as
/// long as their first delivery.
struct RetryQueue {
    private(set) var rows: [Int64: RetryRow] = [:]
    /// The seqs of `rows`, ascending.
    private(set) var order: [Int64] = []

    var count: Int { rows.count }
    var isEmpty: Bool { rows.isEmpty }

    subscript(seq: Int64) -> RetryRow? { rows[seq] }

    /// Adds or replaces the row of `row.seq`.
    mutating func insert(_ row: RetryRow) {
        if rows.updateValue(row, forKey: row.seq) == nil {
            order.insert(row.seq, at: Self.insertionIndex(of: row.seq, in: order))
        }
    }

    /// Adds or replaces many rows (a load from the database).
    mutating func load(_ loaded: [RetryRow]) {
        var added = false
        for row in loaded where rows.updateValue(row, forKey: row.seq) == nil {
            order.append(row.seq)
            added = true
        }
        if added { order.sort() }
    }

    /// What `scan`'s body did with a due row.
    enum Taken {
        /// Started: the row leaves the queue and takes a place.
        case launched
        /// Dropped (its event is gone): the row leaves the queue, no place taken.
        case dropped
        /// Not now (storage trouble): the row and those after it stay; the scan ends.
        case stop
    }

    /// Goes through the lowest seqs while `places` last: a row not yet due
    /// keeps its place and stays; a due row goes to `body`, with what gives the
    /// seqs of the due rows from it on (up to `lookahead`, it first), whose
    /// events the body may read at once. Returns the earliest time of the rows
    /// that kept a place (for the next wake-up).
    mutating func scan(places: Int, now: Int64, _ body: (RetryRow, _ upcoming: () -> [Int64]) -> Taken) -> Int64? {
        var places = places
        var index = 0
        var kept: [Int64] = []
        var earliest: Int64?
        scanning: while places > 0 && index < order.count {
            let seq = order[index]
            guard let row = rows[seq] else {
                index += 1
                continue
            }
            if row.nextAttemptAt > now {
                kept.append(seq)
                earliest = min(earliest ?? .max, row.nextAttemptAt)
                places -= 1
                index += 1
                continue
            }
            switch body(row, { self.due(from: index, now: now) }) {
            case .launched:
                rows.removeValue(forKey: seq)
                places -= 1
                index += 1
            case .dropped:
                rows.removeValue(forKey: seq)
                index += 1
            case .stop:
                break scanning
            }
        }
        // One move of the array for the whole scan, not one per row taken.
        order.replaceSubrange(0..<index, with: kept)
        return earliest
    }

    /// Due rows looked ahead at most: what one read of their events takes.
    static let lookahead = 64

    /// The seqs of the due rows from `order[start]` on, up to `lookahead`,
    /// looking at no more than four times that many rows.
    func due(from start: Int, now: Int64) -> [Int64] {
        var seqs: [Int64] = []
        var index = start
        while seqs.count < Self.lookahead && index < order.count && index - start < 4 * Self.lookahead {
            if let row = rows[order[index]], row.nextAttemptAt <= now { seqs.append(row.seq) }
            index += 1
        }
        return seqs
    }

    static func insertionIndex(of seq: Int64, in order: [Int64]) -> Int {
        var low = 0, high = order.count
        while low < high {
            let middle = (low + high) / 2
            if order[middle] < seq { low = middle + 1 } else { high = middle }
        }
        return low
    }
}
