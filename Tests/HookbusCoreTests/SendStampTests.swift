@testable import HookbusCore
import Testing

/// The send time `hookbus bench` puts in an event's `data`, as the
/// latency-probe hook and the bench's subscribers read it.
@Suite("SendStamp: the bench's send time in an event")
struct SendStampTests {
    static func find(_ text: String) -> SendStamp? {
        var text = text
        return text.withUTF8 { SendStamp.find(in: UnsafeRawBufferPointer($0)) }
    }

    @Test("t and the warm-up mark, found wherever the data starts in the line")
    func found() {
        #expect(Self.find(#"{"delivery":3,"event":{"id":"x","data":{"t":1700000000000000123,"w":0,"pad":"xx"}}}"#)
            == SendStamp(sentAt: 1_700_000_000_000_000_123, digits: 19, warmup: false))
        #expect(Self.find(#"{"data":{"t":42,"w":1,"pad":""}}"#) == SendStamp(sentAt: 42, digits: 2, warmup: true))
        #expect(Self.find(#"{"data":{"t":42,"w":1}}"#)?.warmup == true)
        #expect(Self.find(#"{"data":{"t":42}}"#) == SendStamp(sentAt: 42, digits: 2, warmup: false), "no w: not a warm-up event")
    }

    @Test("no stamp: no marker, no digit, 20 digits or more; w must be 1 and end there")
    func notFound() {
        #expect(Self.find(#"{"data":{"n":1}}"#) == nil)
        #expect(Self.find(#"{"data":{"t":"soon"}}"#) == nil)
        #expect(Self.find(#"{"data":{"t":12345678901234567890}}"#) == nil)
        #expect(Self.find(#"{"data": {"t":1}}"#) == nil, "no spaces")
        #expect(Self.find(#"{"data":{"t":7,"w":10}}"#)?.warmup == false)
        #expect(Self.find(#"{"data":{"t":7,"w":2}}"#)?.warmup == false)
    }
}
