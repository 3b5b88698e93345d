import ArgumentParser
import Foundation
import HookbusClient
import HookbusCore
import Histogram

/// Which server `hookbus bench` drives.
enum BenchTarget: String, ExpressibleByArgument, CaseIterable, Sendable {
    /// hookbusd on its socket (`--socket`).
    case hookbus
    /// redis-server: `XADD` to a stream (`--address`).
    case redis
    /// beanstalkd: `put` (`--address`).
    case beanstalkd
    /// The same rows inserted straight into SQLite (`--db`), no server.
    case sqlite
    /// A line-ack server inside this process that stores nothing.
    case null
}

struct BenchLoad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Drive a broker with N connections, each with a window of requests in flight.",
        discussion: """
            Reports acknowledged events/s and acknowledgement latency (p50, p99, p99.9, max). \
            With --rate the load is an open loop: each event has an intended send time and its \
            latency counts from then, so a broker that stalls is charged for the events it held \
            back. With --e2e it also subscribes (a hookbus socket subscriber, or a redis consumer \
            group) and reports publish-to-delivery latency, from the send time carried in each event.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(help: "What to drive.")
    var target: BenchTarget = .hookbus

    @Option(help: "redis or beanstalkd address: a Unix socket path, or host:port (default 127.0.0.1 and the usual port).")
    var address: String?

    @Option(help: "For --target sqlite: the database to create (must not exist; default a temporary file).")
    var db: String?

    @Option(help: "Producer connections.")
    var connections: Int = 1

    @Option(help: "Requests in flight per connection.")
    var window: Int = 1

    @Option(help: "Event size in bytes (the JSON line; data is padded to reach it).")
    var size: Int = 256

    @Flag(name: .customLong("random-ids"),
          help: "Give the events ids in random order, as UUIDs arrive, instead of counting up on each connection.")
    var randomIDs = false

    @Option(help: "Events to send in all (instead of --duration).")
    var count: Int?

    @Option(help: "How long to send, e.g. 5s (default 5s unless --count).")
    var duration: String?

    @Option(help: "Events/s offered in all (open loop); default: as fast as acknowledged.")
    var rate: Int?

    @Option(help: "Sending time not measured at the start, e.g. 1s.")
    var warmup: String = "0s"

    @Flag(help: "Also subscribe and measure publish-to-delivery latency (hookbus, redis).")
    var e2e = false

    @Option(name: .customLong("e2e-window"), help: "Deliveries in flight to the --e2e subscriber.")
    var e2eWindow: Int = 256

    @Option(name: .customLong("e2e-report"), help: "Read publish-to-delivery latency from this report file, kept by a `hookbus bench sink` pipe subscriber or a latency-probe hook.")
    var e2eReport: String?

    @Option(help: "After sending, wait until this configured subscriber has delivered every event; report deliveries/s.")
    var drain: String?

    @Option(name: .customLong("drain-timeout"), help: "Longest wait for --drain and --e2e, e.g. 120s.")
    var drainTimeout: String = "120s"

    @Option(help: "The redis stream to add to.")
    var stream: String = "hookbus-bench"

    @Flag(help: "Print the result as one JSON object.")
    var json = false

    func validate() throws {
        guard connections >= 1, connections <= 1024 else { throw ValidationError("--connections must be 1 to 1024") }
        guard window >= 1, window <= 65536 else { throw ValidationError("--window must be 1 to 65536") }
        guard size >= 1, size <= 1_000_000 else { throw ValidationError("--size must be 1 to 1000000 bytes") }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if count != nil && duration != nil { throw ValidationError("give --count or --duration, not both") }
        if let rate, rate < 1 { throw ValidationError("--rate must be at least 1 event/s") }
        for (flag, text) in [("--duration", duration ?? "1s"), ("--warmup", warmup), ("--drain-timeout", drainTimeout)]
        where text != "0s" && Duration.parse(text) == nil {
            throw ValidationError("\(flag) must be a duration like 500ms, 5s or 2m, got \"\(text)\"")
        }
        if e2e && !(target == .hookbus || target == .redis) {
            throw ValidationError("--e2e works with --target hookbus or redis")
        }
        if target == .sqlite && rate != nil { throw ValidationError("--target sqlite runs closed loop only: drop --rate") }
        if (drain != nil || e2eReport != nil) && target != .hookbus {
            throw ValidationError("--drain and --e2e-report need --target hookbus")
        }
        if address != nil && !(target == .redis || target == .beanstalkd) {
            throw ValidationError("--address is for redis and beanstalkd; hookbus takes --socket")
        }
        if let address, BenchAddress(address) == nil {
            throw ValidationError("--address must be a Unix socket path or host:port, got \"\(address)\"")
        }
        if let db, FileManager.default.fileExists(atPath: db) {
            throw ValidationError("--db \(db) exists; the SQLite baseline creates a fresh database")
        }
    }

    func run() throws {
        runReporting {
            let report: BenchReport
            do {
                report = try measure()
            } catch let error as BenchSocket.Failure {
                throw CLIError(message: error.description, code: 69)  // EX_UNAVAILABLE, as for the other commands
            }
            writeOut(json ? report.json : report.text)
            return report.failures.isEmpty && report.refused == 0 ? 0 : 1
        }
    }

    private func seconds(_ text: String) -> Double {
        text == "0s" ? 0 : Double(Duration.parse(text)!.milliseconds) / 1000
    }

    private func measure() throws -> BenchReport {
        let run = "\(getpid())-\(BenchClock.realtime() / 1_000_000)"
        var nullServer: BenchNullServer?
        defer { nullServer?.stop() }
        let address: BenchAddress
        switch target {
        case .hookbus, .sqlite:
            address = BenchAddress(kind: .unix(connection.path))
        case .redis:
            address = BenchAddress(self.address ?? "127.0.0.1:6379")!
        case .beanstalkd:
            address = BenchAddress(self.address ?? "127.0.0.1:11300")!
        case .null:
            let server = try BenchNullServer(path: "/tmp/hookbus-bench-null-\(getpid()).sock")
            nullServer = server
            address = BenchAddress(kind: .unix(server.path))
        }
        if target == .redis { try prepareRedis(address) }
        let drainBaseline = try drain.map { try delivered(to: $0) }

        // Everything starts together a little after the connections are open.
        let warmup = seconds(warmup)
        let sendFor = count == nil ? seconds(duration ?? "5s") : .infinity
        let realtimeOffset = BenchClock.realtime() &- BenchClock.monotonic()
        let setupAt = BenchClock.monotonic()
        let start = setupAt + 50_000_000
        let measureFrom = start + UInt64(warmup * 1e9)
        let stopSendingAt = sendFor.isInfinite ? UInt64.max : measureFrom + UInt64(sendFor * 1e9)
        let interval = rate.map { Double(connections) * 1e9 / Double($0) }

        let control = BenchConsumerControl()
        var consumer: BenchThread<BenchConsumerResult>?
        if e2e {
            consumer = target == .redis
                ? try BenchConsumer.redis(address: address, stream: stream, measureFrom: measureFrom &+ realtimeOffset, control: control)
                : try BenchConsumer.hookbus(address: address, window: e2eWindow, measureFrom: measureFrom &+ realtimeOffset,
                                            control: control)
        }

        var threads: [BenchThread<BenchProducerResult>] = []
        var failures: [String] = []
        if target == .sqlite {
            let path = db ?? NSTemporaryDirectory() + "hookbus-bench-\(run).db"
            let plan = makePlan(0, start: start, measureFrom: measureFrom, stopSendingAt: stopSendingAt, interval: nil,
                                realtimeOffset: realtimeOffset, run: run, count: count)
            let baseline = BenchSQLite(path: path, batch: connections * window, plan: plan)
            threads.append(BenchThread {
                var result = BenchProducerResult()
                do { result = try baseline.run() } catch { result.failure = "\(error)" }
                if self.db == nil {
                    for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
                }
                return result
            })
        } else {
            for index in 0..<connections {
                let share = count.map { $0 / connections + (index < $0 % connections ? 1 : 0) }
                if share == 0 { continue }
                let socket = try BenchSocket(connectingTo: address)
                // Open-loop connections are staggered, so the offered load is smooth.
                let offset = interval.map { UInt64($0 * Double(index) / Double(connections)) } ?? 0
                let plan = makePlan(index, start: start + offset, measureFrom: measureFrom, stopSendingAt: stopSendingAt,
                                    interval: interval, realtimeOffset: realtimeOffset, run: run, count: share)
                let target = self.target
                let stream = self.stream
                let size = self.size
                threads.append(BenchThread {
                    switch target {
                    case .redis:
                        var producer = BenchProducer(wire: RedisWire(stream: stream), socket: socket, plan: plan)
                        return producer.run()
                    case .beanstalkd:
                        var producer = BenchProducer(wire: BeanstalkWire(eventSize: BenchEvent(run: plan.run, connection: index,
                                                                                                 size: size).bytes.count),
                                                     socket: socket, plan: plan)
                        return producer.run()
                    default:
                        var producer = BenchProducer(wire: HookbusWire(), socket: socket, plan: plan)
                        return producer.run()
                    }
                })
            }
        }

        var latency = BenchLatency.histogram()
        var (events, sent, acknowledged, refused) = (0, 0, 0, 0)
        var lastReply: UInt64 = 0
        var firstError: String?
        for thread in threads {
            let result = thread.join()
            latency.add(result.latency)
            events += result.measured
            sent += result.sent
            acknowledged += result.acknowledged
            refused += result.refused
            lastReply = max(lastReply, result.lastReplyAt)
            firstError = firstError ?? result.firstError
            if let failure = result.failure { failures.append(failure) }
        }
        let finishedAt = BenchClock.monotonic()
        let timeout = seconds(drainTimeout)

        var e2eSummary: BenchLatencySummary?
        var e2eVia: String?
        var e2eMissing: Int?
        if let consumer {
            control.expected.store(acknowledged, ordering: .releasing)
            control.giveUpAt.store(finishedAt + UInt64(timeout * 1e9), ordering: .releasing)
            let result = consumer.join()
            // Nothing measured (every delivery came during the warm-up, or none came): no percentiles.
            e2eSummary = result.measured > 0 ? BenchLatencySummary(result.latency) : nil
            e2eMissing = max(0, acknowledged - result.received)
            e2eVia = target == .redis ? "redis XREADGROUP + XACK" : "hookbus socket subscriber (window \(e2eWindow))"
            if result.received < acknowledged {
                failures.append("the subscriber got \(result.received) of \(acknowledged) events")
            }
            if let failure = result.failure { failures.append("subscriber: \(failure)") }
        }
        if let e2eReport {
            let (summary, received, problem) = readSinkReport(e2eReport, expected: acknowledged,
                                                              until: finishedAt + UInt64(timeout * 1e9))
            e2eSummary = summary?.count == 0 ? nil : summary
            e2eMissing = max(0, acknowledged - received)
            e2eVia = "the report in \(e2eReport) (a `hookbus bench sink` pipe subscriber or the latency-probe hook)"
            if let problem { failures.append(problem) }
        }
        var drainReport: BenchReport.Drain?
        if let drain, let drainBaseline {
            let deadline = finishedAt + UInt64(timeout * 1e9)
            var delivered = drainBaseline
            while delivered - drainBaseline < acknowledged && BenchClock.monotonic() < deadline {
                Thread.sleep(forTimeInterval: 0.02)
                delivered = try self.delivered(to: drain)
            }
            let done = delivered - drainBaseline
            drainReport = .init(subscriber: drain, delivered: done, seconds: Double(BenchClock.monotonic() - start) / 1e9,
                                complete: done >= acknowledged)
            if done < acknowledged { failures.append("\(drain) delivered \(done) of \(acknowledged) events in time") }
        }

        return BenchReport(
            target: target.rawValue, address: target == .sqlite ? (db ?? "temporary file") : address.description,
            connections: connections, window: window, size: BenchEvent(run: run, connection: 0, size: size).bytes.count,
            randomIDs: randomIDs, rate: rate, warmup: warmup, events: events,
            seconds: lastReply > measureFrom ? Double(lastReply - measureFrom) / 1e9 : 0,
            sent: sent, refused: refused, ack: BenchLatencySummary(latency), e2e: e2eSummary, e2eVia: e2eVia, e2eMissing: e2eMissing,
            drain: drainReport, failures: failures, firstError: firstError)
    }

    private func makePlan(
        _ index: Int, start: UInt64, measureFrom: UInt64, stopSendingAt: UInt64, interval: Double?,
        realtimeOffset: UInt64, run: String, count: Int?
    ) -> BenchPlan {
        BenchPlan(connection: index, window: window, count: count, stopSendingAt: stopSendingAt, start: start,
                  measureFrom: measureFrom, interval: interval, realtimeOffset: realtimeOffset, run: run, size: size,
                  randomIDs: randomIDs)
    }

    /// A fresh stream (and consumer group `bench` for --e2e) for this run.
    private func prepareRedis(_ address: BenchAddress) throws {
        let socket = try BenchSocket(connectingTo: address)
        var commands = [RESP.command(["DEL", stream])]
        if e2e { commands.append(RESP.command(["XGROUP", "CREATE", stream, "bench", "$", "MKSTREAM"])) }
        try socket.write(commands.flatMap { $0 })
        var inbox = BenchInbox()
        var replies: [RESP.Value] = []
        while replies.count < commands.count {
            guard try socket.read(into: &inbox) else { throw CLIError(message: "redis at \(address) closed the connection", code: 69) }
            inbox.parse { bytes in
                var start = 0
                while let (value, end) = RESP.parse(bytes, at: start) {
                    replies.append(value)
                    start = end
                }
                return start
            }
        }
        for case .error(let text) in replies { throw CLIError(message: "redis refused the setup: \(text)", code: 1) }
    }

    /// Deliveries the broker counts for subscriber `name` (from `stats`).
    private func delivered(to name: String) throws -> Int {
        let reply = try request(connection, ["op": "stats"])
        let subscribers = reply["subscribers"] as? [[String: Any]] ?? []
        guard let entry = subscribers.first(where: { $0["name"] as? String == name }) else {
            throw CLIError(message: "the broker has no subscriber named \(name) (see hookbus stats)", code: 1)
        }
        return (entry["delivered"] as? NSNumber)?.intValue ?? 0
    }

    /// Waits for a sink report that has seen `expected` events and returns its latencies.
    private func readSinkReport(_ path: String, expected: Int, until deadline: UInt64)
        -> (summary: BenchLatencySummary?, received: Int, problem: String?) {
        var last: [String: Any]?
        while true {
            if let data = FileManager.default.contents(atPath: path),
               let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] {
                last = object
                if ((object["received"] as? NSNumber)?.intValue ?? 0) >= expected { break }
            }
            if BenchClock.monotonic() >= deadline { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        guard let last else { return (nil, 0, "no sink report at \(path)") }
        let number = { (key: String) in (last[key] as? NSNumber)?.doubleValue ?? 0 }
        // `received` counts every event, `measured` those in the latencies
        // (not those sent during the warm-up, nor, from the probe, those
        // without a send time).
        let received = Int(number("received"))
        let summary = BenchLatencySummary(count: Int(number("measured")), p50: number("p50"), p99: number("p99"),
                                          p999: number("p999"), max: number("max"))
        let problem = received < expected ? "the pipe subscriber got \(received) of \(expected) events" : nil
        return (summary, received, problem)
    }
}
