import HookbusCore
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// The threads in-process hooks run on: their runners, their deliveries and
/// outbox reads, and their background work. While ingest is pressed, they give
/// way to it. (Exec, pipe and socket subscribers wait on processes and sockets
/// served by the global executor, and stay there: hops between the two
/// executors on every delivery made a socket subscriber at 20k events/s fall
/// seconds behind.)
///
/// Two sets of threads share one queue of jobs. While ingest is pressed
/// (`IngestLoad`: producers keep the committer busy, dozens of events per
/// commit), the jobs go to threads under `SCHED_IDLE`, which run only on CPU
/// that nothing else wants: the event loops and the committer get it first, a
/// burst of publishes is acknowledged nearly as fast as with no subscriber at
/// all, and deliveries fall behind, to catch up once the burst is over (20 ms
/// without a commit ends it). Nothing is lost by it: what dispatch has not
/// reached yet is in the outbox. The rest of the time the jobs go to threads
/// at the default priority, so a delivery at a moderate rate waits for
/// nothing. (A thread cannot be given its priority back without privilege,
/// so each set keeps its own.)
///
/// A task executor (SE-0417): tasks started under
/// `withTaskExecutorPreference(DispatchExecutor.shared)` and their child
/// tasks run here. It lives as long as the process, like NIO's singleton loops.
/// Child processes must not be started from it (they would inherit
/// `SCHED_IDLE`): exec and pipe deliverers start theirs from the global
/// concurrent executor, wherever their runner is.
final class DispatchExecutor: TaskExecutor, @unchecked Sendable {
    /// The executor of every dispatcher in the process.
    static let shared = DispatchExecutor(threads: max(1, System.coreCount))

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// Where the threads of each set wait: [calm, pressed].
    private let conditions = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 2)
    // Guarded by `mutex`.
    private var jobs = CircularBuffer<UnownedJob>(initialCapacity: 256)
    private var idle = [0, 0]
    /// Which set takes jobs now: the pressed set while ingest is pressed.
    private var pressed = false

    /// Two sets of `threads` threads: one at the default priority, which takes
    /// the jobs while ingest is calm, and one under `SCHED_IDLE`, which takes
    /// them while it is pressed.
    init(threads: Int) {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(conditions, nil)
        pthread_cond_init(conditions + 1, nil)
        for set in 0..<2 {
            for index in 0..<threads {
                let worker = Worker(executor: self, set: set, index: index)
                let box = Unmanaged.passRetained(worker)
                var thread = pthread_t()
                let created = pthread_create(&thread, nil, { raw in
                    let worker = Unmanaged<Worker>.fromOpaque(raw!).takeRetainedValue()
                    worker.run()
                }, box.toOpaque())
                precondition(created == 0, "cannot start a dispatch thread: \(created)")
                pthread_detach(thread)
            }
        }
    }

    /// Which set should take jobs (called with `mutex` held).
    private func activeSet() -> Int {
        pressed = IngestLoad.pressed(was: pressed)
        return pressed ? 1 : 0
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        pthread_mutex_lock(mutex)
        jobs.append(job)
        let set = activeSet()
        let wake = idle[set] > 0
        pthread_mutex_unlock(mutex)
        if wake { pthread_cond_signal(conditions + set) }
    }

    /// The next job for a thread of `set`, once there is one and that set is the one taking jobs.
    fileprivate func next(set: Int) -> UnownedJob {
        pthread_mutex_lock(mutex)
        while true {
            let active = activeSet()
            if active == set, !jobs.isEmpty { break }
            if active != set, !jobs.isEmpty, idle[active] > 0 {
                // The other set's turn: make sure one of them is awake.
                pthread_cond_signal(conditions + active)
            }
            idle[set] += 1
            pthread_cond_wait(conditions + set, mutex)
            idle[set] -= 1
        }
        let job = jobs.removeFirst()
        // More to do: keep a second thread of the set going.
        let more = !jobs.isEmpty && idle[set] > 0
        pthread_mutex_unlock(mutex)
        if more { pthread_cond_signal(conditions + set) }
        return job
    }

    /// Linux's `SCHED_IDLE` (Glibc exports it only to C with _GNU_SOURCE).
    static let schedIdle: Int32 = 5

    private final class Worker {
        let executor: DispatchExecutor
        let set: Int
        let index: Int

        init(executor: DispatchExecutor, set: Int, index: Int) {
            self.executor = executor
            self.set = set
            self.index = index
        }

        func run() -> Never {
            // Named for `top -H` and `perf` (Glibc does not export pthread_setname_np).
            let fd = open("/proc/thread-self/comm", O_WRONLY)
            if fd >= 0 {
                let name = Array("hookbus-\(set == 1 ? "yield" : "disp")-\(index)".utf8.prefix(15))
                _ = name.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                close(fd)
            }
            if set == 1 { Self.giveWay() }
            let unowned = executor.asUnownedTaskExecutor()
            while true {
                executor.next(set: set).runSynchronously(on: unowned)
            }
        }

        /// This thread runs only on CPU nothing else wants: `SCHED_IDLE`
        /// (which needs no privilege), or nice 19 where that is refused.
        static func giveWay() {
            var param = sched_param()
            if pthread_setschedparam(pthread_self(), DispatchExecutor.schedIdle, &param) != 0 {
                // On Linux the nice value belongs to the thread (`who` 0 is the caller).
                _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
            }
        }
    }
}
