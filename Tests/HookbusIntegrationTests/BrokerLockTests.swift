import Foundation
import Testing

/// One broker per database and per socket; a crashed broker's socket file does
/// not stop the next one.
@Suite("Broker locks")
struct BrokerLockTests {
    @Test("a second broker on the same database refuses to start and names the database")
    func sameDatabase() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()
        let otherSocket = scratch.path("other.sock")

        let second = try await ToolRun.run(try TestBinaries.hookbusd(), ["--socket", otherSocket, "--db", broker.databasePath],
                                           scratch: scratch)
        #expect(!second.signaled && second.status != 0, "\(second)")
        #expect(second.stderr.contains("cannot start"), "\(second)")
        #expect(second.stderr.contains(broker.databasePath), "the message does not name the database: \(second)")
        #expect(!FileManager.default.fileExists(atPath: otherSocket), "the refused broker left a socket file")
        #expect(try broker.connect().call(#"{"op":"ping"}"#).ok, "the first broker stopped answering")
    }

    @Test("a second broker on the same socket refuses to start and names the socket")
    func sameSocket() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()

        let second = try await ToolRun.run(try TestBinaries.hookbusd(), ["--socket", broker.socketPath, "--db", scratch.path("other.db")],
                                           scratch: scratch)
        #expect(!second.signaled && second.status != 0, "\(second)")
        #expect(second.stderr.contains(broker.socketPath), "the message does not name the socket: \(second)")
        #expect(FileManager.default.fileExists(atPath: broker.socketPath), "the refused broker removed the live socket file")
        #expect(!FileManager.default.fileExists(atPath: scratch.path("other.db")), "the refused broker created a database")
        let reply = try broker.connect().call(EventLine.make(source: "lock", id: "after"))
        #expect(reply.ok, "the first broker stopped serving: \(reply)")

        // A socket in a directory that does not exist: refused, saying so, and no database either.
        let nowhere = try await ToolRun.run(try TestBinaries.hookbusd(), ["--socket", scratch.path("none/s.sock"), "--db", scratch.path("new.db")],
                                            scratch: scratch)
        #expect(!nowhere.signaled && nowhere.status != 0 && nowhere.stderr.contains("does not exist"), "\(nowhere)")
        #expect(!FileManager.default.fileExists(atPath: scratch.path("new.db")), "the refused broker created a database")
    }

    @Test("a stale socket file left by a killed broker is replaced")
    func staleSocketReplaced() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()
        let first = try broker.connect().call(EventLine.make(source: "stale", id: "before"))
        try #require(first.ok, "\(first)")

        try await broker.kill()
        var info = stat()
        try #require(lstat(broker.socketPath, &info) == 0, "SIGKILL should leave the socket file behind")
        #expect(info.st_mode & S_IFMT == S_IFSOCK)

        try await broker.restart()
        let client = try broker.connect()
        #expect(try client.call(#"{"op":"ping"}"#).ok)
        let again = try client.call(EventLine.make(source: "stale", id: "before"))
        #expect(again.duplicate && again.seq == first.seq, "\(again)")
    }

    @Test("a file at the socket path that is not a socket is left alone and the broker does not start")
    func notASocket() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let path = try scratch.write("s.sock", "precious\n")

        let result = try await ToolRun.run(try TestBinaries.hookbusd(), ["--socket", path, "--db", scratch.path("hb.db")],
                                           scratch: scratch)
        #expect(!result.signaled && result.status != 0, "\(result)")
        #expect(result.stderr.contains(path), "\(result)")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "precious\n")
    }
}
