import Foundation

/// Two real, unprivileged users for the access-control tests, made once per
/// test run with useradd(8) if they do not exist yet (each with a group of its
/// own). Needs root; the security suites are skipped otherwise.
enum SecurityUsers {
    struct User: Sendable, CustomStringConvertible {
        var name: String
        var uid: UInt32
        var gid: UInt32
        var description: String { "\(name) (uid \(uid), gid \(gid))" }
    }

    static let names = ["hbtest1", "hbtest2"]

    /// True when the tests can create users and switch to them.
    static let available: Bool = getuid() == 0
        && FileManager.default.isExecutableFile(atPath: "/usr/sbin/useradd")
        && FileManager.default.isExecutableFile(atPath: setpriv)
        && FileManager.default.isExecutableFile(atPath: python)

    static let setpriv = "/usr/bin/setpriv"
    /// The system's Python, which other users can run (root's pyenv is not theirs to read).
    static let python = "/usr/bin/python3"

    /// Made at most once, whichever test asks first (a static is initialised once, under a lock).
    private static let made: Result<[User], HarnessError> = {
        var users: [User] = []
        for name in names {
            if getpwnam(name) == nil {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/sbin/useradd")
                process.arguments = ["--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
                process.standardOutput = FileHandle.nullDevice
                process.standardError = FileHandle.nullDevice
                do { try process.run() } catch { return .failure(HarnessError("cannot run useradd: \(error)")) }
                process.waitUntilExit()
                // 9: the name exists (made meanwhile by someone else): fine.
                guard process.terminationStatus == 0 || process.terminationStatus == 9 else {
                    return .failure(HarnessError("useradd \(name) exited with status \(process.terminationStatus)"))
                }
            }
            guard let entry = getpwnam(name) else { return .failure(HarnessError("user \(name) does not exist after useradd")) }
            users.append(User(name: name, uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid))
        }
        return .success(users)
    }()

    /// hbtest1 and hbtest2, made if needed.
    static func both() throws -> (User, User) {
        let users = try made.get()
        return (users[0], users[1])
    }

    /// The name of the group with `gid`.
    static func groupName(_ gid: UInt32) throws -> String {
        guard let entry = getgrgid(gid) else { throw HarnessError("no group with gid \(gid)") }
        return String(cString: entry.pointee.gr_name)
    }
}

/// A scratch directory others may enter: a directory made by mkdtemp is
/// 0700, and a socket inside it is out of reach of any other user whatever its mode.
extension ScratchDirectory {
    func openToOthers() throws {
        guard chmod(root, 0o755) == 0 else { throw HarnessError("chmod \(root): \(String(cString: strerror(errno)))") }
    }

    /// A directory anyone may write into (for subscribers running as other users).
    func worldWritable(_ name: String) throws -> String {
        let directory = path(name)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        guard chmod(directory, 0o777) == 0 else { throw HarnessError("chmod \(directory): \(String(cString: strerror(errno)))") }
        return directory
    }
}

/// A client run as another user: `setpriv --reuid --regid --clear-groups
/// python3 client.py <socket>`, sending its stdin line by line, printing one
/// reply per line, or `{"connect_error":"EACCES"}` when it cannot connect.
enum SecurityClient {
    static let script = """
        import errno, json, socket, sys
        path = sys.argv[1]
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        try:
            s.connect(path)
        except OSError as e:
            print(json.dumps({"connect_error": errno.errorcode.get(e.errno, str(e.errno))}))
            sys.exit(3)
        f = s.makefile("rwb")
        for line in sys.stdin.buffer:
            if not line.strip():
                continue
            f.write(line.rstrip(b"\\n") + b"\\n")
            f.flush()
            reply = f.readline()
            if not reply:
                print(json.dumps({"closed": True}))
                sys.exit(4)
            sys.stdout.write(reply.decode())
            sys.stdout.flush()

        """

    /// What the client saw: the broker's replies, or why it could not connect.
    struct Outcome: Sendable {
        var replies: [WireReply]
        /// `EACCES`, `ENOENT`, ... when connect(2) failed.
        var connectError: String?
    }

    /// Sends `lines` as `user` to the socket at `socket`, one at a time, each
    /// answered before the next.
    static func run(as user: SecurityUsers.User, socket: String, lines: [String], scratch: ScratchDirectory) async throws -> Outcome {
        let client = scratch.path("client.py")
        if !FileManager.default.fileExists(atPath: client) { try scratch.write("client.py", script) }
        let result = try await ToolRun.run(
            URL(fileURLWithPath: SecurityUsers.setpriv),
            ["--reuid=\(user.uid)", "--regid=\(user.gid)", "--clear-groups", SecurityUsers.python, "-I", client, socket],
            stdin: Array((lines.joined(separator: "\n") + "\n").utf8), scratch: scratch,
            environment: ["PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"])
        guard !result.signaled, result.status == 0 || result.status == 3 else {
            throw HarnessError("the client as \(user) failed: \(result)")
        }
        if result.status == 3 {
            let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
            return Outcome(replies: [], connectError: object?["connect_error"] as? String ?? result.stdout)
        }
        let replies = try result.stdoutLines.map { try WireReply($0) }
        guard replies.count == lines.count else {
            throw HarnessError("\(lines.count) lines sent as \(user), \(replies.count) replies: \(result)")
        }
        return Outcome(replies: replies, connectError: nil)
    }
}
