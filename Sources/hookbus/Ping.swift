import ArgumentParser
import HookbusClient

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check that the broker answers.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var answer: AnswerTimeout

    func run() throws {
        runReporting {
            let line = try requestLine(connection, timeout: answer.timeout, ["op": "ping"])
            // A refusal (too_many_connections, say) is not a healthy broker: exit 1,
            // and what came is in the message, not on stdout.
            _ = try decodeReply(line)
            writeOut(line)
            return 0
        }
    }
}
