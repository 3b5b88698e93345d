import ArgumentParser

/// `hookbus bench`: the load generator (the default subcommand) and the pipe
/// subscriber it measures deliveries with. tools/bench/run.sh drives hookbusd
/// and its peers with it; tools/bench/README.md has the numbers.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure a broker: acknowledged events/s, ack and publish-to-delivery latency.",
        discussion: """
            `hookbus bench [options]` runs the load generator (see `hookbus bench load --help`). \
            The same generator drives hookbus, redis-server (XADD), beanstalkd (put), a raw SQLite \
            insert loop and a server that stores nothing, so their numbers compare.
            """,
        subcommands: [BenchLoad.self, BenchSink.self],
        defaultSubcommand: BenchLoad.self
    )
}
