import Foundation
@testable import HookbusCore

/// The producer every test line comes from.
let testProducer = Producer(uid: 1000, gid: 100, pid: 4242)

/// A fixed receipt time: 2026-11-23T04:30:00.123456Z.
let testNow: Int64 = 1_795_408_200_123_456

extension Request {
    var refusal: WireError? {
        if case .refused(let error) = self { return error }
        return nil
    }

    var event: NewEvent? {
        if case .publish(let event) = self { return event }
        return nil
    }

    var command: Command? {
        if case .command(let command) = self { return command }
        return nil
    }
}

/// Decodes one line as the broker would.
func decode(_ line: [UInt8], now: Int64 = testNow) -> Request {
    RequestDecoder().decode(line: line, producer: testProducer, nowMicros: now)
}

func decode(_ line: String, now: Int64 = testNow) -> Request {
    decode(Array(line.utf8), now: now)
}

/// Builds a valid event through the decoder, the only way the broker builds one.
func makeEvent(id: String? = nil, source: String? = "test", type: String = "client.added", data: String = "{}") -> NewEvent {
    var members = ["\"type\":\"\(type)\""]
    if let id { members.append("\"id\":\"\(id)\"") }
    if let source { members.append("\"source\":\"\(source)\"") }
    members.append("\"data\":\(data)")
    let line = "{" + members.joined(separator: ",") + "}"
    guard let event = decode(line).event else {
        preconditionFailure("test event did not validate: \(line)")
    }
    return event
}

/// Parses JSON with Foundation, the independent reference.
func foundationJSON(_ bytes: [UInt8]) -> Any? {
    try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
}

/// A fresh directory under the system temporary directory; the caller removes it.
func makeTemporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("hookbus-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// The database file a test opens in `directory`.
func databasePath(in directory: URL) -> String {
    directory.appendingPathComponent("hookbus.db").path
}

/// Runs `body` with a temporary directory that is removed afterwards.
func withTemporaryDirectory<T>(_ body: (URL) async throws -> T) async throws -> T {
    let url = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: url) }
    return try await body(url)
}
