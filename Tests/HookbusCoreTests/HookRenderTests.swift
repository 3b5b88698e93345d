import Foundation
import Testing
@testable import HookbusCore

/// What the built-in hooks write, byte for byte, and the options they accept.
@Suite("Built-in hook rendering and options")
struct HookRenderTests {
    static let clients = [
        Client(ip: "10.0.0.9", hostname: "beta", fleet: "f1"),
        Client(ip: "10.0.0.10", hostname: "alpha", fleet: "f1"),
        Client(ip: "192.168.1.2", hostname: "gamma", fleet: "edge-2"),
    ]

    @Test("hosts-file: one \"<ip> <hostname>.<fleet>.<domain>\" line per client, in the order given")
    func hostsFile() {
        #expect(HostsFileHook.render(Self.clients, domain: "fleet.example") == """
            10.0.0.9 beta.f1.fleet.example
            10.0.0.10 alpha.f1.fleet.example
            192.168.1.2 gamma.edge-2.fleet.example

            """)
        #expect(HostsFileHook.render(Array(Self.clients.reversed()), domain: "lan") == """
            192.168.1.2 gamma.edge-2.lan
            10.0.0.10 alpha.f1.lan
            10.0.0.9 beta.f1.lan

            """)
    }

    @Test("hosts-file with no clients is an empty file")
    func hostsFileEmpty() {
        #expect(HostsFileHook.render([], domain: "fleet.example") == "")
    }

    @Test("prometheus-sd: a file_sd JSON array, one target group per client with labels fleet and hostname, newline-terminated")
    func prometheusSD() {
        #expect(PrometheusSDHook.render(Self.clients, port: 9100) ==
            #"[{"targets":["10.0.0.9:9100"],"labels":{"fleet":"f1","hostname":"beta"}},"#
            + #"{"targets":["10.0.0.10:9100"],"labels":{"fleet":"f1","hostname":"alpha"}},"#
            + #"{"targets":["192.168.1.2:9100"],"labels":{"fleet":"edge-2","hostname":"gamma"}}]"# + "\n")
        #expect(PrometheusSDHook.render([Self.clients[0]], port: 9256) ==
            #"[{"targets":["10.0.0.9:9256"],"labels":{"fleet":"f1","hostname":"beta"}}]"# + "\n")
    }

    @Test("prometheus-sd with no clients is an empty array, which Prometheus accepts")
    func prometheusSDEmpty() {
        #expect(PrometheusSDHook.render([], port: 9100) == "[]\n")
    }

    @Test("prometheus-sd escapes what JSON needs escaped: the file stays valid JSON")
    func prometheusSDEscaping() throws {
        let odd = Client(ip: "10.0.0.1", hostname: #"we"ird\name"#, fleet: "flëet\t1")
        let text = PrometheusSDHook.render([odd], port: 9100)
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])
        #expect(parsed.count == 1)
        #expect(parsed[0]["targets"] as? [String] == ["10.0.0.1:9100"])
        #expect(parsed[0]["labels"] as? [String: String] == ["fleet": "flëet\t1", "hostname": #"we"ird\name"#])
    }

    static func options(_ hook: String, _ values: [String: ConfigValue]) -> HookOptions {
        HookOptions(hook: hook, values: values)
    }

    @Test("hosts-file needs path and domain, and refuses options it does not know")
    func hostsFileOptions() throws {
        let hook = try HostsFileHook(options: Self.options("hosts-file", ["path": .string("/run/hosts"), "domain": .string("fleet.example")]))
        #expect(hook.path == "/run/hosts" && hook.domain == "fleet.example")

        let missing = #expect(throws: HookOptions.Problem.self) {
            try HostsFileHook(options: Self.options("hosts-file", ["path": .string("/run/hosts")]))
        }
        #expect(missing?.description == "hook hosts-file needs option 'domain'")
        let unknown = #expect(throws: HookOptions.Problem.self) {
            try HostsFileHook(options: Self.options("hosts-file", [
                "path": .string("/run/hosts"), "domain": .string("d"), "domian": .string("typo"),
            ]))
        }
        #expect(unknown?.description.contains("no option 'domian'") == true, "\(unknown?.description ?? "")")
        let wrongType = #expect(throws: HookOptions.Problem.self) {
            try HostsFileHook(options: Self.options("hosts-file", ["path": .int(3), "domain": .string("d")]))
        }
        #expect(wrongType?.description.contains("'path'") == true && wrongType?.description.contains("must be a string") == true)
    }

    @Test("prometheus-sd: port defaults to 9100 and must be 1 to 65535", arguments: [
        (nil, 9100), (ConfigValue.int(1), 1), (.int(65535), 65535), (.int(9256), 9256),
    ] as [(ConfigValue?, Int)])
    func prometheusPort(_ given: ConfigValue?, expected: Int) throws {
        var values: [String: ConfigValue] = ["path": .string("/run/sd.json")]
        values["port"] = given
        #expect(try PrometheusSDHook(options: Self.options("prometheus-sd", values)).port == expected)
    }

    @Test("prometheus-sd refuses a port out of range or of the wrong type", arguments: [
        ConfigValue.int(0), .int(65536), .int(-1), .string("9100"),
    ])
    func prometheusBadPort(_ port: ConfigValue) {
        #expect(throws: HookOptions.Problem.self) {
            try PrometheusSDHook(options: Self.options("prometheus-sd", ["path": .string("/run/sd.json"), "port": port]))
        }
    }
}
