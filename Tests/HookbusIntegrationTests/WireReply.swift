import Foundation
import HookbusClient

/// One reply line of the broker, decoded.
struct WireReply: Sendable, CustomStringConvertible {
    let line: String
    let ok: Bool
    let seq: Int64?
    let id: String?
    let duplicate: Bool
    let op: String?
    let code: String?
    let reason: String?
    let attribute: String?
    let message: String?

    init(_ line: String) throws {
        self.line = line
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let ok = object["ok"] as? Bool
        else {
            throw HarnessError("not a reply line: \(line)")
        }
        self.ok = ok
        seq = (object["seq"] as? NSNumber)?.int64Value
        id = object["id"] as? String
        duplicate = object["duplicate"] as? Bool ?? false
        op = object["op"] as? String
        let error = object["error"] as? [String: Any]
        code = error?["code"] as? String
        reason = error?["reason"] as? String
        attribute = error?["attribute"] as? String
        message = error?["message"] as? String
    }

    var description: String { line }
}

extension SocketClient {
    /// Connects to `path` with `SO_RCVTIMEO` and `SO_SNDTIMEO` set, so a read or
    /// a write that waits longer than `timeout` throws instead of hanging.
    static func connect(_ path: String, timeout: Duration) throws -> SocketClient {
        let client = try SocketClient(path: path)
        let seconds = timeout.components.seconds
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        for option in [SO_RCVTIMEO, SO_SNDTIMEO] {
            guard setsockopt(client.descriptor, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<timeval>.size)) == 0 else {
                throw HarnessError("setsockopt failed: \(String(cString: strerror(errno)))")
            }
        }
        return client
    }

    /// Sends `line` and decodes the reply.
    func call(_ line: String) throws -> WireReply {
        try WireReply(try request(line))
    }

    /// The next line, or nil once the broker has closed the connection. A reset
    /// counts as closed: Linux reports ECONNRESET, after the last byte the broker
    /// wrote, when the broker closes with lines of ours still unread.
    func readLineUntilClosed() throws -> String? {
        do {
            return try readLine()
        } catch where Self.isDisconnect(error) {
            return nil
        }
    }

    /// True for the failures that mean the broker went away: end of stream
    /// mid-conversation, a reset, a broken pipe.
    static func isDisconnect(_ error: SocketClient.Failure) -> Bool {
        ["closed the connection", String(cString: strerror(ECONNRESET)), String(cString: strerror(EPIPE))]
            .contains { error.description.contains($0) }
    }

    /// Reads and decodes the next reply; throws at end of stream.
    func nextReply() throws -> WireReply {
        guard let line = try readLine() else { throw HarnessError("hookbusd at \(path) closed the connection") }
        return try WireReply(line)
    }
}

/// Event lines for tests.
enum EventLine {
    /// A valid event line with the given attributes and a small `data` object.
    static func make(type: String = "test.event", source: String? = nil, id: String? = nil, data: String = #"{"n":1}"#) -> String {
        var members = [#""type":"\#(type)""#]
        if let source { members.append(#""source":"\#(source)""#) }
        if let id { members.append(#""id":"\#(id)""#) }
        members.append(#""data":\#(data)"#)
        return "{" + members.joined(separator: ",") + "}"
    }
}
