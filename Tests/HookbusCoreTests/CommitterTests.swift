import Foundation
import Logging
import Synchronization
import Testing
@testable import HookbusCore

/// Group commit: correctness only (how batches are grouped depends on timing).
@Suite("Committer")
struct CommitterTests {
    private static let quiet = Logger(label: "hookbus.tests") { _ in SwiftLogNoOpLogHandler() }

    @Test("many concurrent submissions all commit, with unique seqs in submission order")
    func concurrentCommits() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: directory.appendingPathComponent("hookbus.db").path, durability: .normal)
        let committer = Committer(store: store, logger: Self.quiet)
        let tasks = 50, batches = 4, perBatch = 5

        let results = await withTaskGroup(of: [(NewEvent, Committer.Outcome)].self) { group in
            for task in 0..<tasks {
                group.addTask {
                    var mine: [(NewEvent, Committer.Outcome)] = []
                    for batch in 0..<batches {
                        let events = (0..<perBatch).map { makeEvent(id: "t\(task)-b\(batch)-e\($0)") }
                        let outcome = await committer.commit(events)
                        mine += events.map { ($0, outcome) }
                    }
                    return mine
                }
            }
            var all: [(NewEvent, Committer.Outcome)] = []
            for await mine in group { all += mine }
            return all
        }
        #expect(results.count == tasks * batches * perBatch)

        var seqByID: [String: Int64] = [:]
        var batchesSeen = 0
        for (index, (_, outcome)) in results.enumerated() where index % perBatch == 0 {
            batchesSeen += 1
            guard case .success(let outcomes) = outcome else {
                Issue.record("a batch failed: \(outcome)")
                continue
            }
            #expect(outcomes.count == perBatch)
            var previous: Int64 = 0
            for (offset, answer) in outcomes.enumerated() {
                guard case .stored(let seq, let id) = answer else {
                    Issue.record("not stored: \(answer)")
                    continue
                }
                #expect(id == results[index + offset].0.id)
                #expect(seq > previous, "seqs within a batch follow its order")
                previous = seq
                #expect(seqByID.updateValue(seq, forKey: id) == nil, "id \(id) answered twice")
            }
        }
        #expect(batchesSeen == tasks * batches)
        let seqs = Set(seqByID.values)
        #expect(seqs.count == tasks * batches * perBatch, "every seq is unique")
        #expect(seqs.min() == 1 && seqs.max() == Int64(tasks * batches * perBatch))

        await committer.close()
        let stored = try store.events(in: 1...10_000, limit: 10_000)
        #expect(stored.count == tasks * batches * perBatch)
        for row in stored {
            #expect(seqByID[row.id] == row.seq, "the outbox agrees with the reply for \(row.id)")
        }
        try store.close()
    }

    @Test("the same event committed concurrently is stored once; every other answer is a duplicate of it")
    func concurrentDuplicates() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: directory.appendingPathComponent("hookbus.db").path, durability: .normal)
        let committer = Committer(store: store, logger: Self.quiet)
        let event = makeEvent(id: "same")
        let answers = await withTaskGroup(of: Committer.Outcome.self) { group in
            for _ in 0..<20 { group.addTask { await committer.commit([event]) } }
            var all: [AppendOutcome] = []
            for await outcome in group {
                if case .success(let outcomes) = outcome { all += outcomes }
            }
            return all
        }
        #expect(answers.count == 20)
        #expect(answers.filter { $0 == .stored(seq: 1, id: "same") }.count == 1)
        #expect(answers.filter { $0 == .duplicate(seq: 1, id: "same") }.count == 19)
        await committer.close()
        #expect(try store.eventCount() == 1)
        try store.close()
    }

    @Test("a small batch that finds the writer idle is written on the caller's thread when the caller allows it, one caller after another; other batches go through the writer's queue")
    func inlineWrites() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: directory.appendingPathComponent("hookbus.db").path, durability: .normal)
        let committer = Committer(store: store, logger: Self.quiet)
        // Each submission from a thread of its own, which waits for the
        // outcome: a completion on that thread was written there.
        func submitted(_ events: [NewEvent], mayWriteInline: Bool) -> (onCaller: Bool, stored: Bool) {
            let result = Mutex<(onCaller: Bool, stored: Bool)?>(nil)
            let done = DispatchSemaphore(value: 0)
            let finished = DispatchSemaphore(value: 0)
            let thread = Thread {
                let caller = pthread_self()
                committer.submit(events: events, mayWriteInline: mayWriteInline) { outcome in
                    let stored = if case .success(let outcomes) = outcome { outcomes.count == events.count } else { false }
                    result.withLock { $0 = (pthread_equal(pthread_self(), caller) != 0, stored) }
                    done.signal()
                }
                done.wait()
                finished.signal()
            }
            thread.start()
            guard finished.wait(timeout: .now() + 20) == .success, let outcome = result.withLock({ $0 }) else {
                Issue.record("no outcome within 20 s")
                return (false, false)
            }
            return outcome
        }
        // Three callers, one after another, each alone with an idle writer.
        for caller in 0..<3 {
            let outcome = submitted([makeEvent(id: "inline-\(caller)")], mayWriteInline: true)
            #expect(outcome == (true, true), "caller \(caller)")
        }
        #expect(submitted([makeEvent(id: "queued")], mayWriteInline: false) == (false, true))
        let large = (0...Committer.inlineLimit).map { makeEvent(id: "large-\($0)") }
        #expect(submitted(large, mayWriteInline: true) == (false, true))
        await committer.close()
        try store.close()
    }

    @Test("onCommit hears the highest seq after a commit")
    func onCommit() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: directory.appendingPathComponent("hookbus.db").path, durability: .normal)
        let highest = Highest()
        let committer = Committer(store: store, logger: Self.quiet, onCommit: { highest.record($0) })
        _ = await committer.commit([makeEvent(id: "a"), makeEvent(id: "b"), makeEvent(id: "c")])
        #expect(highest.value == 3)
        await committer.close()
        try store.close()
    }

    @Test("an admission refusal answers unavailable and stores nothing")
    func admissionRefusal() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: directory.appendingPathComponent("hookbus.db").path, durability: .normal)
        let committer = Committer(store: store, logger: Self.quiet, admission: { _ in WireError(.unavailable, "outbox_full", "outbox is full") })
        let outcome = await committer.commit([makeEvent(id: "a")])
        guard case .failure(let error) = outcome else {
            Issue.record("expected a refusal, got \(outcome)")
            return
        }
        #expect(error.code == .unavailable && error.reason == "outbox_full")
        #expect(error.message.contains("outbox is full"))
        await committer.close()
        #expect(try store.eventCount() == 0)
        try store.close()
    }

    @Test("an empty batch succeeds at once; after close, commits are refused with shutting_down")
    func emptyAndClosed() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: directory.appendingPathComponent("hookbus.db").path, durability: .normal)
        let committer = Committer(store: store, logger: Self.quiet)
        let empty = await committer.commit([])
        #expect((try? empty.get()) == [])
        await committer.close()
        let late = await committer.commit([makeEvent(id: "late")])
        guard case .failure(let error) = late else {
            Issue.record("a commit after close was accepted")
            return
        }
        #expect(error.code == .shuttingDown)
        #expect(try store.eventCount() == 0)
        try store.close()
    }
}

/// The highest value seen, from any thread.
private final class Highest: Sendable {
    private let stored = Mutex<Int64>(0)

    func record(_ value: Int64) {
        stored.withLock { $0 = max($0, value) }
    }

    var value: Int64 { stored.withLock { $0 } }
}
