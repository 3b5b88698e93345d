#if canImport(Glibc)
import Glibc
#endif

/// A thread of its own for each connection: blocking sockets, no event loop,
/// so the generator's cost per event is a few copies and one system call per
/// batch. `join()` returns what the body returned.
final class BenchThread<Result>: @unchecked Sendable {
    private var thread = pthread_t()
    private var result: Result?

    /// Starts `body` on a new thread at once.
    init(_ body: @escaping () -> Result) {
        // The entry holds this object until the body has run, so a detached
        // thread keeps what it needs.
        let entry = ThreadEntry { [self] in self.result = body() }
        let created = pthread_create(&thread, nil, { raw in
            Unmanaged<ThreadEntry>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, Unmanaged.passRetained(entry).toOpaque())
        precondition(created == 0, "cannot start a load generator thread: error \(created)")
    }

    /// Lets the thread end on its own; its result is dropped.
    func detach() {
        pthread_detach(thread)
    }

    /// Waits for the body to finish and returns its result.
    func join() -> Result {
        pthread_join(thread, nil)
        return result!
    }
}

/// What a new thread runs; not generic, so a C function pointer can start it.
private final class ThreadEntry {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}
