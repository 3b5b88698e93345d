import Testing
@testable import HookbusServer

@Suite("LogStream")
struct LogStreamTests {
    @Test("control characters inside a log line are escaped; plain text and non-ASCII letters are left alone")
    func escapes() {
        #expect(LogStream.escaped("plain é Ω text") == "plain é Ω text")
        #expect(LogStream.escaped("a\nb\r\tc") == #"a\nb\r\tc"#)
        #expect(LogStream.escaped("\u{1B}[31mred\u{7F}\u{85}\u{0}") == #"\x1B[31mred\x7F\x85\x00"#)
        #expect(LogStream.escaped("x\u{2028}y\u{2029}") == #"x\u2028y\u2029"#)
    }
}
