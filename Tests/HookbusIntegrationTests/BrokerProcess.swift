import Foundation
import HookbusClient
import Synchronization

/// The real `hookbusd`, run as a child process on a scratch directory's socket
/// and database.
///
/// `start()` returns once the broker answers `ping` (polled, with a deadline),
/// never after a fixed sleep. Its stderr goes to `logPath`, appended across
/// restarts, so a failing test can show it (`log`). The scratch directory kills
/// it at cleanup whatever happened.
final class BrokerProcess: Sendable {
    let scratch: ScratchDirectory
    let socketPath: String
    let databasePath: String
    let configPath: String?
    let logPath: String
    /// False to leave `--socket` and `--db` out, so the paths come from the config file.
    let pathsOnCommandLine: Bool
    /// Extra arguments, after `--socket` and `--db`.
    let extraArguments: [String]
    /// Added to (or replacing in) the test process's environment, for this
    /// broker only (the disk-full seam, a variable subscribers must not inherit).
    let environment: [String: String]
    /// How long a start, a readiness check or a stop may take.
    static let deadline: Duration = .seconds(20)

    private let current = Mutex<Process?>(nil)

    init(scratch: ScratchDirectory, socketPath: String, databasePath: String, configPath: String?,
         pathsOnCommandLine: Bool = true, extraArguments: [String] = ["--log-level", "info"],
         environment: [String: String] = [:]) {
        self.scratch = scratch
        self.socketPath = socketPath
        self.databasePath = databasePath
        self.configPath = configPath
        self.pathsOnCommandLine = pathsOnCommandLine
        self.extraArguments = extraArguments
        self.environment = environment
        let base = URL(fileURLWithPath: socketPath).deletingPathExtension().lastPathComponent
        logPath = scratch.path("hookbusd-\(base).log")
    }

    var arguments: [String] {
        var out: [String] = []
        if let configPath { out += ["--config", configPath] }
        if pathsOnCommandLine { out += ["--socket", socketPath, "--db", databasePath] }
        return out + extraArguments
    }

    /// The pid of the running broker.
    var pid: Int32 { current.withLock { $0?.processIdentifier ?? 0 } }

    var isRunning: Bool { current.withLock { $0?.isRunning ?? false } }

    /// Everything the broker wrote to stderr so far, across restarts.
    var log: String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "(no log at \(logPath))"
        return "--- hookbusd log (\(logPath)) ---\n" + text
    }

    /// Starts the broker and waits until it answers `ping`. `wrapper`: a
    /// command that execs the broker (prlimit), run with the broker after it.
    func start(wrappedIn wrapper: [String] = []) async throws {
        let process = try launch(wrappedIn: wrapper)
        try await waitUntilReady(process)
    }

    /// Starts the process without waiting for readiness.
    @discardableResult
    func launch(wrappedIn wrapper: [String] = []) throws -> Process {
        if isRunning { throw HarnessError("hookbusd on \(socketPath) is already running") }
        let process = Process()
        if let first = wrapper.first {
            process.executableURL = URL(fileURLWithPath: first)
            process.arguments = Array(wrapper.dropFirst()) + [try TestBinaries.hookbusd().path] + arguments
        } else {
            process.executableURL = try TestBinaries.hookbusd()
            process.arguments = arguments
        }
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        process.currentDirectoryURL = URL(fileURLWithPath: scratch.root)
        if !FileManager.default.fileExists(atPath: logPath) {
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        guard let log = FileHandle(forWritingAtPath: logPath) else { throw HarnessError("cannot open \(logPath)") }
        log.seekToEndOfFile()
        process.standardError = log
        process.standardOutput = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? log.close()
        current.withLock { $0 = process }
        return process
    }

    /// Polls `ping` until it is answered, the process exits, or the deadline passes.
    func waitUntilReady(_ process: Process) async throws {
        let deadline = ContinuousClock.now + Self.deadline
        var lastProblem = "no attempt"
        while true {
            if !process.isRunning {
                throw HarnessError("hookbusd exited with status \(process.terminationStatus) before answering ping\n\(log)")
            }
            do {
                let client = try SocketClient.connect(socketPath, timeout: .seconds(5))
                let reply = try WireReply(try client.request(#"{"op":"ping"}"#))
                if reply.ok && reply.op == "ping" { return }
                lastProblem = "ping answered \(reply.line)"
            } catch {
                lastProblem = "\(error)"
            }
            if ContinuousClock.now >= deadline {
                throw HarnessError("hookbusd did not answer ping within \(Self.deadline): \(lastProblem)\n\(log)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// SIGTERM, then waits for the exit; returns the exit status. Throws if the
    /// broker is still running after the deadline, or died of a signal.
    @discardableResult
    func stop() async throws -> Int32 {
        try await signalAndWait(SIGTERM, what: "SIGTERM")
    }

    /// SIGKILL, then waits for the process to be gone.
    func kill() async throws {
        _ = try await signalAndWait(SIGKILL, what: "SIGKILL", expectSignal: true)
    }

    /// Starts again on the same socket and database, once the previous process has exited.
    func restart() async throws {
        if isRunning { throw HarnessError("restart() needs a stopped broker; call stop() or kill() first") }
        try await start()
    }

    /// Sends `signal` to the broker; returns its exit status once it exited.
    private func signalAndWait(_ signal: Int32, what: String, expectSignal: Bool = false) async throws -> Int32 {
        guard let process = current.withLock({ $0 }) else { throw HarnessError("hookbusd on \(socketPath) was never started") }
        guard process.isRunning else {
            throw HarnessError("hookbusd had already exited (status \(process.terminationStatus)) before \(what)\n\(log)")
        }
        Glibc.kill(process.processIdentifier, signal)
        guard await ProcessWait.exit(of: process, within: Self.deadline) else {
            throw HarnessError("hookbusd still running \(Self.deadline) after \(what)\n\(log)")
        }
        if process.terminationReason == .uncaughtSignal && !expectSignal {
            throw HarnessError("hookbusd died of signal \(process.terminationStatus) after \(what)\n\(log)")
        }
        return process.terminationStatus
    }

    /// Cleanup: SIGKILL if still running and wait a little, without awaiting.
    func killNow() {
        guard let process = current.withLock({ $0 }), process.isRunning else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        _ = ProcessWait.exitBlocking(of: process, within: .seconds(10))
    }

    /// A new connection with read and write timeouts, so a broker that stops
    /// answering fails the test instead of hanging it.
    func connect(timeout: Duration = BrokerProcess.deadline) throws -> SocketClient {
        try SocketClient.connect(socketPath, timeout: timeout)
    }

    /// Runs the `hookbus` CLI against this broker: `hookbus <arguments> --socket <socketPath>`.
    func hookbus(_ arguments: [String], stdin: [UInt8]? = nil) async throws -> ToolResult {
        try await ToolRun.run(try TestBinaries.hookbus(), arguments + ["--socket", socketPath], stdin: stdin, scratch: scratch)
    }

    /// The broker's database, opened read-only beside it.
    func outbox() throws -> OutboxReader {
        try OutboxReader(path: databasePath)
    }
}
