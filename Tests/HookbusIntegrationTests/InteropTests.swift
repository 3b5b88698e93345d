import Foundation
import Testing

/// A producer that no one here wrote: the CloudEvents Python SDK
/// (`tools/interop/cloudevents_producer.py`) writes structured-mode JSON events,
/// and hookbus stores them as they were sent.
@Suite("Interop")
struct InteropTests {
    static let script = TestBinaries.packageRoot.appendingPathComponent("tools/interop/cloudevents_producer.py")
    /// The script's exit status when `import cloudevents` fails.
    static let sdkMissing: Int32 = 3
    static let install = "python3 -m pip install 'cloudevents>=2.2,<3'"

    @Test("events built by Python's cloudevents SDK, one with data_base64, are accepted and stored as sent")
    func pythonSDK() async throws {
        let scratch = try ScratchDirectory()
        defer { scratch.cleanUp() }
        let broker = try await scratch.startBroker()

        let result = try await ToolRun.run(URL(fileURLWithPath: "/usr/bin/env"), ["python3", Self.script.path, broker.socketPath],
                                           scratch: scratch, timeout: .seconds(60))
        try #require(result.status != Self.sdkMissing || result.signaled,
                     "the Python CloudEvents SDK is not installed; run: \(Self.install)\n\(result)")
        try #require(result.status == 0 && !result.signaled, "\(result)\n\(broker.log)")

        let outbox = try broker.outbox()
        var ids: [String] = []
        var withBase64 = 0
        for line in result.stdoutLines {
            let exchange = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            let sent = try #require(exchange["sent"] as? [String: Any], "\(line)")
            let reply = try WireReply(String(decoding: try JSONSerialization.data(withJSONObject: exchange["reply"] ?? [:]), as: UTF8.self))
            let id = try #require(sent["id"] as? String)
            let source = try #require(sent["source"] as? String)
            ids.append(id)
            #expect(reply.ok && !reply.duplicate && reply.id == id, "\(id): \(reply)")

            let row = try #require(try outbox.row(source: source, id: id), "\(id) is not in the outbox")
            #expect(row.seq == reply.seq)
            #expect(row.type == sent["type"] as? String, "\(id)")
            let stored = try #require(try JSONSerialization.jsonObject(with: Data(row.event.utf8)) as? [String: Any])
            // Every attribute the SDK wrote is stored with the same value (time included, as written).
            for (key, value) in sent {
                #expect(stored[key].map { Self.same($0, value) } == true,
                        "\(id): attribute \(key) was sent as \(value) but stored as \(stored[key] ?? "nothing")")
            }
            if let base64 = sent["data_base64"] as? String {
                withBase64 += 1
                #expect(stored["data"] == nil, "\(id)")
                #expect(Data(base64Encoded: base64) == Self.binary, "\(id): the SDK's data_base64 decodes to other bytes")
                #expect(stored["data_base64"] as? String == base64, "\(id)")
            }
        }
        #expect(ids == ["py-core-json", "py-core-binary", "py-core-nodata", "py-v1-json", "py-v1-binary"])
        #expect(withBase64 == 2, "the SDK was expected to write two events with data_base64")
        #expect(try outbox.count() == ids.count)
    }

    /// The bytes the script sends as binary data.
    static let binary = Data([0x00, 0x01, 0x02, 0x7F, 0x80, 0xFE, 0xFF] + Array("hookbus\n".utf8))

    /// JSON values compared as JSON (numbers, strings, booleans, arrays, objects).
    static func same(_ a: Any, _ b: Any) -> Bool {
        guard let left = try? JSONSerialization.data(withJSONObject: ["v": a], options: [.sortedKeys]),
              let right = try? JSONSerialization.data(withJSONObject: ["v": b], options: [.sortedKeys])
        else { return false }
        return left == right
    }
}
