#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// An exclusive advisory lock on `<path>.lock`, held for the life of a process
/// that owns a database or a socket, so a second broker refuses to start.
///
/// The descriptor is close-on-exec, so subscriber processes never hold it, and
/// the kernel drops the lock when the process dies however it dies.
public final class LockFile: Sendable {
    public let path: String
    private let descriptor: Mutex<Int32>

    /// Takes the lock or throws `.locked` naming the pid written by the holder.
    public init(path: String, purpose: String) throws(StoreError) {
        self.path = path
        // Not through a symbolic link: whoever can write the directory could
        // otherwise have the broker (often root) truncate a file of their choosing.
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            let code = errno
            var message = "cannot open lock file \(path): \(String(cString: strerror(code)))"
            var directory = stat()
            if code == ENOENT && stat(AtomicFile.directory(of: path), &directory) != 0 {
                message += " (the directory \(AtomicFile.directory(of: path)) does not exist: create it, "
                    + "or give a path in one that does)"
            } else if code == ENOENT {
                message += " (files cannot be created in \(AtomicFile.directory(of: path)))"
            } else if code == ELOOP {
                message += " (it is a symbolic link, which hookbus does not follow: remove it)"
            }
            throw StoreError(.other, message)
        }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw StoreError(.other, "lock file \(path) is not a regular file: remove it")
        }
        // A lock just given up can linger for a moment in a child forked before
        // it was closed and not yet exec'd (the descriptor is close-on-exec):
        // try for half a second before calling the database taken.
        var granted = flock(fd, LOCK_EX | LOCK_NB) == 0
        for _ in 0..<50 where !granted {
            usleep(10_000)
            granted = flock(fd, LOCK_EX | LOCK_NB) == 0
        }
        guard granted else {
            var buffer = [UInt8](repeating: 0, count: 32)
            let count = pread(fd, &buffer, 31, 0)
            close(fd)
            let pid = count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self).trimmingSpaces : "?"
            throw StoreError(.locked, "\(purpose) is in use by another hookbusd (pid \(pid)); lock file \(path)")
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
        descriptor = Mutex(fd)
    }

    /// Gives the lock up now (it is also given up when the object goes away).
    public func release() {
        descriptor.withLock { fd in
            if fd >= 0 { close(fd) }
            fd = -1
        }
    }

    deinit {
        release()
    }
}

extension String {
    var trimmingSpaces: String {
        String(self.filter { !$0.isWhitespace })
    }
}
