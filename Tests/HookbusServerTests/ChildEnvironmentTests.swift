import Foundation
@testable import HookbusServer
import Subprocess
import SystemPackage
import Testing

/// A bare command name is looked up in the child's PATH by the broker itself
/// (swift-subprocess would start a process per PATH directory to find it).
@Suite("ChildEnvironment: finding a command in PATH")
struct ChildEnvironmentTests {
    @Test("the first executable regular file of that name wins; directories, plain files and missing ones are passed over")
    func lookup() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("hb-path-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let manager = FileManager.default
        for directory in ["a", "b", "c", "d"] {
            try manager.createDirectory(atPath: "\(root)/\(directory)", withIntermediateDirectories: true)
        }
        try manager.createDirectory(atPath: "\(root)/a/tool", withIntermediateDirectories: true)  // a directory
        _ = manager.createFile(atPath: "\(root)/b/tool", contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o644])
        _ = manager.createFile(atPath: "\(root)/c/tool", contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755])
        _ = manager.createFile(atPath: "\(root)/d/tool", contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755])

        let path = "\(root)/missing::\(root)/a:\(root)/b/:\(root)/c:\(root)/d"
        #expect(ChildEnvironment.executable("tool", searchPath: path) == .path(FilePath("\(root)/c/tool")))
        #expect(ChildEnvironment.executable("nothing-by-this-name", searchPath: path) == .name("nothing-by-this-name"),
                "not found: left to swift-subprocess, which reports it")
        #expect(ChildEnvironment.executable("./tool", searchPath: path) == .path(FilePath("./tool")), "a path is taken as it is")
        #expect(ChildEnvironment.executable("sh", searchPath: nil) != .name("sh"), "no PATH of its own: the broker's")
    }
}
