import Foundation
import Synchronization

/// Runs `body(0..<count)` on `count` plain threads and waits for all of them
/// without blocking a Swift concurrency thread, so blocking socket clients
/// never starve the cooperative pool. Results come back in index order; the
/// first error (by index) is thrown once every thread has finished.
func onThreads<T: Sendable>(_ count: Int, _ body: @escaping @Sendable (Int) throws -> T) async throws -> [T] {
    let gather = Gather<T>(count: count)
    let results = await withCheckedContinuation { (continuation: CheckedContinuation<[Result<T, any Error>], Never>) in
        gather.start(continuation)
        for index in 0..<count {
            let thread = Thread {
                gather.finish(index, Result { try body(index) })
            }
            thread.name = "hookbus-test-\(index)"
            thread.start()
        }
    }
    return try results.map { try $0.get() }
}

private final class Gather<T: Sendable>: Sendable {
    private struct State {
        var results: [Result<T, any Error>?]
        var remaining: Int
        var continuation: CheckedContinuation<[Result<T, any Error>], Never>?
    }

    private let state: Mutex<State>

    init(count: Int) {
        state = Mutex(State(results: Array(repeating: nil, count: count), remaining: count))
    }

    func start(_ continuation: CheckedContinuation<[Result<T, any Error>], Never>) {
        let done = state.withLock { state -> [Result<T, any Error>]? in
            if state.remaining == 0 { return state.results.map { $0! } }
            state.continuation = continuation
            return nil
        }
        if let done { continuation.resume(returning: done) }
    }

    func finish(_ index: Int, _ result: Result<T, any Error>) {
        let resume = state.withLock { state -> (CheckedContinuation<[Result<T, any Error>], Never>, [Result<T, any Error>])? in
            state.results[index] = result
            state.remaining -= 1
            guard state.remaining == 0, let continuation = state.continuation else { return nil }
            state.continuation = nil
            return (continuation, state.results.map { $0! })
        }
        if let (continuation, results) = resume { continuation.resume(returning: results) }
    }
}

/// A counter that threads and the test share.
final class SharedCounter: Sendable {
    private let atomic = Atomic<Int>(0)
    var value: Int { atomic.load(ordering: .sequentiallyConsistent) }
    func increment() { atomic.add(1, ordering: .sequentiallyConsistent) }
}

/// A flag that threads and the test share.
final class SharedFlag: Sendable {
    private let atomic = Atomic<Bool>(false)
    var isSet: Bool { atomic.load(ordering: .sequentiallyConsistent) }
    func set() { atomic.store(true, ordering: .sequentiallyConsistent) }
}

/// Hands a non-Sendable value to another thread when the test makes sure the
/// two sides never touch the same state (one writes the socket, one reads it).
final class UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
