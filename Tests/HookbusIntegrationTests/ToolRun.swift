import Foundation

/// What a finished program did.
struct ToolResult: Sendable, CustomStringConvertible {
    var status: Int32
    /// True if `status` is a signal number rather than an exit status.
    var signaled: Bool
    var stdout: String
    var stderr: String

    var stdoutLines: [String] { stdout.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }

    var description: String {
        "\(signaled ? "signal" : "exit status") \(status)\n--- stdout ---\n\(stdout)--- stderr ---\n\(stderr)"
    }
}

/// Runs programs to completion with a deadline, output captured in files (no
/// pipes, so a chatty program can never block on a full one).
enum ToolRun {
    /// Runs `executable` with `arguments`, feeding `stdin` (or /dev/null), and
    /// returns its status and output. Kills it and throws if it is still running
    /// after `timeout`.
    static func run(
        _ executable: URL, _ arguments: [String], stdin: [UInt8]? = nil,
        scratch: ScratchDirectory, environment: [String: String]? = nil, timeout: Duration = .seconds(20)
    ) async throws -> ToolResult {
        let name = "\(executable.lastPathComponent)-\(UUID().uuidString.prefix(8))"
        let outPath = scratch.path(name + ".out")
        let errPath = scratch.path(name + ".err")
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.currentDirectoryURL = URL(fileURLWithPath: scratch.root)
        process.standardOutput = try FileHandle.creating(outPath)
        process.standardError = try FileHandle.creating(errPath)
        if let stdin {
            let inPath = scratch.path(name + ".in")
            guard FileManager.default.createFile(atPath: inPath, contents: Data(stdin)) else {
                throw HarnessError("cannot write \(inPath)")
            }
            process.standardInput = FileHandle(forReadingAtPath: inPath)
        } else {
            process.standardInput = FileHandle.nullDevice
        }
        try process.run()
        let exited = await ProcessWait.exit(of: process, within: timeout)
        if !exited {
            kill(process.processIdentifier, SIGKILL)
            _ = await ProcessWait.exit(of: process, within: .seconds(10))
        }
        let result = ToolResult(
            status: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal,
            stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
        guard exited else {
            throw HarnessError("\(executable.lastPathComponent) \(arguments.joined(separator: " ")) was still running after \(timeout); killed it\n\(result)")
        }
        return result
    }
}

/// Waiting for a child process to end, by polling with short pauses.
enum ProcessWait {
    static let pollInterval: Duration = .milliseconds(5)

    /// True once `process` has exited; false if it is still running after `timeout`.
    static func exit(of process: Process, within timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: pollInterval)
        }
        return true
    }

    /// The same, blocking the calling thread: for cleanup in `defer`, which cannot await.
    static func exitBlocking(of process: Process, within timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now >= deadline { return false }
            usleep(2000)
        }
        return true
    }
}

extension FileHandle {
    /// A new, empty file open for writing (truncated if it exists).
    static func creating(_ path: String) throws -> FileHandle {
        guard FileManager.default.createFile(atPath: path, contents: nil),
              let handle = FileHandle(forWritingAtPath: path)
        else {
            throw HarnessError("cannot create \(path)")
        }
        return handle
    }
}
