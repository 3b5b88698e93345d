/// The error codes of wire protocol version 1, as `protocol/PROTOCOL.md` lists them.
///
/// Every refusal the broker writes carries exactly one of these in `error.code`.
/// A test compares this list with the document, so the two cannot drift.
public enum ErrorCode: String, Sendable, CaseIterable {
    /// The line is not valid JSON (syntax, invalid UTF-8, nesting too deep).
    case invalidJSON = "invalid_json"
    /// The line is a JSON object but breaks a CloudEvents rule.
    case invalidEvent = "invalid_event"
    /// The line is longer than `max_line_bytes`.
    case tooLarge = "too_large"
    /// The line has an `op` the broker does not implement.
    case unknownOp = "unknown_op"
    /// A command line is missing a member or has one of the wrong type.
    case badRequest = "bad_request"
    /// The peer's credentials do not allow what it asked for.
    case unauthorized = "unauthorized"
    /// Storage failed (disk full, I/O error, outbox limit); nothing was stored, try again later.
    case unavailable = "unavailable"
    /// The broker is stopping and did not process the line.
    case shuttingDown = "shutting_down"
}

/// A refusal as it crosses the wire: a stable code, a stable reason naming the
/// kind of bad input, the attribute concerned if any, and a message for people.
public struct WireError: Error, Sendable, Equatable {
    public var code: ErrorCode
    /// A finer, stable identifier of what was wrong (`missing_type`, `bad_time`, ...).
    public var reason: String
    /// The event attribute or command member the error is about, if any.
    public var attribute: String?
    public var message: String

    public init(_ code: ErrorCode, _ reason: String, attribute: String? = nil, _ message: String) {
        self.code = code
        self.reason = reason
        self.attribute = attribute
        self.message = message
    }
}
