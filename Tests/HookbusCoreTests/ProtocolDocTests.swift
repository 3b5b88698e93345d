import Foundation
import Testing
@testable import HookbusCore

/// protocol/PROTOCOL.md and the code must not drift apart: error codes,
/// reasons, limits, and the example events.
@Suite("protocol/ agrees with the code")
struct ProtocolDocTests {
    private static let protocolDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("protocol")

    private static func read(_ name: String) throws -> String {
        try String(contentsOf: protocolDirectory.appendingPathComponent(name), encoding: .utf8)
    }

    /// The lines of a file as bytes: some examples are deliberately not UTF-8.
    private static func lines(_ name: String) throws -> [[UInt8]] {
        let bytes = [UInt8](try Data(contentsOf: protocolDirectory.appendingPathComponent(name)))
        var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map(Array.init)
        if lines.last?.isEmpty == true { lines.removeLast() }
        return lines
    }

    /// The `| code | reason | ...` rows of the error table, as (code, reason).
    private static func errorTable() throws -> [(code: String, reason: String)] {
        try read("PROTOCOL.md").split(separator: "\n").compactMap { line in
            guard line.hasPrefix("| `") else { return nil }
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 2 else { return nil }
            /// The first `quoted` word of a cell: "`invalid_json` (nesting)" -> "invalid_json".
            func name(_ cell: String) -> String {
                let parts = cell.split(separator: "`", omittingEmptySubsequences: false)
                return parts.count >= 3 ? String(parts[1]) : cell
            }
            return (name(cells[0]), name(cells[1]))
        }
    }

    @Test("every error code is documented, and the document lists no other")
    func errorCodes() throws {
        let documented = Set(try Self.errorTable().map(\.code))
        #expect(documented == Set(ErrorCode.allCases.map(\.rawValue)))
        let text = try Self.read("PROTOCOL.md")
        for code in ErrorCode.allCases {
            #expect(text.contains("\n    \(code.rawValue) "), "\(code.rawValue) missing from the list of codes")
        }
    }

    @Test("every reason the decoder gives is documented under its code")
    func reasons() throws {
        let documented = Set(try Self.errorTable().map { "\($0.code)/\($0.reason)" })
        let produced = Set(badLines.map { "\($0.code.rawValue)/\($0.reason)" } + ["too_large/too_large"])
        let missing = produced.subtracting(documented)
        #expect(missing.isEmpty, "not in PROTOCOL.md: \(missing.sorted())")
    }

    @Test("the documented limits are the ones in the code")
    func limits() throws {
        let text = try Self.read("PROTOCOL.md")
        #expect(text.contains("max_line_bytes     \(Limits().maxLineBytes) "))
        #expect(text.contains("JSON nesting       \(JSONScanner.maxDepth) levels"))
        #expect(text.contains("extension name     1 to 20 bytes"))
    }

    @Test("every example event in protocol/examples/publish.ndjson is accepted")
    func publishExamples() throws {
        let lines = try Self.lines("examples/publish.ndjson")
        #expect(!lines.isEmpty)
        for line in lines {
            let request = decode(line)
            #expect(request.event != nil, "refused: \(request.refusal?.message ?? "") in \(String(decoding: line, as: UTF8.self))")
        }
    }

    @Test("the invalid examples get the documented code and reason from the decoder")
    func invalidExamples() throws {
        let lines = try Self.lines("examples/invalid.ndjson")
        let expected = try Self.lines("examples/invalid.expected.ndjson")
        #expect(lines.count == expected.count)
        #expect(!lines.isEmpty)
        for (line, answer) in zip(lines, expected) {
            let want = try #require(foundationJSON(answer) as? [String: String])
            let request = decode(line)
            if case .command(let command) = request {
                // Commands are answered by the broker's router; only their op is decoded here.
                #expect(want["code"] == "unknown_op", "\(command.op)")
                continue
            }
            let shown = String(decoding: line.prefix(80), as: UTF8.self)
            let error = try #require(request.refusal, "accepted: \(shown)")
            #expect(error.code.rawValue == want["code"], "\(shown)")
            #expect(error.reason == want["reason"], "\(shown)")
        }
    }
}
