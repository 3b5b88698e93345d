import Synchronization

/// Turns a line into an event to store, following the event rules of
/// protocol/PROTOCOL.md (CloudEvents 1.0, structured JSON mode).
///
/// Each kind of bad input has its own `reason`, and the message names the
/// attribute and what was received; the payload itself is never quoted.
public struct EventValidator: Sendable {
    public let ids: EventIDGenerator
    let timeCache: TimeCache

    public init(ids: EventIDGenerator = EventIDGenerator()) {
        self.ids = ids
        self.timeCache = TimeCache()
    }

    /// Validates the members of an event line (one without `op`) and builds the event.
    /// - Parameters:
    ///   - line: the line's bytes, as framed.
    ///   - members: its top-level members, from `JSONScanner`.
    ///   - producer: the connection's peer credentials.
    ///   - nowMicros: the receipt time.
    public func validate(
        line: [UInt8], members: [JSONMember], producer: Producer, nowMicros: Int64
    ) -> Result<NewEvent, WireError> {
        // The context attributes are told apart by length first (a member costs
        // one or two comparisons) and their duplicates by a bit each; extension
        // names are compared among themselves. A hostile line with thousands of
        // members gets a set.
        var attributes = Attributes(members: members)
        if members.count <= 16 {
            var seen: UInt16 = 0
            for (index, member) in members.enumerated() {
                let duplicate: Bool
                if let slot = Attribute(member.key) {
                    duplicate = seen & slot.bit != 0
                    seen |= slot.bit
                    attributes.index[Int(slot.rawValue)] = index
                } else {
                    duplicate = members[..<index].contains { $0.key == member.key }
                }
                if duplicate {
                    return .failure(WireError(.invalidEvent, "duplicate_attribute", attribute: member.key,
                                              "attribute '\(member.key)' appears more than once"))
                }
            }
        } else {
            var seen = Set<String>()
            for member in members where !seen.insert(member.key).inserted {
                return .failure(WireError(.invalidEvent, "duplicate_attribute", attribute: member.key,
                                          "attribute '\(member.key)' appears more than once"))
            }
            for (index, member) in members.enumerated() {
                if let slot = Attribute(member.key) { attributes.index[Int(slot.rawValue)] = index }
            }
        }
        for member in members {
            if let problem = check(member) { return .failure(problem) }
        }
        guard let typeMember = attributes[.type] else {
            return .failure(WireError(.invalidEvent, "missing_type", attribute: "type", "missing required attribute 'type'"))
        }
        let type = typeMember.string ?? ""
        if type.isEmpty {
            return .failure(WireError(.invalidEvent, "missing_type", attribute: "type", "attribute 'type' must not be empty"))
        }
        if let spec = attributes[.specversion], spec.string != "1.0" {
            return .failure(WireError(.invalidEvent, "bad_specversion", attribute: "specversion",
                                      "attribute 'specversion' must be \"1.0\", got \"\(Self.clip(spec.string ?? ""))\""))
        }
        for attribute in [Attribute.id, .source] {
            if let member = attributes[attribute], member.string?.isEmpty == true {
                let name = member.key
                return .failure(WireError(.invalidEvent, "empty_attribute", attribute: name,
                                          "attribute '\(name)' must not be empty (leave it out to get a default)"))
            }
        }
        if attributes[.data] != nil && attributes[.dataBase64] != nil {
            return .failure(WireError(.invalidEvent, "data_conflict", attribute: "data_base64",
                                      "attributes 'data' and 'data_base64' must not both be present"))
        }
        if let base64 = attributes[.dataBase64]?.string, !Self.isBase64(base64) {
            return .failure(WireError(.invalidEvent, "bad_base64", attribute: "data_base64",
                                      "attribute 'data_base64' is not valid base64"))
        }
        if let time = attributes[.time]?.string, Timestamp.parse(time) == nil {
            return .failure(WireError(.invalidEvent, "bad_time", attribute: "time",
                                      "attribute 'time' must be an RFC 3339 date-time like 2026-11-23T04:30:00Z, got \"\(Self.clip(time))\""))
        }

        // `urn:hookbus:uid:N` is the source the broker gives a producer that sends
        // none; naming another uid's would pass events off as that user's.
        if let given = attributes[.source]?.string, Self.isReserved(source: given), given != producer.defaultSource {
            return .failure(WireError(.unauthorized, "source_reserved", attribute: "source",
                                      "attribute 'source' \"\(Self.clip(given))\" is reserved: \(Self.reservedSourcePrefix)N names "
                                      + "the producer whose uid is N (yours is \(producer.defaultSource)); leave source out to get it, "
                                      + "or name your own"))
        }

        // Defaults, spliced in at the front of the producer's own bytes.
        var injected = JSONWriter(capacity: 128)
        let id = attributes[.id]?.string ?? ids.next(nowMicros: nowMicros)
        let source = attributes[.source]?.string ?? producer.defaultSource
        let time = attributes[.time]?.string ?? receiptTime(nowMicros)
        if attributes[.specversion] == nil { injected.key("specversion"); injected.string("1.0") }
        if attributes[.id] == nil { injected.key("id"); injected.string(id) }
        if attributes[.source] == nil { injected.key("source"); injected.string(source) }
        if attributes[.time] == nil { injected.key("time"); injected.string(time) }
        let json = Self.splice(injected.bytes, into: line)
        return .success(NewEvent(
            id: id, source: source, type: type, subject: attributes[.subject]?.string, time: time,
            json: json, producer: producer, receivedAtMicros: nowMicros))
    }

    /// Sources under this prefix are the broker's to give (`Producer.defaultSource`).
    static let reservedSourcePrefix = "urn:hookbus:uid:"

    /// Whether `source` starts with `reservedSourcePrefix` in any case: a URN's
    /// scheme and namespace are case-insensitive, so a subscriber that folds
    /// case would read `URN:Hookbus:uid:0` as the broker's name for root.
    static func isReserved(source: String) -> Bool {
        var bytes = source.utf8.makeIterator()
        for expected in reservedSourcePrefix.utf8 {
            guard var byte = bytes.next() else { return false }
            if (0x41...0x5A).contains(byte) { byte |= 0x20 }
            guard byte == expected else { return false }
        }
        return true
    }

    /// The check for one member: its JSON type, or its name if it is an extension.
    private func check(_ member: JSONMember) -> WireError? {
        let name = member.key
        let attribute = Attribute(name)
        if attribute == .data { return nil }
        if attribute != nil {
            guard member.kind == .string else {
                return WireError(.invalidEvent, "wrong_type", attribute: name,
                                 "attribute '\(name)' must be a string, got \(member.kind.rawValue)")
            }
            return Self.checkCharacters(member)
        }
        guard Self.isExtensionName(name) else {
            return WireError(.invalidEvent, "bad_extension_name", attribute: name,
                             "extension attribute name '\(Self.clip(name))' must be 1 to 20 characters of a-z and 0-9")
        }
        switch member.kind {
        case .string: return Self.checkCharacters(member)
        case .number, .boolean: return nil
        default:
            return WireError(.invalidEvent, "wrong_type", attribute: name,
                             "extension attribute '\(name)' must be a string, number or boolean, got \(member.kind.rawValue)")
        }
    }

    /// CloudEvents forbids control characters (U+0000–U+001F, U+007F–U+009F)
    /// in attribute strings: they would cut or split what subscribers see
    /// (environment variables, log lines).
    static func checkCharacters(_ member: JSONMember) -> WireError? {
        guard let text = member.string else { return nil }
        // On the UTF-8: U+0000–U+001F and U+007F are those bytes; U+0080–U+009F
        // are 0xC2 followed by 0x80–0x9F.
        var previous: UInt8 = 0
        for byte in text.utf8 {
            let scalar: UInt32?
            if byte < 0x20 || byte == 0x7F {
                scalar = UInt32(byte)
            } else if previous == 0xC2 && byte >= 0x80 && byte <= 0x9F {
                scalar = UInt32(byte)
            } else {
                scalar = nil
            }
            if let scalar {
                return WireError(.invalidEvent, "bad_character", attribute: member.key,
                                 "attribute '\(member.key)' contains the control character U+\(hex4(scalar)), which CloudEvents forbids")
            }
            previous = byte
        }
        return nil
    }

    private static func hex4(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    static func isExtensionName(_ name: String) -> Bool {
        let utf8 = name.utf8
        guard !utf8.isEmpty && utf8.count <= 20 else { return false }
        return utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) }
    }

    static func isBase64(_ text: String) -> Bool {
        var count = 0
        var padding = 0
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "/"):
                if padding > 0 { return false }
            case UInt8(ascii: "="):
                padding += 1
                if padding > 2 { return false }
            default:
                return false
            }
            count += 1
        }
        return count % 4 == 0
    }

    /// Values quoted in messages are cut short, so a message never carries a payload.
    public static func clipped(_ text: String) -> String { clip(text) }

    static func clip(_ text: String) -> String {
        text.count <= 40 ? text : String(text.prefix(40)) + "…"
    }

    /// `{` + injected members + `,` + the rest of the producer's object, with
    /// surrounding whitespace trimmed. With nothing to inject the bytes are kept.
    static func splice(_ injected: [UInt8], into line: [UInt8]) -> [UInt8] {
        var start = 0
        var end = line.count
        while start < end, isSpace(line[start]) { start += 1 }
        while end > start, isSpace(line[end - 1]) { end -= 1 }
        if injected.isEmpty {
            return start == 0 && end == line.count ? line : Array(line[start..<end])
        }
        var out: [UInt8] = []
        out.reserveCapacity(end - start + injected.count + 1)
        out.append(UInt8(ascii: "{"))
        out.append(contentsOf: injected)
        // Members follow the brace (the validator guarantees at least `type`).
        out.append(UInt8(ascii: ","))
        out.append(contentsOf: line[(start + 1)..<end])
        return out
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A
    }
}

/// The context attributes of CloudEvents 1.0, all of them strings but `data`.
enum Attribute: UInt8, CaseIterable {
    case specversion, id, source, type, subject, time, datacontenttype, dataschema, data, dataBase64

    /// The attribute `name` names, if any: lengths first, then one or two comparisons.
    init?(_ name: String) {
        switch name.utf8.count {
        case 2 where name == "id": self = .id
        case 4 where name == "type": self = .type
        case 4 where name == "time": self = .time
        case 4 where name == "data": self = .data
        case 6 where name == "source": self = .source
        case 7 where name == "subject": self = .subject
        case 10 where name == "dataschema": self = .dataschema
        case 11 where name == "specversion": self = .specversion
        case 11 where name == "data_base64": self = .dataBase64
        case 15 where name == "datacontenttype": self = .datacontenttype
        default: return nil
        }
    }

    var bit: UInt16 { 1 << rawValue }
}

/// The members of one event that are context attributes, by attribute.
private struct Attributes {
    let members: [JSONMember]
    /// Where each attribute's member is, -1 if absent (no allocation per event).
    var index = InlineArray<10, Int>(repeating: -1)

    init(members: [JSONMember]) {
        self.members = members
    }

    subscript(_ attribute: Attribute) -> JSONMember? {
        let at = index[Int(attribute.rawValue)]
        return at < 0 ? nil : members[at]
    }
}

extension EventValidator {
    /// The receipt time as text. Every event of a batch shares one receipt
    /// time, so the last one formatted is kept.
    func receiptTime(_ micros: Int64) -> String {
        if let cached = timeCache.withLock({ $0.micros == micros ? $0.text : nil }) { return cached }
        let text = Timestamp.format(micros: micros)
        timeCache.withLock { $0 = (micros, text) }
        return text
    }
}

/// The last receipt time formatted, shared by the connections.
final class TimeCache: Sendable {
    private let state = Mutex<(micros: Int64, text: String)>((-1, ""))

    func withLock<T>(_ body: (inout (micros: Int64, text: String)) -> T) -> T {
        state.withLock { body(&$0) }
    }
}
