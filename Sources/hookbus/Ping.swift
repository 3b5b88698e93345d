import ArgumentParser
import HookbusClient

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check that the broker answers.")

    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        runReporting {
            let client = try connection.connect()
            do {
                writeOut(try client.request(#"{"op":"ping"}"#))
            } catch {
                throw CLIError(message: "\(error)", code: 69)
            }
            return 0
        }
    }
}
