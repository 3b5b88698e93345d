import ArgumentParser
import HookbusClient

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check that the broker answers.")

    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        runReporting {
            let client = try connection.connect()
            let line: String
            do {
                line = try client.request(#"{"op":"ping"}"#)
            } catch {
                throw CLIError(message: "\(error)", code: 69)
            }
            // A refusal (too_many_connections, say) is not a healthy broker: exit 1.
            writeOut(line)
            _ = try decodeReply(line)
            return 0
        }
    }
}
