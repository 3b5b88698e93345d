import Foundation
import Logging
import Testing
@testable import HookbusCore

/// The in-memory copy of the latest commits that dispatch reads instead of the
/// outbox: it must answer exactly what the outbox would, or send the reader to
/// the outbox.
@Suite("RecentEvents")
struct RecentEventsTests {
    private static let quiet = Logger(label: "hookbus.tests") { _ in SwiftLogNoOpLogHandler() }

    @Test("after commits with duplicates, every read answers what the outbox holds")
    func matchesTheOutbox() async throws {
        try await withTemporaryDirectory { directory in
            let store = try Store(path: directory.appendingPathComponent("hookbus.db").path, durability: .normal)
            let committer = Committer(store: store, logger: Self.quiet)
            committer.recent.addReader()
            // Duplicates inside a commit and across commits.
            _ = await committer.commit([makeEvent(id: "a"), makeEvent(id: "b"), makeEvent(id: "a"), makeEvent(id: "c")])
            _ = await committer.commit([makeEvent(id: "b"), makeEvent(id: "d"), makeEvent(id: "e", type: "other.kind")])
            let last = try store.lastSeq()
            for after in Int64(0)...last {
                let stored = try store.events(after: after, limit: 2)
                if let recent = committer.recent.events(after: after, limit: 2) {
                    #expect(recent == stored, "after \(after)")
                } else {
                    // Only past the end may it send the reader to the outbox.
                    #expect(stored.isEmpty, "after \(after): the outbox has \(stored.map(\.seq))")
                }
            }
            #expect(committer.recent.events(after: 0, limit: 10)?.map(\.id) == ["a", "b", "c", "d", "e"])
        }
    }

    @Test("a write to the outbox that did not go through the committer starts the coverage again")
    func outsideWriteResets() async throws {
        try await withTemporaryDirectory { directory in
            let store = try Store(path: directory.appendingPathComponent("hookbus.db").path, durability: .normal)
            let committer = Committer(store: store, logger: Self.quiet)
            committer.recent.addReader()
            _ = await committer.commit([makeEvent(id: "a")])
            _ = try store.append([makeEvent(id: "outside")])
            _ = await committer.commit([makeEvent(id: "b")])
            // seq 2 is not in memory: reading after 1 (or 0) goes to the outbox.
            #expect(committer.recent.events(after: 0, limit: 10) == nil)
            #expect(committer.recent.events(after: 1, limit: 10) == nil)
            #expect(committer.recent.events(after: 2, limit: 10)?.map(\.id) == ["b"])
            #expect(try store.events(after: 1, limit: 10).map(\.id) == ["outside", "b"])
        }
    }

    @Test("with no reader the committer keeps nothing; once one comes, coverage starts at the next commit")
    func keptOnlyWhileRead() async throws {
        try await withTemporaryDirectory { directory in
            let store = try Store(path: databasePath(in: directory), durability: .normal)
            let committer = Committer(store: store, logger: Self.quiet)
            _ = await committer.commit([makeEvent(id: "a"), makeEvent(id: "b")])
            #expect(committer.recent.count == 0)
            #expect(committer.recent.events(after: 0, limit: 10) == nil)
            committer.recent.addReader()
            _ = await committer.commit([makeEvent(id: "c")])
            // a and b were committed while nobody read: the reader gets them from the outbox.
            #expect(committer.recent.events(after: 0, limit: 10) == nil)
            #expect(committer.recent.events(after: 2, limit: 10)?.map(\.id) == ["c"])
            committer.recent.removeReader()
            // The last reader gone, the ring is emptied (and freed there).
            #expect(committer.recent.count == 0 && committer.recent.heldEvents == 0)
            #expect(committer.recent.events(after: 2, limit: 10) == nil)
            _ = await committer.commit([makeEvent(id: "d")])
            committer.recent.addReader()
            _ = await committer.commit([makeEvent(id: "e")])
            // d was not handed over: what is kept starts again after it.
            #expect(committer.recent.events(after: 2, limit: 10) == nil)
            #expect(committer.recent.events(after: 4, limit: 10)?.map(\.id) == ["e"])
            // Two readers: the ring stays until the second leaves.
            committer.recent.addReader()
            committer.recent.removeReader()
            #expect(committer.recent.count == 1)
            committer.recent.removeReader()
            #expect(committer.recent.count == 0)
            #expect(try store.events(after: 2, limit: 10).map(\.id) == ["c", "d", "e"])
        }
    }

    @Test("bounded by count and bytes: the oldest submissions go first and their seqs are no longer covered")
    func bounded() {
        func submission(_ seqs: [Int64], bytes: Int = 10) -> (events: [NewEvent], outcomes: [AppendOutcome]) {
            let events = seqs.map { makeEvent(id: "e\($0)", data: "\"\(String(repeating: "x", count: bytes))\"") }
            return (events, zip(seqs, events).map { .stored(seq: $0, id: $1.id) })
        }
        let recent = RecentEvents(capacity: 3, maxBytes: 1 << 20)
        recent.committed([submission([1, 2])], after: 0, through: 2)
        recent.committed([submission([3]), submission([4])], after: 2, through: 4)
        // Four kept is one too many: the oldest submission (1 and 2) goes.
        #expect(recent.count == 2)
        #expect(recent.events(after: 1, limit: 10) == nil)
        #expect(recent.events(after: 2, limit: 10)?.map(\.seq) == [3, 4])
        #expect(recent.events(after: 2, limit: 1)?.map(\.seq) == [3])
        #expect(recent.events(after: 3, limit: 10)?.map(\.seq) == [4])
        #expect(recent.events(after: 4, limit: 10) == nil)
        let small = RecentEvents(capacity: 100, maxBytes: 1000)
        small.committed([submission([1], bytes: 600), submission([2], bytes: 600)], after: 0, through: 2)
        #expect(small.count == 1)
        #expect(small.events(after: 1, limit: 10)?.map(\.seq) == [2])
        #expect(small.events(after: 0, limit: 10) == nil)
    }

    @Test("with no reader, dropped submissions are freed as they go, never more than a quarter of capacity waiting")
    func droppedEventsAreFreedAsTheyGo() {
        // Thousands of dropped events freed in one go took milliseconds on the
        // committer's thread, and every event that came meanwhile waited.
        let recent = RecentEvents(capacity: 60, maxBytes: 1 << 20)
        var peak = 0
        for seq in Int64(1)...2_000 {
            let event = makeEvent(id: "e\(seq)")
            recent.committed([([event], [.stored(seq: seq, id: event.id)])], after: seq - 1, through: seq)
            peak = max(peak, recent.heldEvents)
        }
        #expect(recent.count == 60)
        // 60 kept, at most 15 dropped waiting for a reader.
        #expect(peak == 75, "events held at most: \(peak)")
        #expect(recent.events(after: 1_940, limit: 100)?.map(\.seq) == Array(1_941...2_000))
        // That reader freed the dropped ones.
        #expect(recent.heldEvents == 60)
    }

    @Test("a reader frees what the committer dropped, and the bytes bound the dropped ones too")
    func readersFreeDroppedEvents() {
        let recent = RecentEvents(capacity: 60, maxBytes: 1 << 20)
        for seq in Int64(1)...70 {
            let event = makeEvent(id: "e\(seq)")
            recent.committed([([event], [.stored(seq: seq, id: event.id)])], after: seq - 1, through: seq)
        }
        #expect(recent.heldEvents == 70)
        #expect(recent.events(after: 69, limit: 10)?.map(\.seq) == [70])
        #expect(recent.heldEvents == 60)
        // Large events: the dropped ones are bounded by bytes as well.
        let big = RecentEvents(capacity: 100, maxBytes: 20_000)
        for seq in Int64(1)...40 {
            let event = makeEvent(id: "b\(seq)", data: "\"\(String(repeating: "x", count: 2_000))\"")
            big.committed([([event], [.stored(seq: seq, id: event.id)])], after: seq - 1, through: seq)
        }
        // 8 kept (about 18,500 of the 20,000 bytes) and 2 dropped waiting (5,000 bytes), not 25 (a quarter of capacity).
        #expect(big.count == 8 && big.heldEvents == 10, "kept \(big.count), held \(big.heldEvents)")
    }
}
