import Foundation
import HookbusClient
import HookbusCore

/// One command to the broker and its decoded reply; a refusal becomes a CLIError.
func request(_ connection: ConnectionOptions, _ body: [String: Any]) throws -> [String: Any] {
    let client = try connection.connect()
    let data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
    let line: String
    do {
        line = try client.request(String(decoding: data, as: UTF8.self))
    } catch {
        throw CLIError(message: "\(error)", code: 69)
    }
    return try decodeReply(line)
}

func decodeReply(_ line: String) throws -> [String: Any] {
    guard let reply = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
        throw CLIError(message: "the broker sent something that is not a JSON reply: \(line.prefix(200))", code: 1)
    }
    if reply["ok"] as? Bool != true {
        let error = reply["error"] as? [String: Any]
        let code = error?["code"] as? String ?? "error"
        let message = error?["message"] as? String ?? line
        throw CLIError(message: "\(code): \(message)", code: 1)
    }
    return reply
}

/// Prints a value as one line of JSON (for --json).
func printJSON(_ value: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes])
    writeOut(String(decoding: data, as: UTF8.self))
}

/// A plain text table: columns padded to their widest cell.
func printTable(_ header: [String], _ rows: [[String]]) {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    for row in all {
        let cells = row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }
        writeOut(cells.joined(separator: "  "))
    }
}

func text(_ value: Any?) -> String {
    switch value {
    case nil, is NSNull: return "-"
    case let number as NSNumber: return number.stringValue
    case let string as String: return string
    default: return "\(value!)"
    }
}

/// Microseconds as a short human duration.
func micros(_ value: Any?) -> String {
    guard let number = value as? NSNumber else { return "-" }
    let us = number.doubleValue
    if us >= 1_000_000 { return String(format: "%.1fs", us / 1_000_000) }
    if us >= 1000 { return String(format: "%.1fms", us / 1000) }
    return "\(Int(us))µs"
}
