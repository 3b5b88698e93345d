import Foundation
import Testing
@testable import HookbusCore

/// `AtomicFile.write`, which the built-in hooks write with: readers see the
/// old file or the new one, never a mix.
@Suite("Hook files written atomically")
struct HookAtomicFileTests {
    @Test("write creates the file, then replaces its whole content; no temp file is left beside it (synced or not)",
          arguments: [true, false])
    func createsAndReplaces(durable: Bool) throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("hosts").path
        try AtomicFile.write("a much longer first version\nwith two lines\n", to: path, durable: durable)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "a much longer first version\nwith two lines\n")
        try AtomicFile.write("short\n", to: path, durable: durable)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "short\n", "nothing of the longer old content is left")
        try AtomicFile.write("", to: path, durable: durable)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)).isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["hosts"])
    }

    @Test("a symbolic link planted at the old temp name (<path>.tmp.<pid>) is not written through")
    func plantedLinkNotFollowed() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let victim = directory.appendingPathComponent("victim").path
        try "precious\n".write(toFile: victim, atomically: false, encoding: .utf8)
        let path = directory.appendingPathComponent("hosts").path
        try FileManager.default.createSymbolicLink(atPath: "\(path).tmp.\(getpid())", withDestinationPath: victim)
        try AtomicFile.write("new\n", to: path)
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "new\n")
    }

    @Test("a lock file that is a symbolic link is refused and its target left alone")
    func lockFileLinkRefused() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let victim = directory.appendingPathComponent("victim").path
        try "precious\n".write(toFile: victim, atomically: false, encoding: .utf8)
        let lock = directory.appendingPathComponent("hb.db.lock").path
        try FileManager.default.createSymbolicLink(atPath: lock, withDestinationPath: victim)
        let error = #expect(throws: StoreError.self) { try LockFile(path: lock, purpose: "database hb.db") }
        #expect(error?.message.contains("symbolic link") == true, "\(String(describing: error))")
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n")
    }

    @Test("the file is replaced by a rename: a reader that opened the old one keeps reading the old content")
    func replacedNotRewritten() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("sd.json").path
        try AtomicFile.write("old\n", to: path)
        let reader = try #require(FileHandle(forReadingAtPath: path))
        defer { try? reader.close() }
        try AtomicFile.write("new\n", to: path)
        #expect(String(decoding: reader.readDataToEndOfFile(), as: UTF8.self) == "old\n")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "new\n")
    }

    @Test("the mode asked for is the new file's mode")
    func mode() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("private").path
        try AtomicFile.write("x", to: path, mode: 0o600)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
    }

    @Test("a missing directory is an error naming the file and the reason; nothing is created")
    func missingDirectory() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("missing/hosts").path
        let failure = #expect(throws: AtomicFile.Failure.self) { try AtomicFile.write("x\n", to: path) }
        #expect(failure?.description.contains(path) == true, "\(failure?.description ?? "")")
        #expect(failure?.description.contains("No such file or directory") == true, "\(failure?.description ?? "")")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)
    }
}
