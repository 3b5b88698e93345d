import ArgumentParser
import HookbusClient
import HookbusCore

#if canImport(Glibc)
import Glibc
#endif

@main
struct Hookbus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hookbus",
        abstract: "Talk to a hookbus broker.",
        subcommands: [Publish.self, Tail.self, Replay.self, DeadLetters.self, Stats.self, Ping.self, Bench.self]
    )
}

struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: "The broker's socket (default $HOOKBUS_SOCKET or ./hookbus.sock).")
    var socket: String?

    var path: String {
        if let socket { return socket }
        if let env = getenv("HOOKBUS_SOCKET") { return String(cString: env) }
        return "./hookbus.sock"
    }

    /// `timeout`: seconds a connect, write or read may wait (0: no limit).
    func connect(timeout: Int = 0) throws -> SocketClient {
        do {
            return try SocketClient(path: path, timeoutSeconds: timeout)
        } catch {
            throw CLIError(message: error.description, code: 69)  // EX_UNAVAILABLE
        }
    }
}

/// How long a command waits for the broker's answer.
struct AnswerTimeout: ParsableArguments {
    @Option(help: "Give up (exit 69) when the broker has not answered within this many seconds; 0 waits forever.")
    var timeout: Int = 60

    func validate() throws {
        guard timeout >= 0 else { throw ValidationError("--timeout must be 0 (wait forever) or more seconds") }
    }
}

/// An error the CLI reports as `hookbus: <message>` with its own exit status.
struct CLIError: Error, CustomStringConvertible {
    var message: String
    var code: Int32
    var description: String { message }
}

func runReporting(_ body: () throws -> Int32) -> Never {
    do {
        exit(try body())
    } catch let error as CLIError {
        writeError("hookbus: \(error.message)")
        exit(error.code)
    } catch {
        writeError("hookbus: \(error)")
        exit(1)
    }
}

func writeError(_ text: String) {
    let bytes = Array((text + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

func writeOut(_ text: String) {
    let bytes = Array((text + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
}
