@testable import HookbusServer
import Synchronization
import Testing

/// The queue of delivery lines behind a socket subscriber.
@Suite("LineQueue: lines written in batches")
struct LineQueueTests {
    final class Record: Sendable {
        let written = Mutex<[[UInt8]]>([])
        /// Bytes in each write.
        let writes = Mutex<[Int]>([])
        let calls = Mutex(0)
    }

    @Test("every line pushed goes out once, in order, in writes of at most maxBytes (a longer line alone); finish ends run")
    func batchesInOrder() async throws {
        let queue = LineQueue(maxBytes: 100)
        // Lines of 1 to 150 bytes, each starting with its number.
        let lines = (0..<2_000).map { index -> [UInt8] in
            Array("\(index):".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: (index * 37) % 150)
        }
        let record = Record()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await queue.run { batch in
                    let bytes = batch.reduce(0) { $0 + $1.count }
                    #expect(batch.count == 1 || bytes <= 100, "a write of \(batch.count) lines, \(bytes) bytes")
                    record.writes.withLock { $0.append(bytes) }
                    record.written.withLock { $0.append(contentsOf: batch) }
                    await Task.yield()
                }
            }
            group.addTask {
                for (index, line) in lines.enumerated() {
                    queue.push(line)
                    if index % 7 == 0 { await Task.yield() }
                }
            }
            try await group.next()  // the pusher or the writer: wait for every line
            while record.written.withLock({ $0.count }) < lines.count { await Task.yield() }
            queue.finish()
            try await group.waitForAll()
        }
        #expect(record.written.withLock { $0 } == lines)
        #expect(record.writes.withLock { $0.count } < lines.count, "some writes carried several lines")
    }

    @Test("run rethrows what a write throws, and stops writing")
    func writeFailure() async throws {
        struct Gone: Error {}
        let queue = LineQueue()
        queue.push(Array("a\n".utf8))
        let record = Record()
        await #expect(throws: Gone.self) {
            try await queue.run { _ in
                record.calls.withLock { $0 += 1 }
                throw Gone()
            }
        }
        #expect(record.calls.withLock { $0 } == 1)
    }
}
