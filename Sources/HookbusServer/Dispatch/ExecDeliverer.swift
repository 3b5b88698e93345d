import HookbusCore
import Logging
import Subprocess
import SystemPackage
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Runs a command once per delivery, as protocol/PROTOCOL.md "exec" describes:
/// the event JSON on stdin, `HOOKBUS_*` in a clean environment, exit 0 =
/// delivered, 65 = rejected, anything else (75, other codes, a signal, the
/// timeout) = retry. The child leads a process group of its own; on timeout the
/// whole group gets SIGTERM, then SIGKILL after `killGrace`. The last bytes of
/// stderr are kept with the failure.
struct ExecDeliverer: Deliverer {
    let argv: [String]
    let timeout: Duration
    let environment: [String: String]
    let runAs: RunAs?
    let logger: Logger
    /// Time between SIGTERM and SIGKILL after a timeout.
    static let killGrace: Duration = .seconds(2)
    /// Bytes of stderr kept with a failure.
    static let stderrTail = 2048

    func deliver(_ delivery: Delivery, ticket: Int) async -> AttemptResult {
        var variables = ChildEnvironment.base(environment)
        variables["HOOKBUS_SEQ"] = "\(delivery.seq)"
        variables["HOOKBUS_EVENT_ID"] = delivery.event.id
        variables["HOOKBUS_EVENT_TYPE"] = delivery.event.type
        variables["HOOKBUS_SUBSCRIBER"] = delivery.subscriber
        variables["HOOKBUS_ATTEMPT"] = "\(delivery.attempt)"
        if delivery.replay { variables["HOOKBUS_REPLAY"] = "1" }

        let options: PlatformOptions = {
            var options = PlatformOptions()
            options.processGroupID = 0  // a group of its own, led by the child
            return options
        }()
        let argv = runAs?.wrap(self.argv) ?? self.argv
        let executable = ChildEnvironment.executable(argv[0], searchPath: variables["PATH"])
        let input = Array(delivery.event.json.utf8) + [0x0A]
        let env = variables
        let child = ChildState()
        let command = argv.joined(separator: " ")

        // stderr goes to an unlinked temporary file, read after the command
        // exits: a background job that keeps it open cannot hold the delivery up.
        guard let stderrFile = StderrFile() else {
            return .failed("cannot create a temporary file for the stderr of \(command): \(String(cString: strerror(errno)))")
        }
        return await withTaskGroup(of: AttemptResult?.self) { group in
            // Started from the global executor: a child inherits its thread's
            // scheduling policy, and dispatch's may be SCHED_IDLE (`DispatchExecutor`).
            group.addTask(executorPreference: globalConcurrentExecutor) {
                do {
                    let result = try await Subprocess.run(
                        executable, arguments: Arguments(Array(argv.dropFirst())), environment: .custom(env),
                        platformOptions: options, input: .inputWriter, output: .discarded,
                        error: .fileDescriptor(FileDescriptor(rawValue: stderrFile.descriptor), closeAfterSpawningProcess: false)
                    ) { execution in
                        child.pid.store(execution.processIdentifier.value, ordering: .sequentiallyConsistent)
                        // A script that never reads stdin must not block us: errors are ignored.
                        _ = try? await execution.standardInputWriter.write(input)
                        try? await execution.standardInputWriter.finish()
                    }
                    child.finished.store(true, ordering: .sequentiallyConsistent)
                    let tail = Self.describe(stderrFile.tail(Self.stderrTail))
                    if child.timedOut.load(ordering: .sequentiallyConsistent) {
                        return .failed("timed out after \(timeout.spelled); process group killed\(tail)")
                    }
                    switch result.terminationStatus {
                    case .exited(0): return .delivered
                    case .exited(65): return .rejected("exit 65 (EX_DATAERR)\(tail)")
                    case .exited(75): return .failed("exit 75 (EX_TEMPFAIL)\(tail)")
                    case .exited(let code): return .failed("exit \(code)\(tail)")
                    case .signaled(let signal): return .failed("killed by signal \(signal)\(tail)")
                    }
                } catch {
                    return .failed("cannot run \(command): \(error)")
                }
            }
            defer { stderrFile.close() }
            group.addTask {
                do {
                    try await Task.sleep(for: timeout)
                } catch {
                    // The command finished first, or the delivery was cancelled
                    // (shutdown): then the whole group goes, not just the child.
                    let leader = child.pid.load(ordering: .sequentiallyConsistent)
                    if leader > 0 && !child.finished.load(ordering: .sequentiallyConsistent) { kill(-leader, SIGKILL) }
                    return nil
                }
                let leader = child.pid.load(ordering: .sequentiallyConsistent)
                guard leader > 0 else { return nil }
                child.timedOut.store(true, ordering: .sequentiallyConsistent)
                logger.warning("exec timed out; terminating its process group", metadata: [
                    "hookbus.subscriber": "\(delivery.subscriber)", "hookbus.seq": "\(delivery.seq)", "hookbus.pid": "\(leader)",
                ])
                kill(-leader, SIGTERM)
                do {
                    try await Task.sleep(for: Self.killGrace)
                } catch {}
                kill(-leader, SIGKILL)
                return nil
            }
            var result: AttemptResult?
            while let next = await group.next() {
                if let next {
                    result = next
                    group.cancelAll()
                }
            }
            return result ?? .failed("exec \(command) ended without a result")
        }
    }

    static func describe(_ tail: [UInt8]) -> String {
        let text = String(decoding: tail, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "" : "; stderr: \(text)"
    }
}

/// An unlinked temporary file that takes a command's stderr.
final class StderrFile: Sendable {
    let descriptor: Int32

    init?() {
        var template = Array("/tmp/hookbus-stderr-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { return nil }
        // Not inherited by anything but the command it is given to (as its fd 2).
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        descriptor = fd
    }

    /// The last `limit` bytes written.
    func tail(_ limit: Int) -> [UInt8] {
        let size = Int(lseek(descriptor, 0, SEEK_END))
        guard size > 0 else { return [] }
        let start = max(0, size - limit)
        var bytes = [UInt8](repeating: 0, count: size - start)
        let count = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, off_t(start)) }
        return count > 0 ? Array(bytes[0..<count]) : []
    }

    func close() {
        _ = Glibc.close(descriptor)
    }
}

/// What the timeout task and the run task share about one child.
final class ChildState: Sendable {
    let pid = Atomic<Int32>(0)
    let timedOut = Atomic<Bool>(false)
    /// The command has ended and been reaped: its pid may be reused.
    let finished = Atomic<Bool>(false)
}

extension RunAs {
    /// The command line that runs `argv` with these credentials: through
    /// setpriv(1), which drops the supplementary groups, then sets the group,
    /// then the user, and execs the command. The child is spawned with
    /// posix_spawn like any other (a fork of the multithreaded broker to change
    /// ids in the child can deadlock under load), keeps its own process group,
    /// and the command's own exec follows.
    func wrap(_ argv: [String]) -> [String] {
        var wrapped = [Self.setpriv]
        if let uid { wrapped.append("--reuid=\(uid)") }
        if let gid { wrapped.append("--regid=\(gid)") }
        wrapped += ["--clear-groups", "--"]
        return wrapped + argv
    }

    static let setpriv = "/usr/bin/setpriv"
}

/// What every subscriber process starts from: a clean environment with the
/// broker's PATH (or a safe default) and the subscriber's configured `env`.
/// The broker's own `HOOKBUS_*` variables are set on top and win.
enum ChildEnvironment {
    static let path: String = {
        if let value = getenv("PATH") { return String(cString: value) }
        return "/usr/local/bin:/usr/bin:/bin"
    }()

    static func base(_ configured: [String: String]) -> [Environment.Key: String] {
        var variables: [Environment.Key: String] = ["PATH": path]
        for (key, value) in configured { variables[Environment.Key(stringLiteral: key)] = value }
        return variables
    }

    /// The program to start for `argv0`: as given if it has a `/`, else the
    /// first executable file of that name in `searchPath` (the child's PATH).
    ///
    /// Looked up here, with `access(2)`, on every start (a script installed
    /// later is found): swift-subprocess resolves a bare name by trying to
    /// start it in every PATH directory in turn, a process each.
    static func executable(_ argv0: String, searchPath: String?) -> Executable {
        if argv0.contains("/") { return .path(FilePath(argv0)) }
        for directory in (searchPath ?? path).split(separator: ":", omittingEmptySubsequences: true) {
            let candidate = directory.hasSuffix("/") ? "\(directory)\(argv0)" : "\(directory)/\(argv0)"
            var info = stat()
            if access(candidate, X_OK) == 0, stat(candidate, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG {
                return .path(FilePath(candidate))
            }
        }
        return .name(argv0)  // not found: let swift-subprocess say so
    }
}

import Foundation
