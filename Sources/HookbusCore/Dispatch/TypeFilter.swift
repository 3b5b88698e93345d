/// A subscriber's interest in event types: an exact type (`client.added`), a
/// prefix ending in `.*` (`client.*` matches `client.added` and
/// `client.hostname.changed`, not `client`), or `*` for every type.
public enum TypeFilter: Sendable, Hashable, CustomStringConvertible {
    case exact(String)
    case prefix(String)  // includes the trailing dot
    case all

    /// Parses a filter; nil (with the reason) if it is malformed.
    public static func parse(_ text: String) -> Result<TypeFilter, FilterError> {
        if text == "*" { return .success(.all) }
        if text.isEmpty { return .failure(FilterError(text: text, reason: "a type filter must not be empty")) }
        if text.hasSuffix(".*") {
            let stem = text.dropLast(1)
            guard stem.count > 1, !stem.dropLast().contains("*") else {
                return .failure(FilterError(text: text, reason: "'*' may appear only as the whole filter or after a final '.'"))
            }
            return .success(.prefix(String(stem)))
        }
        guard !text.contains("*") else {
            return .failure(FilterError(text: text, reason: "'*' may appear only as the whole filter or after a final '.'"))
        }
        return .success(.exact(text))
    }

    public func matches(_ type: String) -> Bool {
        switch self {
        case .all: true
        case .exact(let name): type == name
        case .prefix(let stem): type.hasPrefix(stem) && type.utf8.count > stem.utf8.count
        }
    }

    public var description: String {
        switch self {
        case .all: "*"
        case .exact(let name): name
        case .prefix(let stem): stem + "*"
        }
    }

    public struct FilterError: Error, Sendable, Equatable {
        public var text: String
        public var reason: String
    }
}

extension Array where Element == TypeFilter {
    /// True if any filter matches `type`.
    public func matches(_ type: String) -> Bool {
        contains { $0.matches(type) }
    }
}
