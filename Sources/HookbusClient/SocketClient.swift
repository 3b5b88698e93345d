import HookbusCore
#if canImport(Glibc)
import Glibc
#endif

/// A blocking client for the broker's socket: write lines, read reply lines.
///
/// Used by the `hookbus` command line and by the tests; plain POSIX calls, no
/// event loop, because every use is one conversation at a time.
public final class SocketClient {
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    public let path: String
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var start = 0
    /// Bytes from `start` to here hold no newline (a long line is scanned once, not once a chunk).
    private var scanned = 0

    /// Connects to the broker at `path`, or throws a message naming the socket.
    /// `timeoutSeconds` (0: none) bounds the connect (a broker whose backlog is
    /// full) and every later read and write (`setTimeout`).
    public init(path: String, timeoutSeconds: Int = 0) throws(Failure) {
        self.path = path
        guard path.utf8.count < 108 else {
            throw Failure(description: "socket path \(path) is too long for a Unix socket (108 bytes at most)")
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "cannot create a socket: \(Self.errorText())") }
        // Before connect: Linux bounds a blocking connect by SO_SNDTIMEO.
        Self.setTimeout(fd, seconds: timeoutSeconds)
        let result = withUnixAddress(path) { connect(fd, $0, $1) }
        guard result == 0 else {
            let timedOut = errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS
            let text = Self.errorText()
            close(fd)
            if timedOut {
                throw Failure(description: "hookbusd at \(path) did not accept the connection within \(timeoutSeconds) s")
            }
            throw Failure(description: "cannot connect to hookbusd at \(path): \(text) (is hookbusd running? pass --socket)")
        }
        self.fd = fd
        self.timeoutSeconds = max(0, timeoutSeconds)
    }

    deinit { close(fd) }

    /// The last `setTimeout`, in seconds; 0 while reads and writes wait forever.
    public private(set) var timeoutSeconds = 0

    /// Makes a read or a write that waits longer than `seconds` throw (0: wait
    /// forever, the default): a broker that accepts but never answers must
    /// not hang an operator's command.
    public func setTimeout(seconds: Int) {
        Self.setTimeout(fd, seconds: seconds)
        timeoutSeconds = max(0, seconds)
    }

    private static func setTimeout(_ fd: Int32, seconds: Int) {
        var value = timeval(tv_sec: max(0, seconds), tv_usec: 0)
        for option in [SO_RCVTIMEO, SO_SNDTIMEO] {
            _ = setsockopt(fd, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<timeval>.size))
        }
    }

    private var timedOutText: String {
        timeoutSeconds > 0 ? "within \(timeoutSeconds) s" : "within the socket's timeout"
    }

    /// Writes `bytes` completely.
    public func write(_ bytes: [UInt8]) throws(Failure) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if written < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    throw Failure(description: "hookbusd at \(path) did not take the request \(timedOutText)")
                }
                throw Failure(description: "writing to \(path) failed: \(Self.errorText())")
            }
            offset += written
        }
    }

    /// Writes one line; a `\n` is added.
    public func send(line: String) throws(Failure) {
        try write(Array(line.utf8) + [0x0A])
    }

    /// Reads the next line without its `\n`; nil at end of stream.
    public func readLine() throws(Failure) -> String? {
        while true {
            if let newline = buffer[max(start, scanned)...].firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[start..<newline], as: UTF8.self)
                start = newline + 1
                scanned = start
                if start > 65536 {
                    buffer.removeFirst(start)
                    start = 0
                    scanned = 0
                }
                return line
            }
            scanned = buffer.count
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    throw Failure(description: "no answer from hookbusd at \(path) \(timedOutText)")
                }
                throw Failure(description: "reading from \(path) failed: \(Self.errorText())")
            }
            if count == 0 {
                if start < buffer.count {
                    let line = String(decoding: buffer[start...], as: UTF8.self)
                    buffer.removeAll()
                    start = 0
                    scanned = 0
                    return line
                }
                return nil
            }
            buffer.append(contentsOf: chunk[0..<count])
        }
    }

    /// Closes the writing side: the broker sees the end of input, answers what it read.
    public func finishWriting() {
        shutdown(fd, Int32(SHUT_WR))
    }

    /// Sends one line and returns the reply line. A broker that refuses the
    /// connection (too_many_connections) writes its reason and closes at once:
    /// if the line cannot be written, that reason is the reply.
    public func request(_ line: String) throws(Failure) -> String {
        do {
            try send(line: line)
        } catch {
            if let pending = try? readLine(), pending.hasPrefix("{") { return pending }
            throw error
        }
        guard let reply = try readLine() else {
            throw Failure(description: "hookbusd at \(path) closed the connection without replying")
        }
        return reply
    }

    /// The descriptor, for poll(2) in callers that wait with a deadline.
    public var descriptor: Int32 { fd }

    static func errorText() -> String { String(cString: strerror(errno)) }
}
