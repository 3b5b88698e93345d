import ArgumentParser
import Foundation

struct DeadLetters: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq",
        abstract: "Inspect, retry or purge dead letters.",
        subcommands: [List.self, Show.self, Retry.self, Purge.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List dead letters, oldest first.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var answer: AnswerTimeout
        @Option(help: "Only this subscriber's.") var subscriber: String?
        @Option(help: "At most this many, oldest first.") var limit: Int = 1000
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            guard limit >= 1 else { throw ValidationError("--limit must be at least 1") }
        }

        func run() throws {
            runReporting {
                var body: [String: Any] = ["op": "dlq.list", "limit": limit]
                if let subscriber { body["subscriber"] = subscriber }
                let reply = try request(connection, timeout: answer.timeout, body)
                let letters = reply["dead_letters"] as? [[String: Any]] ?? []
                let total = (reply["total"] as? NSNumber)?.intValue ?? letters.count
                let shortNote = "(the oldest \(letters.count) of \(total) dead letters: --limit \(total) lists them all)"
                if json {
                    try printJSON(letters)
                    if total > letters.count { writeError(shortNote) }
                    return 0
                }
                if letters.isEmpty {
                    writeOut(subscriber.map { "no dead letters for \($0)" } ?? "no dead letters")
                    return 0
                }
                printTable(["ID", "SUBSCRIBER", "SEQ", "TYPE", "ATTEMPTS", "REASON", "LAST FAILED", "LAST ERROR"], letters.map {
                    [text($0["id"]), cell($0["subscriber"]), text($0["seq"]), cell($0["event_type"]), text($0["attempts"]),
                     text($0["reason"]), text($0["last_failed_at"]), cell($0["last_error"])]
                })
                if total > letters.count { writeOut(shortNote) }
                return 0
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one dead letter: the event and every attempt's error.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var answer: AnswerTimeout
        @Argument(help: "The dead letter's id (from `dlq list`).") var id: Int64
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            runReporting {
                // The event is shown as it was stored (its bytes: numbers such as 1e400
                // or 1.10 and its escapes as the producer sent them), so the reply is
                // taken apart without decoding the event.
                let line = try requestLine(connection, timeout: answer.timeout, ["op": "dlq.show", "id": id])
                guard let raw = rawMember("dead_letter", of: Array(line.utf8)).map(Array.init) else {
                    _ = try decodeReply(line)  // a refusal, or not a reply at all
                    throw CLIError(message: "the broker's dlq.show reply has no dead_letter: \(line.prefix(200))", code: 1)
                }
                if json {
                    writeOut(String(decoding: raw, as: UTF8.self))
                    return 0
                }
                let event = rawMember("event", of: raw)
                var rest = raw
                if let event { rest.replaceSubrange(event.indices, with: Array("null".utf8)) }
                let letter = (try? JSONSerialization.jsonObject(with: Data(rest))) as? [String: Any] ?? [:]
                for key in ["id", "subscriber", "seq", "event_id", "event_type", "attempts", "reason", "first_failed_at",
                            "last_failed_at"] {
                    writeOut("\(key): \(printable(text(letter[key])))")
                }
                writeOut("replay: \((letter["replay"] as? Bool) == true)")
                writeOut("errors:")
                for entry in letter["errors"] as? [[String: Any]] ?? [] {
                    // Each line of an error (an exec's stderr) on a line of its own, indented.
                    let lines = text(entry["error"]).split(separator: "\n", omittingEmptySubsequences: false).map { printable(String($0)) }
                    writeOut("  attempt \(text(entry["attempt"])) at \(text(entry["at"])): \(lines.first ?? "")")
                    for more in lines.dropFirst() { writeOut("      \(more)") }
                }
                writeOut("event:")
                if let event { writeOut(printable(String(decoding: event, as: UTF8.self))) }
                return 0
            }
        }
    }

    struct Selection: ParsableArguments {
        @Argument(help: "Dead letter ids.") var ids: [Int64] = []
        @Flag(help: "Every dead letter (of --subscriber, if given).") var all = false
        @Option(help: "Only this subscriber's.") var subscriber: String?

        func validate() throws {
            if ids.isEmpty == !all { throw ValidationError("give dead letter ids or --all, not both and not neither") }
        }

        func body(_ op: String) -> [String: Any] {
            var body: [String: Any] = ["op": op]
            if all { body["all"] = true } else { body["ids"] = ids }
            if let subscriber { body["subscriber"] = subscriber }
            return body
        }
    }

    struct Retry: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Deliver dead letters again (marked as replays); they leave the dead letters.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var answer: AnswerTimeout
        @OptionGroup var selection: Selection
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            runReporting {
                let reply = try request(connection, timeout: answer.timeout, selection.body("dlq.retry"))
                if json {
                    try printJSON(reply)
                } else {
                    writeOut("queued \(text(reply["count"])) dead letter(s) for delivery")
                    let skipped = (reply["skipped"] as? [Any] ?? []).map { text($0) }
                    if !skipped.isEmpty {
                        writeOut("left \(skipped.count) dead letter(s) of subscribers that no longer exist: "
                            + "\(skipped.joined(separator: " ")) (hookbus dlq purge removes them)")
                    }
                }
                return 0
            }
        }
    }

    struct Purge: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete dead letters for good.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var answer: AnswerTimeout
        @OptionGroup var selection: Selection
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            runReporting {
                let reply = try request(connection, timeout: answer.timeout, selection.body("dlq.purge"))
                if json { try printJSON(reply) } else { writeOut("purged \(text(reply["count"])) dead letter(s)") }
                return 0
            }
        }
    }
}
