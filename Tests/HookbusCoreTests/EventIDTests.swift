import Testing
@testable import HookbusCore

@Suite("EventIDGenerator")
struct EventIDTests {
    private static let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ")

    /// The milliseconds encoded in the first ten characters of a ULID.
    private static func millis(of id: String) -> UInt64 {
        id.prefix(10).reduce(0) { $0 << 5 | UInt64(alphabet.firstIndex(of: $1)!) }
    }

    @Test("10,000 ids at the same instant are strictly increasing ULIDs")
    func sameInstant() {
        let generator = EventIDGenerator()
        var previous = ""
        var increasing = true
        for _ in 0..<10_000 {
            let id = generator.next(nowMicros: testNow)
            if id.utf8.count != 26 || !id.allSatisfy(Self.alphabet.contains) {
                Issue.record("not a ULID: \(id)")
                return
            }
            if id <= previous { increasing = false }
            previous = id
        }
        #expect(increasing)
        #expect(Self.millis(of: previous) == UInt64(testNow / 1000))
    }

    @Test("ids sort by time, and never go backwards when the clock does")
    func sortableByTime() {
        let generator = EventIDGenerator()
        let times: [Int64] = [testNow, testNow + 1_000, testNow + 1_000, testNow + 60_000_000, testNow + 86_400_000_000]
        let ids = times.map { generator.next(nowMicros: $0) }
        #expect(ids == ids.sorted())
        #expect(Set(ids).count == ids.count)
        #expect(ids.map(Self.millis) == times.map { UInt64($0 / 1000) })
        // A clock stepping back keeps the last time and still increases.
        let back = generator.next(nowMicros: testNow)
        #expect(back > ids.last!)
        // Independent generators order by time too.
        #expect(EventIDGenerator().next(nowMicros: testNow) < EventIDGenerator().next(nowMicros: testNow + 1_000))
    }

    @Test("ids from concurrent callers are unique")
    func concurrent() async {
        let generator = EventIDGenerator()
        let ids = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<8 {
                group.addTask { (0..<1_000).map { _ in generator.next(nowMicros: testNow) } }
            }
            var all: [String] = []
            for await some in group { all += some }
            return all
        }
        #expect(Set(ids).count == 8_000)
    }
}
