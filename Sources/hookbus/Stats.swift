import ArgumentParser
import Foundation

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Per-subscriber delivered / failed / retrying / dead counts, lag, last error, delivery times.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var answer: AnswerTimeout

    @Flag(help: "Print the broker's reply as JSON.")
    var json = false

    func run() throws {
        runReporting {
            let reply = try request(connection, timeout: answer.timeout, ["op": "stats"])
            if json {
                try printJSON(reply)
                return 0
            }
            let outbox = reply["outbox"] as? [String: Any] ?? [:]
            writeOut("outbox: \(text(outbox["events"])) events, last seq \(text(outbox["last_seq"])), "
                + "database \(text(outbox["database_bytes"])) bytes; in flight \(text(reply["in_flight"]))/\(text(reply["max_inflight"]))")
            let subscribers = reply["subscribers"] as? [[String: Any]] ?? []
            let rows = subscribers.map { sub -> [String] in
                let times = sub["delivery_us"] as? [String: Any] ?? [:]
                return [text(sub["name"]), text(sub["kind"]), text(sub["delivered"]), text(sub["failed_attempts"]),
                        text(sub["retrying"]), text(sub["dead"]), text(sub["lag"]), micros(times["p50"]), micros(times["p99"]),
                        sub["last_error"] is String ? "\(ago(sub["last_error_at"])): \(cell(sub["last_error"]))" : "-"]
            }
            printTable(["SUBSCRIBER", "KIND", "DELIVERED", "FAILED", "RETRYING", "DEAD", "LAG", "P50", "P99", "LAST ERROR"], rows)
            return 0
        }
    }
}
