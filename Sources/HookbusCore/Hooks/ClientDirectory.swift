import Foundation

/// The fleet manager's clients, as the built-in hooks track them from
/// `client.added`, `client.hostname_changed` and `client.removed` events:
/// keyed by `ip` (a client's hostname can change), kept in the hook's state.
public struct Client: Sendable, Equatable, Codable {
    public var ip: String
    public var hostname: String
    public var fleet: String

    public init(ip: String, hostname: String, fleet: String) {
        self.ip = ip
        self.hostname = hostname
        self.fleet = fleet
    }
}

enum ClientDirectory {
    /// The event types that change the directory.
    static let types: [TypeFilter] = [.prefix("client."), .exact("hookbus.started")]

    /// Applies one event to the hook's state. Returns false for events that
    /// do not concern clients (nothing to rewrite).
    static func apply(_ event: StoredEvent, to state: HookState) async throws -> Bool {
        switch event.type {
        case "hookbus.started":
            return true
        case "client.added", "client.hostname_changed", "client.removed":
            break
        default:
            return false
        }
        let data = try clientData(event)
        guard let ip = data["ip"] as? String, !ip.isEmpty else {
            throw HookRejection("\(event.type) event seq \(event.seq) has no data.ip")
        }
        // What goes into the files these hooks write is checked: a hostname
        // with a newline in it would add lines of its own to a hosts file.
        guard isIPAddress(ip) else {
            throw HookRejection("\(event.type) event seq \(event.seq): data.ip \(quoted(ip)) is not an IPv4 or IPv6 address")
        }
        if event.type == "client.removed" {
            try await state.remove(ip)
            return true
        }
        var client = try await state.get(ip).flatMap { try? JSONDecoder().decode(Client.self, from: Data($0.utf8)) }
        let hostname = data["hostname"] as? String ?? client?.hostname
        let fleet = data["fleet"] as? String ?? client?.fleet
        guard let hostname, !hostname.isEmpty, let fleet, !fleet.isEmpty else {
            throw HookRejection("\(event.type) event seq \(event.seq) for \(ip) lacks data.hostname or data.fleet")
        }
        for (key, value) in [("hostname", hostname), ("fleet", fleet)] where !isDNSLabel(value) {
            throw HookRejection("\(event.type) event seq \(event.seq) for \(ip): data.\(key) \(quoted(value)) is not a DNS label "
                + "(1 to 63 letters, digits and '-', not starting or ending with '-')")
        }
        client = Client(ip: ip, hostname: hostname, fleet: fleet)
        let encoded = try JSONEncoder().encode(client)
        try await state.set(ip, String(decoding: encoded, as: UTF8.self))
        return true
    }

    /// Every client in the state, sorted by address (numerically for IPv4).
    static func clients(in state: HookState) async throws -> [Client] {
        try await state.all().compactMap { try? JSONDecoder().decode(Client.self, from: Data($0.value.utf8)) }
            .sorted { sortKey($0.ip) < sortKey($1.ip) }
    }

    static func sortKey(_ ip: String) -> String {
        let parts = ip.split(separator: ".")
        guard parts.count == 4, parts.allSatisfy({ UInt8($0) != nil }) else { return "~" + ip }
        return parts.map { String(repeating: "0", count: 3 - $0.count) + $0 }.joined(separator: ".")
    }

    static func isIPAddress(_ text: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
    }

    /// A DNS label, as a name in a hosts file needs: 1 to 63 ASCII letters,
    /// digits and hyphens, not starting or ending with a hyphen.
    static func isDNSLabel(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard (1...63).contains(bytes.count), bytes.first != UInt8(ascii: "-"), bytes.last != UInt8(ascii: "-") else { return false }
        return bytes.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "-")
        }
    }

    /// A value as it may be shown in an error: clipped, with control characters escaped.
    private static func quoted(_ text: String) -> String {
        let clipped = text.unicodeScalars.prefix(80).map { scalar in
            scalar.value < 0x20 || scalar.value == 0x7F ? "\\u{\(String(scalar.value, radix: 16))}" : String(scalar)
        }.joined()
        return "\"" + clipped + (text.unicodeScalars.count > 80 ? "…" : "") + "\""
    }

    private static func clientData(_ event: StoredEvent) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(event.json.utf8)) as? [String: Any]
        guard let data = object?["data"] as? [String: Any] else {
            throw HookRejection("\(event.type) event seq \(event.seq) has no data object")
        }
        return data
    }
}
