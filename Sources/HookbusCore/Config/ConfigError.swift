/// A configuration mistake: the file, where in it, and why. The broker does
/// not start on one.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    /// The key, as a path: `durability`, `subscribers[1] "notify".timeout`.
    public var key: String
    public var reason: String

    public init(file: String, key: String, reason: String) {
        self.file = file
        self.key = key
        self.reason = reason
    }

    public var description: String { "\(file): \(key): \(reason)" }
}
