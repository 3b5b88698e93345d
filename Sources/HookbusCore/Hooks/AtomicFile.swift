#if canImport(Glibc)
import Glibc
#endif

/// Replaces a file so readers see either the old or the new content, never a
/// mix, even across a crash: a new temp file in the same directory (a random
/// name, created exclusively, never through a symbolic link), fsync, rename,
/// fsync of the directory.
///
/// `durable: false` leaves out both fsyncs: readers still never see a mix,
/// but after a crash the file may be the old one, empty, or missing if it
/// was new (and a `<path>.tmp.<pid>.<random>` may be left beside it). For files that
/// are rewritten often and matter only while the broker runs (a report), so
/// that writing them does not flush the disk beside the broker's commits.
public enum AtomicFile {
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    public static func write(_ text: String, to path: String, mode: mode_t = 0o644, durable: Bool = true) throws(Failure) {
        // A new file under a name nobody can guess, never through a link: a
        // name planted in a directory others can write (a symbolic link to a
        // file of root's) must not be written through.
        var temp = ""
        var fd: Int32 = -1
        for _ in 0..<8 {
            temp = "\(path).tmp.\(getpid()).\(UInt64.random(in: 0...UInt64.max) & 0xFFFF_FFFF_FFFF)"
            fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
            if fd >= 0 || errno != EEXIST { break }
        }
        guard fd >= 0 else { throw failure("cannot create \(temp)") }
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                let problem = failure("cannot write \(temp)")
                close(fd)
                unlink(temp)
                throw problem
            }
            offset += written
        }
        guard !durable || fsync(fd) == 0 else {
            let problem = failure("cannot fsync \(temp)")
            close(fd)
            unlink(temp)
            throw problem
        }
        close(fd)
        guard rename(temp, path) == 0 else {
            let problem = failure("cannot rename \(temp) to \(path)")
            unlink(temp)
            throw problem
        }
        // The new name, best effort (the content is in place either way).
        if durable { _ = try? syncDirectory(of: path) }
    }

    /// fsyncs the directory that holds `path`, so that the names created in it
    /// are on the disk; returns that directory.
    @discardableResult
    public static func syncDirectory(of path: String) throws(Failure) -> String {
        let directory = directory(of: path)
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw failure("cannot open the directory \(directory) of \(path) to sync it") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw failure("cannot sync the directory \(directory) of \(path)") }
        return directory
    }

    /// The directory that holds `path`: "/" for a file at the root, "." for a bare name.
    static func directory(of path: String) -> String {
        path.lastIndex(of: "/").map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
    }

    private static func failure(_ what: String) -> Failure {
        Failure(description: "\(what): \(String(cString: strerror(errno)))")
    }
}
