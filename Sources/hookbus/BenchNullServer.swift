import HookbusClient
import HookbusCore
#if canImport(Glibc)
import Glibc
#endif

/// A server that answers every line with a stored-looking reply and stores
/// nothing (`--target null`): what is left of a run against it is the cost of
/// the generator and the socket, the ceiling any broker is measured under.
///
/// One thread per connection, one reply write per read, like the generator.
final class BenchNullServer: @unchecked Sendable {
    let path: String
    private let listener: Int32
    private var acceptor: BenchThread<Void>?
    static let reply = Array(#"{"ok":true,"seq":1,"id":"null"}"#.utf8) + [0x0A]

    init(path: String) throws(BenchSocket.Failure) {
        self.path = path
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let bound = withUnixAddress(path) { bind(fd, $0, $1) }
        guard fd >= 0, bound == 0, listen(fd, 128) == 0 else {
            let text = BenchSocket.errorText()
            if fd >= 0 { close(fd) }
            throw BenchSocket.Failure(description: "cannot listen on \(path): \(text)")
        }
        listener = fd
        let listener = fd
        acceptor = BenchThread {
            while true {
                let client = accept(listener, nil, nil)
                if client < 0 {
                    if errno == EINTR { continue }
                    return
                }
                BenchThread { Self.serve(client) }.detach()
            }
        }
    }

    /// Stops accepting; connections end when their clients close them.
    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        _ = acceptor?.join()
        unlink(path)
    }

    private static func serve(_ fd: Int32) {
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        var out: [UInt8] = []
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { return }
            let lines = buffer.withUnsafeBytes { raw in
                var lines = 0
                var index = 0
                let bytes = UnsafeRawBufferPointer(rebasing: raw[..<count])
                while let newline = memchrIndex(0x0A, in: bytes, from: index) {
                    lines += 1
                    index = newline + 1
                }
                return lines
            }
            out.removeAll(keepingCapacity: true)
            for _ in 0..<lines { out.append(contentsOf: reply) }
            var offset = 0
            while offset < out.count {
                let written = out.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
                if written < 0 && errno == EINTR { continue }
                if written <= 0 { return }
                offset += written
            }
        }
    }
}
