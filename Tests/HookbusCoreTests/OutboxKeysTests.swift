import HookbusTestSupport
import Testing
@testable import HookbusCore

/// The in-memory idempotency index, against a plain dictionary.
@Suite("Outbox keys")
struct OutboxKeysTests {
    /// Every seq stored under `tag`.
    private static func all(_ keys: OutboxKeys, _ tag: UInt32) -> Set<Int64> {
        var found = Set<Int64>()
        _ = keys.first(tag: tag) { found.insert($0); return false }
        return found
    }

    @Test("random inserts and removals with few tags (long clusters, growth and shrinking) find exactly what a dictionary holds",
          arguments: [1 as UInt64, 2, 3])
    func againstADictionary(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var keys = OutboxKeys()
        var model: [Int64: UInt32] = [:]
        var next: Int64 = 1
        // Few tags make long runs of equal and neighbouring homes.
        let top = UInt32(1) << OutboxKeys.tagBits
        let tagSpace: [UInt32] = [0, 1, 2, 3, 500, top / 2, top - 1] + (0..<40).map { _ in UInt32(random.next() % UInt64(top)) }
        for step in 0..<12_000 {
            // Grow to a few thousand entries, then shrink well below.
            let removing = step < 6_000 ? random.next() % 4 == 0 : random.next() % 4 != 0
            if removing, let (seq, tag) = model.randomElement(using: &random) {
                let removed = keys.remove(tag: tag, seq: seq)
                #expect(removed, "seed \(seed) step \(step): \(seq) not found")
                model[seq] = nil
            } else {
                let tag = tagSpace[Int(random.next() % UInt64(tagSpace.count))]
                next += Int64(random.next() % 3) + 1
                keys.insert(tag: tag, seq: next)
                model[next] = tag
            }
            if step % 500 == 0 || step == 11_999 {
                #expect(keys.count == model.count, "seed \(seed) step \(step)")
                for tag in tagSpace {
                    let want = Set(model.filter { $0.value == tag }.keys)
                    #expect(Self.all(keys, tag) == want, "seed \(seed) step \(step) tag \(tag)")
                }
            }
        }
        // Removing what is not there changes nothing.
        let removedNothing = !keys.remove(tag: 1, seq: next + 10)
        #expect(removedNothing)
        #expect(keys.count == model.count)
        #expect(keys.slots.count < 4_096, "shrank: \(keys.slots.count) slots for \(keys.count)")
    }

    @Test("a rollback takes back what was added since begin, but what is stored after all; a commit keeps it")
    func journal() {
        var keys = OutboxKeys()
        keys.insert(tag: 9, seq: 1)
        keys.begin()
        keys.insert(tag: 9, seq: 2)
        keys.insert(tag: 10, seq: 3)
        keys.insert(tag: 11, seq: 4)
        keys.rollback { $0 == 3 }
        #expect(Self.all(keys, 9) == [1] && Self.all(keys, 10) == [3] && Self.all(keys, 11) == [])
        // The last seq handed out goes back to the highest one kept.
        #expect(keys.lastSeq == 3)
        keys.begin()
        keys.insert(tag: 14, seq: 4)
        keys.rollback { _ in false }
        #expect(keys.lastSeq == 3)
        // A check that cannot answer keeps the entry (a stale one is harmless; a missing one is not).
        struct Unknown: Error {}
        keys.begin()
        keys.insert(tag: 12, seq: 5)
        keys.rollback { _ in throw Unknown() }
        #expect(Self.all(keys, 12) == [5])
        #expect(keys.lastSeq == 5)
        keys.begin()
        keys.insert(tag: 13, seq: 6)
        keys.commit()
        keys.rollback { _ in false }
        #expect(Self.all(keys, 13) == [6])
        #expect(keys.count == 4)
        #expect(keys.lastSeq == 6)
        // Seqs handed out to events since pruned are not handed out again.
        keys.handedOut(through: 40)
        keys.handedOut(through: 7)
        #expect(keys.lastSeq == 40)
    }

    @Test("seqs far apart move the base; only a span past 2^36 drops the oldest (those more than 2^35 behind the newest)")
    func rebase() {
        var keys = OutboxKeys()
        keys.insert(tag: 1, seq: 1_000)
        keys.insert(tag: 2, seq: 10)  // below the base
        keys.insert(tag: 3, seq: (1 << 35) + 50)
        #expect(Self.all(keys, 1) == [1_000] && Self.all(keys, 2) == [10] && Self.all(keys, 3) == [(1 << 35) + 50])
        #expect(keys.dropped == 0)
        keys.insert(tag: 4, seq: (1 << 36) + 20)
        #expect(Self.all(keys, 1) == [] && Self.all(keys, 2) == [] && keys.dropped == 2)
        #expect(Self.all(keys, 3) == [(1 << 35) + 50] && Self.all(keys, 4) == [(1 << 36) + 20])
        // A seq that old is not added at all (the newer entries keep their places).
        keys.insert(tag: 5, seq: 5)
        #expect(Self.all(keys, 5) == [] && keys.dropped == 3 && keys.count == 2)
        #expect(Self.all(keys, 3) == [(1 << 35) + 50] && Self.all(keys, 4) == [(1 << 36) + 20])
        let removed = keys.remove(tag: 3, seq: (1 << 35) + 50)
        #expect(removed && keys.count == 1)
    }

    @Test("the tag is of the keys' bytes: canonically equal texts in other bytes are other keys; the boundary between source and id counts")
    func tagOfBytes() {
        let keys = OutboxKeys()
        // The key as the store gives it: the UTF-8 bytes of an event's source and id.
        func tag(source: String, id: String) -> UInt32 {
            makeEvent(id: id, source: source).withKeyBytes { keys.tag(source: $0, id: $1) }
        }
        #expect(tag(source: "s", id: "caf\u{E9}") == tag(source: "s", id: "caf\u{E9}"))
        // With 28 bits a chance collision is possible, but not for all three pairs.
        let differ = [
            tag(source: "s", id: "caf\u{E9}") != tag(source: "s", id: "cafe\u{301}"),
            tag(source: "ab", id: "c") != tag(source: "a", id: "bc"),
            tag(source: "x", id: "1") != tag(source: "x", id: "2"),
        ]
        #expect(differ.filter { $0 }.count >= 2)
    }
}
