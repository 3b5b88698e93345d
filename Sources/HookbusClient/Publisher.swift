import HookbusCore

/// Publishes many lines over one connection with up to `window` unanswered, as
/// `hookbus publish` does with NDJSON on stdin. Replies come back in order.
public struct Publisher {
    public let client: SocketClient
    public let window: Int

    public init(client: SocketClient, window: Int = 64) {
        self.client = client
        self.window = max(1, window)
    }

    /// Sends every non-blank line of `lines`, calling `onReply` with each line and
    /// its reply, in order. Throws if the broker goes away before answering all.
    public func publish(_ lines: some Sequence<String>, onReply: (String, String) throws -> Void) throws {
        try publish(bytes: lines.lazy.map { Array($0.utf8) }) { line, reply in
            try onReply(String(decoding: line, as: UTF8.self), reply)
        }
    }

    /// The same with lines given as bytes, sent exactly as they are (without
    /// their `\n`): bytes that are not UTF-8 reach the broker, which refuses the
    /// line with `invalid_utf8` instead of storing a repaired copy.
    public func publish(bytes lines: some Sequence<[UInt8]>, onReply: ([UInt8], String) throws -> Void) throws {
        var waiting: [[UInt8]] = []
        var next = 0
        func collect(downTo limit: Int) throws {
            while waiting.count - next > limit {
                guard let reply = try client.readLine() else {
                    throw SocketClient.Failure(description:
                        "hookbusd at \(client.path) closed the connection with \(waiting.count - next) line(s) unanswered")
                }
                try onReply(waiting[next], reply)
                next += 1
            }
            if next > 1024 {
                waiting.removeFirst(next)
                next = 0
            }
        }
        // Lines the broker ignores, and so does not answer.
        for line in lines where !LineFramer.isBlank(line) {
            do {
                try client.write(line + [0x0A])
            } catch {
                // The broker stopped reading (shutting down, say): what it answered
                // for earlier lines still counts, so read that before reporting.
                try? collect(downTo: 0)
                throw error
            }
            waiting.append(line)
            try collect(downTo: window - 1)
        }
        try collect(downTo: 0)
    }
}
