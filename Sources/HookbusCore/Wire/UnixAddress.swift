#if canImport(Glibc)
import Glibc
#endif

/// Calls `body` with the address of the Unix socket at `path`, for `bind` or
/// `connect` (the broker's, the client's, the bench's). Builds an address
/// only: opening sockets stays with the callers. A path longer than `sun_path` holds (107 bytes and its NUL) is
/// cut: callers that take a user's path refuse a longer one first.
public func withUnixAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        let bytes = Array(path.utf8.prefix(raw.count - 1))
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}
