import Foundation
import Synchronization

/// A fresh directory with a short path (`/tmp/hb-XXXXXX`: Unix socket paths
/// must stay under 108 bytes) for one test's sockets, databases, configs and
/// logs. It owns the brokers started in it: `cleanUp()` kills any still
/// running, then removes the directory (kept if `HOOKBUS_KEEP_TEST_DIRS` is set).
final class ScratchDirectory: Sendable {
    let root: String
    private let brokers = Mutex<[BrokerProcess]>([])

    init() throws {
        var template = Array("/tmp/hb-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw HarnessError("mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        root = String(cString: made)
    }

    /// `root/name`.
    func path(_ name: String) -> String { root + "/" + name }

    /// Writes `text` to `root/name` and returns the path.
    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let file = path(name)
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    /// A broker on `root/<socket>` and `root/<database>`, not started yet. With
    /// `pathsOnCommandLine` false, only `--config` is passed and the config file
    /// must name the same paths.
    func broker(socket: String = "s.sock", database: String = "hb.db", config: String? = nil,
                pathsOnCommandLine: Bool = true, environment: [String: String] = [:]) -> BrokerProcess {
        let broker = BrokerProcess(scratch: self, socketPath: path(socket), databasePath: path(database), configPath: config,
                                   pathsOnCommandLine: pathsOnCommandLine, environment: environment)
        brokers.withLock { $0.append(broker) }
        return broker
    }

    /// A broker started and answering `ping`.
    func startBroker(socket: String = "s.sock", database: String = "hb.db", config: String? = nil) async throws -> BrokerProcess {
        let broker = broker(socket: socket, database: database, config: config)
        try await broker.start()
        return broker
    }

    /// Kills every broker of this directory that still runs, then removes it.
    func cleanUp() {
        for broker in brokers.withLock({ $0 }) { broker.killNow() }
        if ProcessInfo.processInfo.environment["HOOKBUS_KEEP_TEST_DIRS"] == nil {
            try? FileManager.default.removeItem(atPath: root)
        }
    }
}
