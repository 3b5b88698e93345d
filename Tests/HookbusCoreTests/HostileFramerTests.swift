import HookbusTestSupport
import Testing
@testable import HookbusCore

/// Hostile byte streams through `LineFramer`: however the bytes are chunked
/// (all at once, byte by byte, at random), the frames are the same and match
/// a plain model of protocol/PROTOCOL.md "Framing"; memory stays bounded by
/// the limit, whatever the stream.
@Suite("Hostile input: framer", .timeLimit(.minutes(2)))
struct HostileFramerTests {
    /// The framing rules, written the simple way: split at `\n`, drop one
    /// trailing `\r`, skip blank lines, refuse lines over the limit.
    static func model(_ stream: [UInt8], maxLineBytes: Int) -> [Frame] {
        var frames: [Frame] = []
        var segments = stream.split(separator: 0x0A, omittingEmptySubsequences: false)
        if stream.last == 0x0A { segments.removeLast() }  // nothing after the last newline
        for segment in segments {
            var line = Array(segment)
            if line.last == 0x0D { line.removeLast() }
            if line.count > maxLineBytes {
                frames.append(.tooLarge(limit: maxLineBytes))
            } else if !line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) {
                frames.append(.line(line))
            }
        }
        return frames
    }

    static func frame(_ stream: [UInt8], maxLineBytes: Int, chunks: [Int]) -> (frames: [Frame], maxBuffered: Int) {
        var framer = LineFramer(maxLineBytes: maxLineBytes)
        var frames: [Frame] = []
        var maxBuffered = 0
        var rest = stream[...]
        var sizes = chunks.makeIterator()
        while !rest.isEmpty {
            let take = min(rest.count, max(1, sizes.next() ?? rest.count))
            frames += framer.feed(Array(rest.prefix(take)))
            rest = rest.dropFirst(take)
            maxBuffered = max(maxBuffered, framer.bufferedBytes)
        }
        framer.finish(into: &frames)
        return (frames, maxBuffered)
    }

    @Test("2,000 random streams of newlines, carriage returns, blanks, NULs and bytes: the same frames whatever the chunking, as the model says")
    func chunkingNeverMatters() {
        let counter = HostileCounter()
        var random = SplitMix64(seed: 0x6057_1AE0_0002)
        let alphabet: [UInt8] = [0x0A, 0x0A, 0x0D, 0x20, 0x09, 0x00, 0x7B, 0x7D, 0x22, 0x41, 0xC3, 0xA9, 0xFF]
        for _ in 0..<2_000 {
            let maxLineBytes = Int.random(in: 1...24, using: &random)
            let length = Int.random(in: 0...200, using: &random)
            let stream = (0..<length).map { _ in
                Bool.random(using: &random) ? alphabet.randomElement(using: &random)! : UInt8.random(in: 0...255, using: &random)
            }
            let expected = Self.model(stream, maxLineBytes: maxLineBytes)
            let whole = Self.frame(stream, maxLineBytes: maxLineBytes, chunks: [])
            let bytewise = Self.frame(stream, maxLineBytes: maxLineBytes, chunks: Array(repeating: 1, count: stream.count))
            let chunks = (0..<stream.count).map { _ in Int.random(in: 1...16, using: &random) }
            let chunked = Self.frame(stream, maxLineBytes: maxLineBytes, chunks: chunks)
            for (how, result) in [("at once", whole), ("byte by byte", bytewise), ("in random chunks", chunked)] {
                #expect(result.frames == expected, "\(how), limit \(maxLineBytes): \(HostileInputTests.hex(stream))")
                #expect(result.maxBuffered <= maxLineBytes + 1, "\(how): held \(result.maxBuffered) bytes")
                counter.count()
            }
        }
        HostileFigures.record("framer chunkings", counter.value)
    }

    @Test("16 MiB without a newline: one too_large, at most the limit held, and the line after it gets through")
    func endlessLine() {
        let limit = 1 << 20
        var framer = LineFramer(maxLineBytes: limit)
        let chunk = [UInt8](repeating: UInt8(ascii: "["), count: 64 * 1024)
        var frames: [Frame] = []
        for _ in 0..<256 {
            frames += framer.feed(chunk)
            #expect(framer.bufferedBytes <= limit + 1)
        }
        #expect(frames == [.tooLarge(limit: limit)])
        let next = Array(#"{"type":"t.x"}"#.utf8)
        #expect(framer.feed([0x0A] + next + [0x0A]) == [.line(next)])
        #expect(framer.bufferedBytes == 0)
    }

    @Test("a megabyte of newlines, of carriage returns, of spaces or of tabs makes no frame")
    func nothingButSeparators() {
        for byte: UInt8 in [0x0A, 0x0D, 0x20, 0x09] {
            var framer = LineFramer(maxLineBytes: 1 << 20)
            let stream = [UInt8](repeating: byte, count: 1 << 20) + [0x0A]
            // A blank line of exactly the limit is still blank: nothing to answer.
            #expect(framer.feed(stream) == [], "byte \(byte)")
        }
    }
}
