/// A refused operator request (replay, dead letters): a stable reason and a
/// message that says what to change.
public struct OperatorError: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public var message: String
    public var code: ErrorCode

    public init(_ reason: String, _ message: String, code: ErrorCode = .badRequest) {
        self.reason = reason
        self.message = message
        self.code = code
    }

    public var description: String { message }

    public var wireError: WireError { WireError(code, reason, message) }
}

/// A subscriber as operator tools see it: its name, kind and type filters.
public struct SubscriberInfo: Sendable, Equatable {
    public var name: String
    public var kind: String
    public var types: [TypeFilter]

    public init(name: String, kind: String, types: [TypeFilter]) {
        self.name = name
        self.kind = kind
        self.types = types
    }
}
