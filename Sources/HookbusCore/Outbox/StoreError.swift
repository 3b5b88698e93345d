import GRDB

/// A failure of the database, with the SQLite result code kept as its cause.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Another process holds the database (a second broker).
        case locked
        /// The file is not a database, or is damaged.
        case corrupt
        /// SQLITE_FULL, an I/O error or the configured outbox limit: try again later.
        case unavailable
        /// Anything else.
        case other
    }

    public var kind: Kind
    public var message: String
    /// The SQLite extended result code, when SQLite reported the failure.
    public var sqliteCode: Int32?

    public init(_ kind: Kind, _ message: String, sqliteCode: Int32? = nil) {
        self.kind = kind
        self.message = message
        self.sqliteCode = sqliteCode
    }

    public var description: String { message }

    /// Classifies any error thrown by GRDB.
    public static func from(_ error: any Error, path: String) -> StoreError {
        if let error = error as? StoreError { return error }
        guard let database = error as? DatabaseError else {
            return StoreError(.other, "\(path): \(error)")
        }
        let code = database.extendedResultCode.rawValue
        let text = "\(path): \(database.message ?? "SQLite error") (SQLite code \(code))"
        switch database.resultCode {
        case .SQLITE_FULL, .SQLITE_IOERR, .SQLITE_CANTOPEN, .SQLITE_READONLY, .SQLITE_NOMEM:
            return StoreError(.unavailable, text, sqliteCode: code)
        case .SQLITE_CORRUPT, .SQLITE_NOTADB:
            return StoreError(.corrupt, text, sqliteCode: code)
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            return StoreError(.locked, text, sqliteCode: code)
        default:
            return StoreError(.other, text, sqliteCode: code)
        }
    }
}
