/// Reply lines, written as bytes. Each ends with `\n`.
public enum Reply {
    public static func published(_ outcome: AppendOutcome, into out: inout JSONWriter) {
        out.beginObject()
        out.key("ok"); out.bool(true)
        switch outcome {
        case .stored(let seq, let id):
            out.key("seq"); out.int(seq)
            out.key("id"); out.string(id)
        case .duplicate(let seq, let id):
            out.key("seq"); out.int(seq)
            out.key("id"); out.string(id)
            out.key("duplicate"); out.bool(true)
        }
        out.endObject()
        out.newline()
    }

    public static func error(_ error: WireError, into out: inout JSONWriter) {
        out.beginObject()
        out.key("ok"); out.bool(false)
        out.key("error")
        out.beginObject()
        out.key("code"); out.string(error.code.rawValue)
        out.key("reason"); out.string(error.reason)
        if let attribute = error.attribute {
            out.key("attribute"); out.string(attribute)
        }
        out.key("message"); out.string(error.message)
        out.endObject()
        out.endObject()
        out.newline()
    }

    /// A delivery line, as pipe and socket subscribers receive it:
    /// `{"delivery":<n>,"subscriber":"...","seq":<seq>,"attempt":<a>[,"replay":true],"event":{...}}`.
    public static func delivery(id: Int, _ delivery: Delivery) -> [UInt8] {
        var out = JSONWriter(capacity: delivery.event.json.utf8.count + 96)
        out.beginObject()
        out.key("delivery"); out.int(id)
        out.key("subscriber"); out.string(delivery.subscriber)
        out.key("seq"); out.int(delivery.seq)
        out.key("attempt"); out.int(delivery.attempt)
        if delivery.replay { out.key("replay"); out.bool(true) }
        out.key("event"); out.raw(Array(delivery.event.json.utf8))
        out.endObject()
        out.newline()
        return out.bytes
    }

    /// `{"ok":true,"op":"<op>", ...members written by body}` and a newline.
    public static func ok(op: String, into out: inout JSONWriter, _ body: (inout JSONWriter) -> Void = { _ in }) {
        out.beginObject()
        out.key("ok"); out.bool(true)
        out.key("op"); out.string(op)
        body(&out)
        out.endObject()
        out.newline()
    }
}
