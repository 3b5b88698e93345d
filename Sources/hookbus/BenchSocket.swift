import HookbusClient
import HookbusCore
#if canImport(Glibc)
import Glibc
#endif

/// Where a target listens: a Unix socket path, or `host:port` over TCP.
struct BenchAddress: Sendable, CustomStringConvertible {
    enum Kind: Sendable { case unix(String), tcp(host: String, port: UInt16) }
    var kind: Kind

    init(kind: Kind) {
        self.kind = kind
    }

    /// `unix:/path`, a path containing `/`, or `host:port`.
    init?(_ text: String) {
        if text.hasPrefix("unix:") {
            kind = .unix(String(text.dropFirst(5)))
        } else if text.contains("/") {
            kind = .unix(text)
        } else if let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) {
            kind = .tcp(host: String(text[..<colon]), port: port)
        } else {
            return nil
        }
    }

    var description: String {
        switch kind {
        case .unix(let path): return path
        case .tcp(let host, let port): return "\(host):\(port)"
        }
    }
}

/// A blocking stream socket with the few calls the load generator needs.
final class BenchSocket {
    struct Failure: Error, CustomStringConvertible { var description: String }

    let address: BenchAddress
    let fd: Int32

    init(connectingTo address: BenchAddress) throws(Failure) {
        self.address = address
        switch address.kind {
        case .unix(let path):
            guard path.utf8.count < 108 else { throw Failure(description: "socket path \(path) is longer than 107 bytes") }
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            let result = withUnixAddress(path) { connect(fd, $0, $1) }
            guard fd >= 0, result == 0 else {
                let text = Self.errorText()
                if fd >= 0 { close(fd) }
                throw Failure(description: "cannot connect to \(path): \(text)")
            }
            self.fd = fd
        case .tcp(let host, let port):
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            let name = host == "localhost" ? "127.0.0.1" : host
            guard inet_pton(AF_INET, name, &sin.sin_addr) == 1 else {
                if fd >= 0 { close(fd) }
                throw Failure(description: "\(host) is not an IPv4 address")
            }
            let result = withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard fd >= 0, result == 0 else {
                let text = Self.errorText()
                if fd >= 0 { close(fd) }
                throw Failure(description: "cannot connect to \(host):\(port): \(text)")
            }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            self.fd = fd
        }
    }

    deinit { close(fd) }

    /// Writes every byte of `bytes`.
    func write(_ bytes: [UInt8]) throws(Failure) {
        var failure: Failure?
        bytes.withUnsafeBytes { raw in
            do throws(Failure) { try write(raw) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    func write(_ raw: UnsafeRawBufferPointer) throws(Failure) {
        var offset = 0
        while offset < raw.count {
            let written = send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            if written < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "writing to \(address) failed: \(Self.errorText())")
            }
            offset += written
        }
    }

    /// Reads what is available into `inbox` (blocking until at least one byte,
    /// or the receive timeout); returns false at end of stream.
    func read(into inbox: inout BenchInbox) throws(Failure) -> Bool {
        while true {
            let count = inbox.receive { recv(fd, $0.baseAddress, $0.count, 0) }
            if count > 0 { return true }
            if count == 0 { return false }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return true }
            throw Failure(description: "reading from \(address) failed: \(Self.errorText())")
        }
    }

    /// Waits until the socket is readable or `nanoseconds` pass; true if readable.
    /// (pselect: POSIX, with a nanosecond timeout; ppoll is a GNU extension
    /// Swift's Glibc module does not export.)
    func waitReadable(nanoseconds: UInt64) -> Bool {
        var set = fd_set()
        withUnsafeMutableBytes(of: &set) { raw in
            let words = raw.bindMemory(to: UInt.self)
            let bits = UInt.bitWidth
            words[Int(fd) / bits] |= 1 << UInt(Int(fd) % bits)
        }
        var timeout = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        return pselect(fd + 1, &set, nil, nil, &timeout, nil) > 0
    }

    /// Makes `read` return after `milliseconds` without data (so a loop can check a flag).
    func setReceiveTimeout(milliseconds: Int) {
        var value = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    static func errorText() -> String { String(cString: strerror(errno)) }
}

/// Bytes read but not yet parsed. Replies are parsed in place; whatever is left
/// of an incomplete reply moves to the front before the next read.
struct BenchInbox {
    private(set) var storage: [UInt8]
    private(set) var start = 0
    private(set) var end = 0

    init(capacity: Int = 256 * 1024) {
        storage = [UInt8](repeating: 0, count: capacity)
    }

    var isEmpty: Bool { start == end }

    /// Lets `body` fill free space at the end; `body` returns the bytes it wrote (or -1).
    mutating func receive(_ body: (UnsafeMutableRawBufferPointer) -> Int) -> Int {
        if start == end {
            start = 0
            end = 0
        } else if storage.count - end < 16 * 1024 {
            if start > 0 {
                storage.withUnsafeMutableBytes { raw in
                    _ = memmove(raw.baseAddress!, raw.baseAddress! + start, end - start)
                }
                end -= start
                start = 0
            }
            if storage.count - end < 16 * 1024 {
                storage.append(contentsOf: [UInt8](repeating: 0, count: storage.count))
            }
        }
        let count = storage.withUnsafeMutableBytes { raw in
            body(UnsafeMutableRawBufferPointer(rebasing: raw[end...]))
        }
        if count > 0 { end += count }
        return count
    }

    /// Hands the unparsed bytes to `body`, which returns how many it consumed.
    mutating func parse(_ body: (UnsafeRawBufferPointer) -> Int) {
        let consumed = storage.withUnsafeBytes { raw in
            body(UnsafeRawBufferPointer(rebasing: raw[start..<end]))
        }
        start += consumed
    }
}
