import HookbusTestSupport
import Testing
@testable import HookbusCore

@Suite("LineFramer")
struct LineFramerTests {
    static let max = 64

    /// A stream with every case the framer must handle, and the frames it must give.
    static let stream: (input: [UInt8], frames: [Frame]) = {
        var input: [UInt8] = []
        var frames: [Frame] = []
        func add(_ text: String, _ frame: Frame?) {
            input += Array(text.utf8)
            if let frame { frames.append(frame) }
        }
        func line(_ text: String) -> Frame { .line(Array(text.utf8)) }
        let exact = String(repeating: "a", count: max)
        add("{\"type\":\"one\"}\n", line(#"{"type":"one"}"#))
        add("\n", nil)                                                   // blank
        add("   \t\r\n", nil)                                            // blank with \r\n
        add("\r\n", nil)                                                 // blank \r\n
        add("{\"type\":\"two\"}\r\n", line(#"{"type":"two"}"#))
        add(String(repeating: "x", count: 5 * max) + "\n", .tooLarge(limit: max))
        add("{\"type\":\"three\"}\n", line(#"{"type":"three"}"#))
        add(exact + "\n", line(exact))                                   // exactly max
        add(exact + "\r\n", line(exact))                                 // exactly max, then \r\n
        add(exact + "b\n", .tooLarge(limit: max))                        // max + 1
        add(exact + "b\r\n", .tooLarge(limit: max))                      // max + 1, then \r\n
        add(exact + "\r\r\n", .tooLarge(limit: max))                     // a \r inside counts
        add(String(repeating: " ", count: max + 1) + "\n", .tooLarge(limit: max))
        add("  {\"type\":\"four\"}  \n", line(#"  {"type":"four"}  "#))  // kept as sent
        add("a\rb\n", line("a\rb"))                                      // \r only dropped at the end
        add("{\"type\":\"last\"}", line(#"{"type":"last"}"#))            // unterminated, from finish
        return (input, frames)
    }()

    /// Feeds `input` cut into chunks of the given sizes (cycled), then finishes.
    static func frames(of input: [UInt8], chunks sizes: [Int], max: Int = max) -> [Frame] {
        var framer = LineFramer(maxLineBytes: max)
        var frames: [Frame] = []
        var start = 0
        var turn = 0
        while start < input.count {
            let end = Swift.min(input.count, start + sizes[turn % sizes.count])
            turn += 1
            Array(input[start..<end]).withUnsafeBytes { framer.feed($0, into: &frames) }
            #expect(framer.bufferedBytes <= max + 1)
            start = end
        }
        framer.finish(into: &frames)
        #expect(framer.bufferedBytes == 0)
        return frames
    }

    @Test("fed whole, the stream gives the expected frames")
    func whole() {
        #expect(Self.frames(of: Self.stream.input, chunks: [Self.stream.input.count]) == Self.stream.frames)
    }

    @Test("fed byte by byte, the stream gives the same frames")
    func byteByByte() {
        #expect(Self.frames(of: Self.stream.input, chunks: [1]) == Self.stream.frames)
    }

    @Test("fed in random chunks, the stream gives the same frames", arguments: [UInt64(1), 2, 3, 42, 0xDEAD_BEEF, 2026])
    func randomChunks(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let sizes = (0..<500).map { _ in Int.random(in: 1...(2 * Self.max + 3), using: &random) }
        #expect(Self.frames(of: Self.stream.input, chunks: sizes) == Self.stream.frames)
    }

    @Test("every cut into two pieces gives the same frames")
    func everySplitPoint() {
        let input = Self.stream.input
        for cut in 1..<input.count {
            let frames = Self.frames(of: input, chunks: [cut, input.count])
            #expect(frames == Self.stream.frames, "cut at \(cut)")
            if frames != Self.stream.frames { return }
        }
    }

    @Test("a too-long line gives exactly one tooLarge, and the next line still comes through")
    func tooLargeOnce() {
        var framer = LineFramer(maxLineBytes: 16)
        var frames: [Frame] = []
        for _ in 0..<10 { frames += framer.feed(Array(repeating: UInt8(ascii: "z"), count: 10)) }
        frames += framer.feed(Array("zz\nok\n".utf8))
        #expect(frames == [.tooLarge(limit: 16), .line(Array("ok".utf8))])
    }

    @Test("memory stays bounded while a 10 MB line arrives in chunks", arguments: [4096, 65_536, 1_000_003])
    func boundedMemory(chunkSize: Int) {
        let limit = 1 << 20
        var framer = LineFramer(maxLineBytes: limit)
        var frames: [Frame] = []
        let chunk = [UInt8](repeating: UInt8(ascii: "q"), count: chunkSize)
        var fed = 0
        var maxBuffered = 0
        while fed < 10_000_000 {
            chunk.withUnsafeBytes { framer.feed($0, into: &frames) }
            fed += chunkSize
            maxBuffered = Swift.max(maxBuffered, framer.bufferedBytes)
        }
        #expect(maxBuffered <= limit + 1)
        #expect(frames == [.tooLarge(limit: limit)])
        Array("\n{\"type\":\"after\"}\n".utf8).withUnsafeBytes { framer.feed($0, into: &frames) }
        #expect(frames == [.tooLarge(limit: limit), .line(Array(#"{"type":"after"}"#.utf8))])
        #expect(framer.bufferedBytes == 0)
    }

    @Test("finish yields the unterminated last line", arguments: [
        ("tail", ["tail"]),
        ("tail\r", ["tail"]),
        ("one\ntwo", ["one", "two"]),
        ("one\n", ["one"]),
        ("one\n   ", ["one"]),
        ("", []),
    ])
    func finishYieldsLastLine(_ text: String, lines: [String]) {
        var framer = LineFramer(maxLineBytes: 64)
        var frames = framer.feed(Array(text.utf8))
        framer.finish(into: &frames)
        #expect(frames == lines.map { .line(Array($0.utf8)) })
    }

    @Test("finish after an unterminated too-long line yields nothing more, and the framer starts afresh")
    func finishWhileSkipping() {
        var framer = LineFramer(maxLineBytes: 8)
        var frames = framer.feed(Array(repeating: UInt8(ascii: "w"), count: 100))
        framer.finish(into: &frames)
        #expect(frames == [.tooLarge(limit: 8)])
        #expect(framer.feed(Array("next\n".utf8)) == [.line(Array("next".utf8))])
    }
}
