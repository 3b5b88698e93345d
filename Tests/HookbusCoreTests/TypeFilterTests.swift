import Testing
@testable import HookbusCore

@Suite("TypeFilter")
struct TypeFilterTests {
    @Test("filters parse to their kind and print back as written", arguments: [
        ("client.added", TypeFilter.exact("client.added")),
        ("client.*", .prefix("client.")),
        ("a.b.*", .prefix("a.b.")),
        ("*", .all),
        ("x", .exact("x")),
    ])
    func parse(_ text: String, filter: TypeFilter) throws {
        #expect(try TypeFilter.parse(text).get() == filter)
        #expect(filter.description == text)
    }

    @Test("malformed filters are refused with a reason", arguments: ["", "client*", "*.x", ".*", "a.*.*", "a*.b", "**", "a.**"])
    func malformed(_ text: String) {
        guard case .failure(let error) = TypeFilter.parse(text) else {
            Issue.record("\"\(text)\" was accepted")
            return
        }
        #expect(error.text == text)
        #expect(!error.reason.isEmpty)
    }

    @Test("matching", arguments: [
        ("client.added", "client.added", true),
        ("client.added", "client.added.more", false),
        ("client.added", "client.adde", false),
        ("client.added", "Client.added", false),
        ("client.*", "client.added", true),
        ("client.*", "client.hostname.changed", true),
        ("client.*", "client", false),
        ("client.*", "client.", false),
        ("client.*", "clientx.a", false),
        ("client.*", "xclient.a", false),
        ("client.*", "hookbus.started", false),
        ("*", "anything.at.all", true),
        ("*", "x", true),
    ])
    func matching(_ filter: String, type: String, matches: Bool) throws {
        #expect(try TypeFilter.parse(filter).get().matches(type) == matches)
    }

    @Test("a list of filters matches when any one does")
    func list() throws {
        let filters = try ["client.added", "hookbus.*"].map { try TypeFilter.parse($0).get() }
        #expect(filters.matches("client.added"))
        #expect(filters.matches("hookbus.started"))
        #expect(!filters.matches("client.removed"))
        #expect(![TypeFilter]().matches("client.added"))
    }
}
