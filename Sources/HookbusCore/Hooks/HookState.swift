import GRDB

/// A hook's durable key-value state (`hook_state` table), so a restart can
/// rebuild what the hook maintains.
public struct HookState: Sendable {
    public let hook: String
    let store: Store

    public init(hook: String, store: Store) {
        self.hook = hook
        self.store = store
    }

    public func get(_ key: String) async throws -> String? {
        try await store.pool.read { db in
            try String.fetchOne(db, sql: "SELECT value FROM hook_state WHERE hook = ? AND key = ?", arguments: [hook, key])
        }
    }

    public func set(_ key: String, _ value: String) async throws {
        try await store.pool.write { db in
            try db.execute(sql: """
                INSERT INTO hook_state (hook, key, value) VALUES (?, ?, ?)
                ON CONFLICT (hook, key) DO UPDATE SET value = excluded.value
                """, arguments: [hook, key, value])
        }
    }

    public func remove(_ key: String) async throws {
        try await store.pool.write { db in
            try db.execute(sql: "DELETE FROM hook_state WHERE hook = ? AND key = ?", arguments: [hook, key])
        }
    }

    /// Every key and value, sorted by key.
    public func all() async throws -> [(key: String, value: String)] {
        try await store.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT key, value FROM hook_state WHERE hook = ? ORDER BY key", arguments: [hook])
                .map { (key: $0["key"] as String, value: $0["value"] as String) }
        }
    }
}
