/// What one line asks of the broker.
public enum Request: Sendable {
    /// A valid event to store.
    case publish(NewEvent)
    /// A command: a line with an `op` member.
    case command(Command)
    /// A line refused before it reached storage.
    case refused(WireError)
}

/// A command line: its `op` and its members, decoded on demand by the command.
public struct Command: Sendable {
    public var op: String
    public var line: [UInt8]
    public var members: [JSONMember]

    public func member(_ key: String) -> JSONMember? {
        members.first { $0.key == key }
    }

    /// The raw JSON text of a member's value.
    public func text(of member: JSONMember) -> String {
        String(decoding: line[member.valueRange], as: UTF8.self)
    }
}

/// Turns frames into requests: framing limits, JSON syntax, then either the
/// event rules or the command's `op`.
public struct RequestDecoder: Sendable {
    public let validator: EventValidator

    public init(validator: EventValidator = EventValidator()) {
        self.validator = validator
    }

    public func decode(_ frame: Frame, producer: Producer, nowMicros: Int64) -> Request {
        switch frame {
        case .tooLarge(let limit):
            return .refused(WireError(.tooLarge, "too_large",
                                      "line longer than max_line_bytes (\(limit) bytes); it was skipped up to its newline"))
        case .line(let bytes):
            return decode(line: bytes, producer: producer, nowMicros: nowMicros)
        }
    }

    public func decode(line: [UInt8], producer: Producer, nowMicros: Int64) -> Request {
        let scanned: ScannedLine
        do {
            scanned = try JSONScanner.scan(line)
        } catch {
            if error.invalidUTF8 {
                return .refused(WireError(.invalidJSON, "invalid_utf8", "line is not valid UTF-8 (\(error.reason))"))
            }
            return .refused(WireError(.invalidJSON, "invalid_json", "line is not valid JSON: \(error.reason)"))
        }
        switch scanned {
        case .notObject(let kind):
            return .refused(WireError(.invalidEvent, "not_object", "a line must be a JSON object, got \(kind.rawValue)"))
        case .object(let members):
            if let op = members.first(where: { $0.key == "op" }) {
                guard let name = op.string else {
                    return .refused(WireError(.badRequest, "wrong_type", attribute: "op",
                                              "member 'op' must be a string, got \(op.kind.rawValue)"))
                }
                return .command(Command(op: name, line: line, members: members))
            }
            switch validator.validate(line: line, members: members, producer: producer, nowMicros: nowMicros) {
            case .success(let event): return .publish(event)
            case .failure(let error): return .refused(error)
            }
        }
    }
}
