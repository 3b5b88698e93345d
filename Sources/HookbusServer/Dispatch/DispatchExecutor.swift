import CSQLiteSetup
import HookbusCore
import NIOCore
import Synchronization
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
/// that nothing else wants, and for at most a share of their time
/// (`IdleShare`): the event loops and the committer get it first, a
/// burst of publishes is acknowledged about as fast as with no subscriber,
/// and deliveries fall behind, to catch up once the burst is over. What
/// dispatch has not reached yet waits in the outbox, and hook deadlines move
/// on while hooks give way (`Deadlines`, patient, up to 4 × the timeout).
/// The rest of the time the jobs go to threads at the default priority, so a
/// delivery at a moderate rate waits for nothing; a task moves at its next
/// suspension point. (A thread cannot be given its priority back without
/// privilege, so each set keeps its own.)
///
/// Known risk, not seen in measurements: a `SCHED_IDLE` thread that is
/// preempted while it holds a lock the committer also takes (this queue's,
/// a runner's mailbox, the ring of recent events) delays the committer until
/// it runs again. The critical sections are a few instructions long.
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
    // Guarded by `mutex`.
    private var jobs = CircularBuffer<UnownedJob>(initialCapacity: 256)
    /// The threads of each set waiting for a job, [calm, pressed]; the last
    /// one in is woken first (its cache is the warmest).
    private var idle: [[Worker]] = [[], []]
    /// Default-priority threads waiting with a time limit (`recheck`).
    private var timedWaiting = 0
    /// Whether ingest is pressed, given whether it was at the last look.
    private let pressure: @Sendable (Bool) -> Bool

    /// How often a default-priority thread looks at the pressure again while
    /// the other set takes the jobs: pressure can end by time alone (no commit
    /// for `IngestLoad.quiet`), with nothing enqueued to say so, and the
    /// `SCHED_IDLE` threads that would pass queued jobs on may not get a CPU.
    static let recheck: Int = 5_000_000  // ns

    /// Two sets of `threads` threads: one at the default priority, which takes
    /// the jobs while ingest is calm, and one under `SCHED_IDLE`, which takes
    /// them while it is pressed. `pressure` says which (tests give their own).
    init(threads: Int, pressure: @escaping @Sendable (Bool) -> Bool = IngestLoad.pressed(was:)) {
        self.pressure = pressure
        pthread_mutex_init(mutex, nil)
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

    /// Whether the jobs go to the `SCHED_IDLE` threads now (as of the last
    /// enqueue or take): what hook deadlines follow (`Deadlines.sweep`).
    /// Written only with `mutex` held; read from anywhere.
    var givingWay: Bool { givingWayNow.load(ordering: .relaxed) }
    private let givingWayNow = Atomic<Bool>(false)

    /// Which set should take jobs (called with `mutex` held).
    private func activeSet() -> Int {
        let pressed = pressure(givingWayNow.load(ordering: .relaxed))
        givingWayNow.store(pressed, ordering: .relaxed)
        return pressed ? 1 : 0
    }

    /// Takes a waiting thread of `set` off the idle list, to be woken once
    /// `mutex` is released (called with it held).
    private func takeIdle(_ set: Int) -> Worker? {
        idle[set].popLast()
    }

    /// Called by the committer (a commit wakes the subscribers' runners) and
    /// by any thread that resumes a task here. It never waits for another
    /// thread but for the few instructions under `mutex`: a thread is woken
    /// through a semaphore of its own. (With a condition variable shared by
    /// the threads, glibc's `pthread_cond_signal` can wait until a thread
    /// signalled before has run; on two busy vCPUs that held the committer
    /// up to 3 ms at a time, between a commit and its acknowledgements.)
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        pthread_mutex_lock(mutex)
        jobs.append(job)
        let set = activeSet()
        let wake = takeIdle(set)
        // Queued for the SCHED_IDLE threads: have a default-priority thread
        // watch for the pressure ending (see `recheck`).
        let watch = set == 1 && timedWaiting == 0 ? takeIdle(0) : nil
        pthread_mutex_unlock(mutex)
        wake?.post()
        watch?.post()
    }

    /// The next job for `worker`, once there is one and its set is the one taking jobs.
    fileprivate func next(for worker: Worker) -> UnownedJob {
        let set = worker.set
        pthread_mutex_lock(mutex)
        while true {
            let active = activeSet()
            if active == set, !jobs.isEmpty { break }
            // The other set's turn: make sure one of them is awake.
            let other = active != set && !jobs.isEmpty ? takeIdle(active) : nil
            // While the other set takes the jobs, one thread here looks again
            // every `recheck` (and stays the one: no enqueue wakes another while it does).
            let timed = set == 0 && active != set && timedWaiting == 0
            if timed { timedWaiting += 1 }
            idle[set].append(worker)
            pthread_mutex_unlock(mutex)
            other?.post()
            if timed { worker.wait(nanoseconds: Self.recheck) } else { worker.wait() }
            pthread_mutex_lock(mutex)
            if timed { timedWaiting -= 1 }
            // Still listed if it woke by itself (the time limit): not if it was
            // woken, which takes it off. (Woken just after the time limit, it
            // finds its semaphore posted at the next wait: one turn for nothing.)
            if let index = idle[set].firstIndex(where: { $0 === worker }) { idle[set].remove(at: index) }
        }
        let job = jobs.removeFirst()
        // More to do: keep a second thread of the set going.
        let more = jobs.isEmpty ? nil : takeIdle(set)
        pthread_mutex_unlock(mutex)
        more?.post()
        return job
    }

    /// How much of its time a `SCHED_IDLE` thread runs jobs: once the jobs it
    /// ran within a `window` took `budget` (wall-clock, preemption included),
    /// it sleeps out the window after the job that went over (a job is never
    /// cut short; jobs queued meanwhile wait for it, or go to the other
    /// thread, or to the default-priority threads once pressure ends). The CPU
    /// nothing else wants is not free: measured with 10 delivering hooks
    /// at 4 × 64, the two threads ran about a third of the time and ingest
    /// fell to 0.65–0.93 of its rate without hooks (median 0.81, 4 runs);
    /// with this share to 0.83–0.97 (median 0.92), the hooks delivering
    /// about 40 % fewer events meanwhile.
    /// Jobs only come here while ingest is pressed, so nothing else is slowed.
    struct IdleShare {
        static let window: UInt64 = 2_000_000  // ns
        static let budget: UInt64 = 500_000  // ns
        var windowStart: UInt64 = 0
        var busy: UInt64 = 0

        static func now() -> UInt64 {
            var time = timespec()
            clock_gettime(CLOCK_MONOTONIC, &time)
            return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
        }

        /// Counts a job that ran from `start` to `end`; sleeps once the budget is spent.
        /// Returns how long it slept (ns), for tests.
        @discardableResult
        mutating func ran(from start: UInt64, to end: UInt64, sleep: (UInt64) -> Void = { usleep(UInt32($0 / 1_000)) }) -> UInt64 {
            if end &- windowStart >= Self.window {
                windowStart = start
                busy = 0
            }
            busy += end &- start
            guard busy > Self.budget else { return 0 }
            let windowEnd = windowStart + Self.window
            let rest = windowEnd > end ? windowEnd - end : 0
            if rest > 0 { sleep(rest) }
            windowStart = end + rest
            busy = 0
            return rest
        }
    }

    /// Linux's `SCHED_IDLE` (Glibc exports it only to C with _GNU_SOURCE).
    static let schedIdle: Int32 = 5

    fileprivate final class Worker {
        let executor: DispatchExecutor
        let set: Int
        let index: Int
        /// Posted once for each time the thread is taken off the idle list.
        private let semaphore = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

        init(executor: DispatchExecutor, set: Int, index: Int) {
            self.executor = executor
            self.set = set
            self.index = index
            sem_init(semaphore, 0, 0)
        }

        /// Wakes the thread (never blocks).
        func post() {
            sem_post(semaphore)
        }

        /// Waits until woken.
        func wait() {
            while sem_wait(semaphore) != 0 && errno == EINTR {}
        }

        /// Waits until woken or `nanoseconds` have passed (on the monotonic
        /// clock: a step of the wall clock must not keep the recheck asleep).
        func wait(nanoseconds: Int) {
            _ = hookbus_sem_wait_monotonic(semaphore, Int64(nanoseconds))
        }

        func run() -> Never {
            // Named for `top -H` and `perf` (Glibc does not export pthread_setname_np).
            let fd = open("/proc/thread-self/comm", O_WRONLY)
            if fd >= 0 {
                let name = Array("hookbus-\(set == 1 ? "yield" : "disp")-\(index)".utf8.prefix(15))
                _ = name.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                close(fd)
            }
            let unowned = executor.asUnownedTaskExecutor()
            if set == 0 {
                while true {
                    executor.next(for: self).runSynchronously(on: unowned)
                }
            }
            Self.giveWay()
            var share = IdleShare()
            while true {
                let job = executor.next(for: self)
                let start = IdleShare.now()
                job.runSynchronously(on: unowned)
                share.ran(from: start, to: IdleShare.now())
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
