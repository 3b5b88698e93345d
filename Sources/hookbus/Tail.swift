import ArgumentParser
import Foundation
import HookbusClient
import HookbusCore

struct Tail: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Follow events live, through an unnamed subscription.",
        discussion: """
            Each event is acknowledged as it is printed. The subscription ends with the command and \
            leaves nothing behind: what it received and did not acknowledge by then goes to nobody and \
            is not dead-lettered. Exits 69 if the broker closes the connection before --limit events.
            """)

    @OptionGroup var connection: ConnectionOptions
    @Option(name: .customLong("type"), help: "Type filter (repeatable; default every type).") var types: [String] = []
    @Option(name: .customLong("from-seq"), help: "Start with this stored seq instead of new events only.") var fromSeq: Int64?
    @Option(help: "Exit after this many events.") var limit: Int?
    @Flag(help: "Print each event as stored, one JSON line each.") var json = false

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    }

    func run() throws {
        runReporting {
            let client = try connection.connect()
            // No more in flight than --limit: little is sent that the command
            // will not print (what is left when it exits goes to nobody).
            var body: [String: Any] = ["op": "subscribe", "window": min(64, limit ?? 64)]
            if !types.isEmpty { body["types"] = types }
            if let fromSeq { body["from_seq"] = fromSeq }
            let line = String(decoding: try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys]), as: UTF8.self)
            var seen = 0
            do {
                _ = try decodeReply(try client.request(line))
                while limit.map({ seen < $0 }) ?? true {
                    guard let next = try client.readLine() else {
                        throw CLIError(message: "hookbusd at \(client.path) closed the connection after \(seen) event(s)"
                            + " (is it shutting down?)", code: 69)
                    }
                    guard let delivery = Self.delivery(Array(next.utf8)) else { continue }
                    try client.send(line: "{\"op\":\"ack\",\"delivery\":\(delivery.id)}")
                    writeOut(json ? delivery.event : delivery.summary)
                    seen += 1
                }
            } catch let error as SocketClient.Failure {
                throw CLIError(message: error.description, code: 69)
            }
            return 0
        }
    }

    /// A delivery line's number, its event's bytes as stored, and the text line
    /// printed for it; nil for any other line. Read with the broker's own
    /// scanner, which takes any valid JSON (a number like 1e400 included) and
    /// keeps the event's bytes as they are.
    static func delivery(_ line: [UInt8]) -> (id: Int, event: String, summary: String)? {
        guard case .object(let members)? = try? JSONScanner.scan(line),
              let idMember = members.first(where: { $0.key == "delivery" && $0.kind == .number }),
              let id = Int(String(decoding: line[idMember.valueRange], as: UTF8.self)),
              let eventMember = members.first(where: { $0.key == "event" && $0.kind == .object })
        else { return nil }
        func raw(_ member: JSONMember?, in bytes: [UInt8]) -> String {
            member.map { String(decoding: bytes[$0.valueRange], as: UTF8.self) } ?? "-"
        }
        let event = Array(line[eventMember.valueRange])
        let seq = raw(members.first { $0.key == "seq" }, in: line)
        var fields = ["-", "-", "-", "-", "-"]
        if case .object(let attributes)? = try? JSONScanner.scan(event) {
            for (index, key) in ["time", "type", "source", "id"].enumerated() {
                if let member = attributes.first(where: { $0.key == key }) { fields[index] = member.string ?? raw(member, in: event) }
            }
            fields[4] = raw(attributes.first { $0.key == "data" }, in: event)
        }
        return (id, String(decoding: event, as: UTF8.self), ([seq] + fields).joined(separator: " "))
    }
}
