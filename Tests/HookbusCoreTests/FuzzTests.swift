import Foundation
import HookbusTestSupport
import Testing
@testable import HookbusCore

/// Random and mutated lines through the whole decoder. Seeded, so a failure
/// reproduces; the failing line is printed in hex.
@Suite("Decoder fuzzing")
struct FuzzTests {
    /// Bytes that make random text look like JSON more often than chance would.
    private static let jsonish: [UInt8] = Array(#"{}[]":,.-+0123456789eEtrufalsn\ /bu"#.utf8)
        + Array(#""type""id""data""op""source""time""specversion""#.utf8)

    private static let validEvents: [String] = [
        #"{"type":"client.added","source":"fleet","id":"c1","data":{"ip":"10.0.0.2","hostname":"h1","fleet":"f"}}"#,
        #"{"specversion":"1.0","type":"client.removed","time":"2026-11-23T05:30:00.25+01:00","subject":"h","data":[1,-2.5e3,true,null]}"#,
        #"{"type":"caf\u00e9.\ud83d\ude00","data_base64":"aGVsbG8gd29ybGQ=","region":"eu","prio":3,"flag":false}"#,
        #"{"op":"subscribe","name":"indexer","types":["client.*"],"window":16}"#,
        #"  {"type":"x","data":"line\nwith \"escapes\" \\ and é"}  "#,
    ]

    private static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    /// The properties every line must have, whatever it holds.
    private static func check(_ line: [UInt8]) {
        let request = decode(line)
        let scannerAccepts = (try? JSONScanner.scan(line)) != nil
        switch request {
        case .publish(let event):
            #expect(!event.type.isEmpty, "line \(hex(line))")
            #expect(!event.id.isEmpty && !event.source.isEmpty, "line \(hex(line))")
            #expect(Timestamp.parse(event.time) != nil, "line \(hex(line))")
            // What is stored must be a JSON object by an independent parser's account.
            #expect(foundationJSON(event.json) is [String: Any], "line \(hex(line))")
        case .command(let command):
            #expect(scannerAccepts, "line \(hex(line))")
            #expect(command.line == line)
        case .refused(let error):
            #expect(ErrorCode.allCases.contains(error.code), "line \(hex(line))")
            #expect([.invalidJSON, .invalidEvent, .badRequest].contains(error.code), "line \(hex(line))")
            #expect(!error.reason.isEmpty && !error.message.isEmpty, "line \(hex(line))")
            // Whatever the scanner accepts is JSON.
            if error.code != .invalidJSON {
                #expect(scannerAccepts, "line \(hex(line))")
            }
        }
        if scannerAccepts {
            #expect(foundationJSON(line) != nil, "scanner accepted what Foundation refuses: \(hex(line))")
        }
    }

    @Test("2,000 random byte strings never crash the decoder", arguments: [UInt64(0x5EED_0001)])
    func randomBytes(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        for _ in 0..<2_000 {
            let length = Int.random(in: 0...96, using: &random)
            var line: [UInt8] = []
            line.reserveCapacity(length + 2)
            if Bool.random(using: &random) { line.append(UInt8(ascii: "{")) }
            for _ in 0..<length {
                if Int.random(in: 0..<4, using: &random) == 0 {
                    line.append(UInt8.random(in: 0...255, using: &random))
                } else {
                    line.append(Self.jsonish.randomElement(using: &random)!)
                }
            }
            Self.check(line)
        }
    }

    @Test("2,000 mutations of valid events never crash the decoder", arguments: [UInt64(0x5EED_0002)])
    func mutatedEvents(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let originals = Self.validEvents.map { Array($0.utf8) }
        // The originals themselves are fine.
        for original in originals {
            if case .refused(let error) = decode(original) {
                Issue.record("a valid line was refused: \(error.message)")
            }
        }
        for _ in 0..<2_000 {
            var line = originals.randomElement(using: &random)!
            for _ in 0..<Int.random(in: 1...3, using: &random) where !line.isEmpty {
                let at = Int.random(in: 0..<line.count, using: &random)
                switch Int.random(in: 0..<6, using: &random) {
                case 0: line = Array(line[..<at])                                   // cut the end off
                case 1: line = Array(line[at...])                                   // cut the start off
                case 2: line[at] = UInt8.random(in: 0...255, using: &random)        // replace a byte
                case 3: line[at] ^= 1 << UInt8.random(in: 0..<8, using: &random)    // flip a bit
                case 4: line.insert(Self.jsonish.randomElement(using: &random)!, at: at)
                default: line.remove(at: at)
                }
            }
            Self.check(line)
        }
    }
}
