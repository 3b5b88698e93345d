import HookbusCore
@testable import HookbusServer
import Testing

@Suite("RetryQueue: retries in seq order")
struct RetryQueueTests {
    static func row(_ seq: Int64, at time: Int64 = 0) -> RetryRow {
        RetryRow(seq: seq, attempt: 1, nextAttemptAt: time, lastError: nil, replay: false)
    }

    @Test("rows inserted and loaded in any order come out in seq order; a row given again replaces the old one")
    func order() {
        var queue = RetryQueue()
        queue.insert(Self.row(5))
        queue.load([Self.row(9), Self.row(2), Self.row(5, at: 7)])
        queue.insert(Self.row(3))
        #expect(queue.order == [2, 3, 5, 9] && queue.count == 4)
        #expect(queue[5]?.nextAttemptAt == 7)
    }

    @Test("a scan takes due rows from the lowest seq while places last; a row not due holds its place; a dropped one takes none; stop keeps the rest")
    func scan() {
        var queue = RetryQueue()
        queue.load([Self.row(1, at: 50), Self.row(2), Self.row(3), Self.row(4), Self.row(5, at: 20)])
        // Two places: seq 1 (not due) holds one, seq 2 takes the other.
        var seen: [Int64] = []
        var earliest = queue.scan(places: 2, now: 10) { row, _ in seen.append(row.seq); return .launched }
        #expect(seen == [2] && earliest == 50 && queue.order == [1, 3, 4, 5])
        // Dropped rows take no place: 3 dropped, 4 launched, then 5 (not due) holds the last place.
        seen = []
        earliest = queue.scan(places: 2, now: 10) { row, _ in
            seen.append(row.seq)
            return row.seq == 3 ? .dropped : .launched
        }
        #expect(seen == [3, 4] && earliest == 50 && queue.order == [1, 5])
        // Stop: the row stays, and so does everything after it.
        queue.insert(Self.row(6))
        earliest = queue.scan(places: 3, now: 100) { _, _ in .stop }
        #expect(earliest == nil && queue.order == [1, 5, 6] && queue.count == 3)
        // No place: nothing is looked at.
        seen = []
        earliest = queue.scan(places: 0, now: 100) { row, _ in seen.append(row.seq); return .launched }
        #expect(seen.isEmpty && earliest == nil && queue.count == 3)
    }

    @Test("a due row's look-ahead gives the seqs of the due rows from it on, in order, up to the limit")
    func lookahead() {
        var queue = RetryQueue()
        // Seqs 1...300: every tenth not due yet.
        queue.load((1...300).map { Self.row(Int64($0), at: $0 % 10 == 0 ? 50 : 0) })
        var upcoming: [[Int64]] = []
        _ = queue.scan(places: 2, now: 10) { _, ahead in
            upcoming.append(ahead())
            return .launched
        }
        let due = (1...300).filter { $0 % 10 != 0 }.map(Int64.init)
        #expect(upcoming.count == 2)
        #expect(upcoming[0] == Array(due.prefix(RetryQueue.lookahead)))
        // The second starts at the row after the first: seq 1 is taken.
        #expect(upcoming[1] == Array(due.dropFirst().prefix(RetryQueue.lookahead)))
        // Near the end there are fewer.
        var tail = RetryQueue()
        tail.load([Self.row(7), Self.row(8, at: 50), Self.row(9)])
        var last: [Int64] = []
        _ = tail.scan(places: 1, now: 10) { _, ahead in
            last = ahead()
            return .launched
        }
        #expect(last == [7, 9])
    }
}
