import Foundation
import HookbusClient
import HookbusCore

/// One command to the broker and its decoded reply; a refusal becomes a CLIError.
func request(_ connection: ConnectionOptions, timeout: Int = 0, _ body: [String: Any]) throws -> [String: Any] {
    try decodeReply(requestLine(connection, timeout: timeout, body))
}

/// One command to the broker and its reply line as it came (a broker that
/// cannot be reached or does not answer within `timeout` seconds: exit 69).
func requestLine(_ connection: ConnectionOptions, timeout: Int = 0, _ body: [String: Any]) throws -> String {
    let client = try connection.connect(timeout: timeout)
    let data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
    do {
        return try client.request(String(decoding: data, as: UTF8.self))
    } catch {
        throw CLIError(message: "\(error)", code: 69)
    }
}

/// The bytes of member `key` of the JSON object `bytes`, as they are (no
/// decoding: an event's numbers and escapes stay as the producer sent them).
func rawMember(_ key: String, of bytes: [UInt8]) -> ArraySlice<UInt8>? {
    guard case .object(let members)? = try? JSONScanner.scan(bytes),
          let member = members.first(where: { $0.key == key }) else { return nil }
    return bytes[member.valueRange]
}

func decodeReply(_ line: String) throws -> [String: Any] {
    guard let reply = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
        throw CLIError(message: "the broker sent something that is not a JSON reply: \(line.prefix(200))", code: 1)
    }
    if reply["ok"] as? Bool != true {
        let error = reply["error"] as? [String: Any]
        let code = error?["code"] as? String ?? "error"
        let reason = (error?["reason"] as? String).map { " (\($0))" } ?? ""
        let message = error?["message"] as? String ?? line
        throw CLIError(message: "\(code)\(reason): \(printable(message))", code: 1)
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

/// `text` for a terminal: control characters (a subscriber's stderr may hold
/// escape sequences) shown as `\n`, `\t`, `\r` or `\xNN`, never sent as they are.
func printable(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
        switch scalar.value {
        case 0x0A: out += "\\n"
        case 0x09: out += "\\t"
        case 0x0D: out += "\\r"
        case 0..<0x20, 0x7F, 0x80..<0xA0: out += String(format: "\\x%02X", scalar.value)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out
}

/// A table cell of at most `width` characters: a long text keeps its start
/// and its end (where an error's last line is) around an ellipsis.
func cell(_ value: Any?, width: Int = 60) -> String {
    let text = printable(text(value))
    guard text.count > width else { return text }
    let head = width / 3
    return String(text.prefix(head)) + "…" + String(text.suffix(width - head - 1))
}

/// How long ago an RFC 3339 time the broker sent was: `12s ago`, `5m ago`.
func ago(_ value: Any?) -> String {
    guard let string = value as? String, let micros = Timestamp.parse(string) else { return "-" }
    let seconds = max(0, (Timestamp.nowMicros() - micros) / 1_000_000)
    switch seconds {
    case ..<60: return "\(seconds)s ago"
    case ..<3600: return "\(seconds / 60)m ago"
    case ..<86400: return "\(seconds / 3600)h ago"
    default: return "\(seconds / 86400)d ago"
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
