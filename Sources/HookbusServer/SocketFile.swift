import HookbusCore
#if canImport(Glibc)
import Glibc
#endif

/// The socket's path on disk: checks before binding, permissions after.
enum SocketFile {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Makes `path` free to bind: refuses if a live broker answers on it or if it
    /// is not a socket; removes it if it is a stale socket left by a crash.
    static func prepare(_ path: String) throws {
        guard path.utf8.count < 108 else {
            throw Failure(description: "socket path \(path) is \(path.utf8.count) bytes; Unix socket paths must be shorter than 108")
        }
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw Failure(description: "\(path) exists and is not a socket; refusing to replace it")
        }
        if isServed(path) {
            throw Failure(description: "socket \(path) is served by another process (is another hookbusd running?)")
        }
        guard unlink(path) == 0 || errno == ENOENT else {
            throw Failure(description: "cannot remove stale socket \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// True if something accepts connections on `path`.
    static func isServed(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return withUnixAddress(path) { connect(fd, $0, $1) } == 0
    }

    /// Applies `socket_mode` and `socket_group` to the bound socket file.
    static func applyPermissions(_ path: String, mode: UInt32, group: String?) throws {
        if let group {
            let gid: gid_t
            if let number = gid_t(group) {
                gid = number
            } else if let entry = getgrnam(group) {
                gid = entry.pointee.gr_gid
            } else {
                throw Failure(description: "socket_group \"\(group)\" is not a known group")
            }
            guard chown(path, uid_t.max, gid) == 0 else {
                throw Failure(description: "cannot give \(path) to group \(group): \(String(cString: strerror(errno)))")
            }
        }
        guard chmod(path, mode_t(mode)) == 0 else {
            throw Failure(description: "cannot set mode \(String(mode, radix: 8)) on \(path): \(String(cString: strerror(errno)))")
        }
    }
}
