import HookbusCore
import Logging
import Subprocess
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A long-running subscriber process fed over stdin/stdout (the pipe contract
/// of protocol/PROTOCOL.md).
///
/// The broker starts the command once and keeps it running: it writes one
/// line per delivery, `{"delivery":<n>,"subscriber":"...","attempt":1,"event":{...}}`,
/// and reads one answer per delivery, `{"delivery":<n>,"ok":true}` or
/// `{"delivery":<n>,"ok":false,"error":"...","retry":true}`, in any order. If the
/// process exits, writes a line that is not such an answer, or leaves a
/// delivery unanswered past `timeout` (hung), it is killed if need be, every
/// delivery in flight on it fails (and is retried) and it is restarted with
/// backoff. Its stderr goes to the broker's log, line by line, under its name.
final class PipeDeliverer: Deliverer {
    private struct State {
        var nextID = 1
        var book = AnswerBook()
        /// Lines waiting for a running process, in order.
        var queued: [(id: Int, line: [UInt8])] = []
        /// The running process's stdin queue, and the numbers written to it.
        var writer: AsyncStream<[UInt8]>.Continuation?
        var sent = Set<Int>()
        /// The running process's group, and why it was killed (if it was).
        var running: (pid: Int32, killed: KillNote)?
        /// The deadline of each delivery written to a process (`Deadlines` ids):
        /// the timeout counts from the write, not from the queue.
        var watches: [Int: Int] = [:]
    }

    let name: String
    let argv: [String]
    let environment: [String: String]
    let runAs: RunAs?
    let timeout: Duration
    let logger: Logger
    let deadlines: Deadlines
    private let state = Mutex(State())
    /// Restart delays: doubling from `restartInitial` up to `restartMax`; reset
    /// once a process has lived for `stableAfter`.
    static let restartInitial: Duration = .milliseconds(500)
    static let restartMax: Duration = .seconds(30)
    static let stableAfter: Duration = .seconds(10)

    init(
        name: String, argv: [String], environment: [String: String], runAs: RunAs?, timeout: Duration,
        deadlines: Deadlines, logger: Logger
    ) {
        self.deadlines = deadlines
        self.name = name
        self.argv = argv
        self.environment = environment
        self.runAs = runAs
        self.timeout = timeout
        self.logger = logger
    }

    var usesGlobalLimit: Bool { false }

    func prepare(_ delivery: Delivery) -> Int {
        state.withLock { state -> Int in
            let id = state.nextID
            state.nextID += 1
            state.book.opened(id)
            let line = Reply.delivery(id: id, delivery)
            if let writer = state.writer {
                send(id, line, to: writer, in: &state)
            } else {
                state.queued.append((id, line))
                // Waiting for a process: bounded all the same, in case none comes
                // (the last one killed but not gone, its output held open by a
                // daemon it started).
                let wait = timeout + Self.restartMax
                state.watches[id] = deadlines.watch(wait) { [weak self] in self?.waitedTooLong(id, wait) }
            }
            return id
        }
    }

    /// Writes delivery `id` to the running process and starts its timeout.
    private func send(_ id: Int, _ line: [UInt8], to writer: AsyncStream<[UInt8]>.Continuation, in state: inout State) {
        state.sent.insert(id)
        writer.yield(line)
        if let waiting = state.watches[id] { deadlines.end(waiting) }
        state.watches[id] = deadlines.watch(timeout) { [weak self] in self?.timedOut(id) }
    }

    /// Delivery `id` waited `wait` for a process to take it.
    private func waitedTooLong(_ id: Int, _ wait: Duration) {
        resolve(id, .failed("pipe \(name): no process took delivery \(id) within \(wait.spelled) (it is being restarted)"),
                onlyIfQueued: true)
    }

    /// Waits for the answer. The timeout runs from the moment the line is
    /// written to a process (`send`): a delivery that waits for a process to
    /// start (after a crash, during the restart delay) is not charged for the
    /// wait, and a healthy new process is not killed for a delivery that
    /// waited before it existed.
    func deliver(_ delivery: Delivery, ticket id: Int) async -> AttemptResult {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if let ready = state.withLock({ $0.book.wait(id, continuation) }) { continuation.resume(returning: ready) }
            }
        } onCancel: {
            resolve(id, .failed("delivery cancelled: the broker is stopping"))
        }
    }

    /// Delivery `id` was not answered within `timeout` of its write.
    private func timedOut(_ id: Int) {
        let late = "did not answer delivery \(id) within \(timeout.spelled)"
        // Hung: the process is killed (and restarted), so the next deliveries do not wait for it too.
        let target = process(ifWaitingFor: id, because: "\(late) and was killed")
        // Answered before the kill: the process's end fails what it still
        // holds ("... before answering"), and the first answer wins.
        resolve(id, .failed("pipe \(name) \(late)"))
        if let target { Glibc.kill(-target, SIGKILL) }
    }

    /// The running process's group, noted as killed for `reason`, if
    /// delivery `id` was written to it. New deliveries wait for the next
    /// process from then on, instead of going to the one about to die.
    private func process(ifWaitingFor id: Int, because reason: String) -> Int32? {
        state.withLock { state -> Int32? in
            guard state.sent.contains(id), let running = state.running else { return nil }
            running.killed.note.withLock { $0 = $0 ?? reason }
            state.writer = nil
            return running.pid
        }
    }

    /// Answers delivery `id`; with `onlyIfQueued`, only if it still waits for a process
    /// (checked under the same lock, so a write just under way wins).
    private func resolve(_ id: Int, _ result: AttemptResult, onlyIfQueued: Bool = false) {
        let (waiter, watch) = state.withLock { state -> (CheckedContinuation<AttemptResult, Never>?, Int?) in
            if onlyIfQueued && !state.queued.contains(where: { $0.id == id }) { return (nil, nil) }
            state.queued.removeAll { $0.id == id }
            state.sent.remove(id)
            return (state.book.answer(id, result).0, state.watches.removeValue(forKey: id))
        }
        if let watch { deadlines.end(watch) }
        waiter?.resume(returning: result)
    }

    /// Keeps the process running until cancelled.
    func run() async {
        var delay = Self.restartInitial
        while !Task.isCancelled {
            let startedAt = ContinuousClock.now
            // Started from the global executor: a child inherits its thread's
            // scheduling policy, and dispatch's may be SCHED_IDLE (`DispatchExecutor`).
            let (ending, started) = await withTaskExecutorPreference(globalConcurrentExecutor) { await runOnce() }
            let lived = ContinuousClock.now - startedAt
            // Fail what was in flight on that process: the runner retries it.
            // When no process could start, what waits for one fails too, with
            // the reason: the subscriber cannot run, and `stats` and the dead
            // letters say why, instead of deliveries waiting without an error.
            let orphans = state.withLock { state -> [Int] in
                state.writer = nil
                defer { state.sent.removeAll() }
                return Array(state.sent) + (started ? [] : state.queued.map(\.id))
            }
            let failure = started ? "pipe process \(name) \(ending) before answering" : "pipe process \(name) \(ending)"
            for id in orphans { resolve(id, .failed(failure)) }
            if Task.isCancelled { break }
            delay = lived >= Self.stableAfter ? Self.restartInitial : delay
            logger.warning("pipe process ended; restarting", metadata: [
                "hookbus.subscriber": "\(name)", "hookbus.reason": "\(ending)", "hookbus.restart_in": "\(delay.spelled)",
            ])
            do {
                try await Task.sleep(for: delay)
            } catch {
                break
            }
            delay = min(delay * 2, Self.restartMax)
        }
        // Shutdown: nobody will answer what is still waiting.
        let (left, watches) = state.withLock { state -> ([CheckedContinuation<AttemptResult, Never>], [Int]) in
            state.writer = nil
            state.queued.removeAll()
            defer { state.watches.removeAll() }
            return (state.book.answerAll(.failed("delivery cancelled: the broker is stopping")), Array(state.watches.values))
        }
        for watch in watches { deadlines.end(watch) }
        for waiter in left { waiter.resume(returning: .failed("delivery cancelled: the broker is stopping")) }
    }

    /// Runs the process once; returns how it ended, for the log and for the
    /// failures, and whether it started at all.
    private func runOnce() async -> (ending: String, started: Bool) {
        var env = ChildEnvironment.base(environment)
        env["HOOKBUS_SUBSCRIBER"] = name  // the broker's own variables win over configured ones
        var options = PlatformOptions()
        options.processGroupID = 0
        let argv = runAs?.wrap(self.argv) ?? self.argv
        let executable = ChildEnvironment.executable(argv[0], searchPath: env["PATH"])
        let (lines, writer) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .unbounded)
        let killed = KillNote()
        do {
            let result = try await Subprocess.run(
                executable, arguments: Arguments(Array(argv.dropFirst())), environment: .custom(env),
                platformOptions: options, input: .inputWriter, output: .sequence, error: .sequence
            ) { execution in
                let pid = execution.processIdentifier.value
                logger.info("pipe process started", metadata: ["hookbus.subscriber": "\(name)", "hookbus.pid": "\(pid)"])
                // Hand over what waited for a process.
                state.withLock { state in
                    state.running = (pid, killed)
                    state.writer = writer
                    for (id, line) in state.queued { send(id, line, to: writer, in: &state) }
                    state.queued.removeAll()
                }
                await withTaskGroup(of: Void.self) { io in
                    io.addTask {
                        for await line in lines {
                            do {
                                _ = try await execution.standardInputWriter.write(line)
                            } catch {
                                break
                            }
                        }
                        try? await execution.standardInputWriter.finish()
                    }
                    io.addTask {
                        // Lines end at `\n` only: an answer's JSON may hold any
                        // other line break (U+2028 is valid in a JSON string).
                        var framer = LineFramer(maxLineBytes: Self.maxAnswerBytes)
                        var frames: [Frame] = []
                        /// Handles the answers framed so far; false once one was garbage.
                        func answer(_ frames: [Frame]) -> Bool {
                            for frame in frames {
                                let problem: String?
                                switch frame {
                                case .line(let line): problem = self.handleAnswer(line)
                                case .tooLarge(let limit): problem = "an answer line longer than \(limit) bytes"
                                }
                                if let problem {
                                    killed.note.withLock { $0 = $0 ?? "wrote garbage (\(problem)) and was killed" }
                                    Glibc.kill(-pid, SIGKILL)
                                    return false
                                }
                            }
                            return true
                        }
                        reading: do {
                            for try await chunk in execution.standardOutput {
                                chunk.withUnsafeBytes { framer.feed($0, into: &frames) }
                                guard answer(frames) else { break reading }
                                frames.removeAll(keepingCapacity: true)
                            }
                            // Its stdout ended: a last answer without its `\n` counts.
                            framer.finish(into: &frames)
                            _ = answer(frames)
                        } catch {}
                        // Its stdout is gone: stop feeding it.
                        writer.finish()
                    }
                    io.addTask {
                        // Drained to the end whatever it writes, so the process never
                        // blocks on a full stderr pipe; a line too long to log is noted.
                        var framer = LineFramer(maxLineBytes: Self.maxStderrLineBytes)
                        var frames: [Frame] = []
                        let metadata: Logger.Metadata = ["hookbus.subscriber": "\(self.name)", "hookbus.stream": "stderr"]
                        do {
                            for try await chunk in execution.standardError {
                                chunk.withUnsafeBytes { framer.feed($0, into: &frames) }
                                self.log(stderr: frames, metadata: metadata)
                                frames.removeAll(keepingCapacity: true)
                            }
                        } catch {}
                        framer.finish(into: &frames)
                        self.log(stderr: frames, metadata: metadata)
                    }
                }
            }
            state.withLock { $0.running = nil }
            if let reason = killed.note.withLock({ $0 }) { return (reason, true) }
            switch result.terminationStatus {
            case .exited(let code): return ("exited with status \(code)", true)
            case .signaled(let signal): return ("was killed by signal \(signal)", true)
            }
        } catch {
            state.withLock { $0.running = nil }
            writer.finish()
            return ("could not start (\(error))", false)
        }
    }

    /// The longest answer line a pipe process may write; a longer one is garbage.
    static let maxAnswerBytes = 128 * 1024
    /// The longest stderr line logged; a longer one is drained and noted.
    static let maxStderrLineBytes = 16 * 1024

    private func log(stderr frames: [Frame], metadata: Logger.Metadata) {
        for frame in frames {
            switch frame {
            case .line(let line):
                logger.warning("\(String(decoding: line, as: UTF8.self))", metadata: metadata)
            case .tooLarge(let limit):
                logger.warning("(a line longer than \(limit) bytes, not logged)", metadata: metadata)
            }
        }
    }

    /// Resolves the delivery an answer line names; returns a description of the
    /// problem if the line is not a valid answer.
    private func handleAnswer(_ bytes: [UInt8]) -> String? {
        guard case .object(let members)? = try? JSONScanner.scan(bytes) else {
            return "not a JSON object"
        }
        func text(_ key: String) -> String? {
            members.first { $0.key == key }.map { String(decoding: bytes[$0.valueRange], as: UTF8.self) }
        }
        guard let idText = text("delivery"), let id = Int(idText) else { return "answer without a numeric 'delivery'" }
        guard let ok = text("ok"), ok == "true" || ok == "false" else { return "answer without a boolean 'ok'" }
        if ok == "true" {
            resolve(id, .delivered)
        } else {
            let error = members.first { $0.key == "error" }?.string ?? "the subscriber answered ok:false"
            if text("retry") == "false" {
                resolve(id, .rejected(error))
            } else {
                resolve(id, .failed(error))
            }
        }
        return nil
    }
}

/// Why a pipe process was killed (garbage on stdout, a delivery unanswered
/// past the timeout), shared between its reader, the deadline sweep and its supervisor.
final class KillNote: Sendable {
    let note = Mutex<String?>(nil)
}
