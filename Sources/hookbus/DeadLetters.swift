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
                let reply = try request(connection, body)
                let letters = reply["dead_letters"] as? [[String: Any]] ?? []
                let total = (reply["total"] as? NSNumber)?.intValue ?? letters.count
                if json {
                    try printJSON(letters)
                    return 0
                }
                if letters.isEmpty {
                    writeOut(subscriber.map { "no dead letters for \($0)" } ?? "no dead letters")
                    return 0
                }
                printTable(["ID", "SUBSCRIBER", "SEQ", "TYPE", "ATTEMPTS", "REASON", "LAST FAILED", "LAST ERROR"], letters.map {
                    [text($0["id"]), text($0["subscriber"]), text($0["seq"]), text($0["event_type"]), text($0["attempts"]),
                     text($0["reason"]), text($0["last_failed_at"]), String(text($0["last_error"]).prefix(60))]
                })
                if total > letters.count {
                    writeOut("(the oldest \(letters.count) of \(total) dead letters: --limit \(total) lists them all)")
                }
                return 0
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one dead letter: the event and every attempt's error.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The dead letter's id (from `dlq list`).") var id: Int64
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            runReporting {
                let letter = try request(connection, ["op": "dlq.show", "id": id])["dead_letter"] as? [String: Any] ?? [:]
                if json {
                    try printJSON(letter)
                    return 0
                }
                for key in ["id", "subscriber", "seq", "event_id", "event_type", "attempts", "reason", "first_failed_at",
                            "last_failed_at", "last_error"] {
                    writeOut("\(key): \(text(letter[key]))")
                }
                writeOut("replay: \((letter["replay"] as? Bool) == true)")
                writeOut("errors:")
                for entry in letter["errors"] as? [[String: Any]] ?? [] {
                    writeOut("  attempt \(text(entry["attempt"])) at \(text(entry["at"])): \(text(entry["error"]))")
                }
                writeOut("event:")
                if let event = letter["event"] {
                    let data = try JSONSerialization.data(withJSONObject: event, options: [.prettyPrinted, .sortedKeys])
                    writeOut(String(decoding: data, as: UTF8.self))
                }
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
        @OptionGroup var selection: Selection
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            runReporting {
                let reply = try request(connection, selection.body("dlq.retry"))
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
        @OptionGroup var selection: Selection
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            runReporting {
                let reply = try request(connection, selection.body("dlq.purge"))
                if json { try printJSON(reply) } else { writeOut("purged \(text(reply["count"])) dead letter(s)") }
                return 0
            }
        }
    }
}
