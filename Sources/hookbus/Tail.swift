import ArgumentParser
import Foundation
import HookbusClient

struct Tail: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Follow events live (an unnamed subscription that leaves no trace).")

    @OptionGroup var connection: ConnectionOptions
    @Option(name: .customLong("type"), help: "Type filter (repeatable; default every type).") var types: [String] = []
    @Option(name: .customLong("from-seq"), help: "Start with this stored seq instead of new events only.") var fromSeq: Int64?
    @Option(help: "Exit after this many events.") var limit: Int?
    @Flag(help: "Print each event as its JSON line.") var json = false

    func run() throws {
        runReporting {
            let client = try connection.connect()
            var body: [String: Any] = ["op": "subscribe", "window": 64]
            if !types.isEmpty { body["types"] = types }
            if let fromSeq { body["from_seq"] = fromSeq }
            let line = String(decoding: try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys]), as: UTF8.self)
            var seen = 0
            do {
                _ = try decodeReply(try client.request(line))
                while limit.map({ seen < $0 }) ?? true, let next = try client.readLine() {
                    guard let delivery = (try? JSONSerialization.jsonObject(with: Data(next.utf8))) as? [String: Any],
                          let id = delivery["delivery"] as? Int else { continue }
                    try client.send(line: "{\"op\":\"ack\",\"delivery\":\(id)}")
                    let event = delivery["event"] as? [String: Any] ?? [:]
                    if json {
                        try printJSON(event)
                    } else {
                        var data = "-"
                        if let value = event["data"], JSONSerialization.isValidJSONObject([value]),
                           let bytes = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed]) {
                            data = String(decoding: bytes, as: UTF8.self)
                        }
                        writeOut("\(text(delivery["seq"])) \(text(event["time"])) \(text(event["type"])) "
                            + "\(text(event["source"])) \(text(event["id"])) \(data)")
                    }
                    seen += 1
                }
            } catch let error as SocketClient.Failure {
                throw CLIError(message: error.description, code: 69)
            }
            return 0
        }
    }
}
