import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where hookbusd's log lines go: standard error, one `write` per line, with
/// every control character inside the line escaped.
///
/// Log lines carry text that others chose: a subscriber's `nack` error, an
/// exec's stderr tail, a pipe's output. Written raw, a newline in such a text
/// starts what looks like a line of the broker's own (`... critical hookbusd:
/// ...`), and an escape sequence acts on the terminal of whoever reads the
/// log. Escaped (`\n`, `\r`, `\t`, `\x1B`, `\u2028`), a log line is always
/// one line of the broker's, and says what came.
public struct LogStream: TextOutputStream, Sendable {
    public let descriptor: Int32
    /// One line at a time, from every thread: a line written in parts (a
    /// pipe's or a socket's partial write) is never interleaved with another.
    private static let lock = Mutex(())

    public init(descriptor: Int32 = 2) {
        self.descriptor = descriptor
    }

    public mutating func write(_ string: String) {
        // swift-log's StreamLogHandler writes a whole line, its "\n" last.
        var text = Substring(string)
        let ended = text.last == "\n"
        if ended { text = text.dropLast() }
        var bytes = Array(Self.escaped(text).utf8)
        if ended { bytes.append(0x0A) }
        let descriptor = self.descriptor
        Self.lock.withLock { _ in
            var offset = 0
            var stalls = 0
            while offset < bytes.count {
                let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
                if written < 0 && errno == EINTR { continue }
                if written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && stalls < 50 {
                    // A non-blocking stderr that is full: wait for room (up to about
                    // a second in all), rather than cut the line.
                    var ready = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&ready, 1, 20)
                    stalls += 1
                    continue
                }
                if written <= 0 { return }  // nowhere to log to: nothing better to do
                offset += written
            }
        }
    }

    /// `text` with its control characters (C0, DEL, C1) and Unicode line and
    /// paragraph separators written as escapes.
    public static func escaped<S: StringProtocol>(_ text: S) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return String(text) }
        var out = ""
        out.reserveCapacity(text.utf8.count + 16)
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0x2028, 0x2029: out += "\\u\(String(scalar.value, radix: 16))"
            case _ where needsEscape(scalar):
                let hex = String(scalar.value, radix: 16, uppercase: true)
                out += "\\x" + (hex.count < 2 ? "0" + hex : hex)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0..<0x20, 0x7F, 0x80..<0xA0, 0x2028, 0x2029: true
        default: false
        }
    }
}
