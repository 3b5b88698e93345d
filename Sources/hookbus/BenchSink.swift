import ArgumentParser
import Foundation
import HookbusCore
import Histogram
#if canImport(Glibc)
import Glibc
#endif

/// A pipe subscriber for benchmarks: answers every delivery at once and,
/// with `--report`, keeps a file with the publish-to-delivery latency of the
/// `hookbus bench` events it got (from the send time each one carries).
///
///     [[subscribers]]
///     name = "bench-pipe"
///     types = ["bench.*"]
///     pipe = ["hookbus", "bench", "sink", "--report", "/tmp/bench/pipe.json"]
///
/// `hookbus bench --e2e-report /tmp/bench/pipe.json` waits for that file to
/// count the run's events and reports its latencies. Events the generator
/// marked as sent during its warm-up are counted (`received`, `warmup`) but
/// not measured.
struct BenchSink: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sink",
        abstract: "A pipe subscriber that acks every delivery and records publish-to-delivery latency.")

    @Option(help: "Write the latency report (JSON) to this file, refreshed as deliveries arrive.")
    var report: String?

    func run() throws {
        var inbox = BenchInbox()
        var latency = BenchLatency.histogram()
        var received = 0
        var warmup = 0
        var written = 0
        var lastWrite: UInt64 = 0
        var answers: [UInt8] = []
        signal(SIGPIPE, SIG_IGN)
        // An empty report at once says the subscriber is up: run.sh waits for it.
        if let report { Self.write(report: report, received: 0, warmup: 0, latency) }
        while true {
            var entry = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
            let ready = poll(&entry, 1, 200)
            if ready > 0 {
                let count = inbox.receive { read(0, $0.baseAddress, $0.count) }
                if count == 0 { break }
                if count < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                    break
                }
                let now = BenchClock.realtime()
                answers.removeAll(keepingCapacity: true)
                inbox.parse { bytes in
                    BenchDeliveryLines.scan(bytes) { delivery, stamp in
                        answers.append(contentsOf: BenchDeliveryLines.prefix)
                        answers.append(contentsOf: delivery)
                        answers.append(contentsOf: #","ok":true}"#.utf8)
                        answers.append(0x0A)
                        if let stamp {
                            received += 1
                            if stamp.warmup {
                                warmup += 1
                            } else {
                                latency.record(now > stamp.sentAt ? now - stamp.sentAt : 0)
                            }
                        }
                    }
                }
                if !answers.isEmpty && !Self.writeAll(answers) { break }
            } else if ready < 0 && errno != EINTR {
                break
            }
            // The report is refreshed at most every 100 ms, and on every quiet poll.
            let now = BenchClock.monotonic()
            if let report, received != written, ready == 0 || now - lastWrite > 100_000_000 {
                Self.write(report: report, received: received, warmup: warmup, latency)
                written = received
                lastWrite = now
            }
        }
        if let report { Self.write(report: report, received: received, warmup: warmup, latency) }
    }

    private static func writeAll(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeBytes { Glibc.write(1, $0.baseAddress! + offset, $0.count - offset) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { return false }
            offset += count
        }
        return true
    }

    /// Writes the report next to its place, then renames it, so a reader never sees half a file.
    private static func write(report path: String, received: Int, warmup: Int, _ latency: Histogram<UInt64>) {
        let summary = BenchLatencySummary(latency)
        var out = JSONWriter(capacity: 160)
        out.beginObject()
        out.key("received"); out.int(received)
        out.key("warmup"); out.int(warmup)
        out.key("measured"); out.int(summary.count)
        out.key("p50"); out.double(BenchLatencySummary.rounded(summary.p50))
        out.key("p99"); out.double(BenchLatencySummary.rounded(summary.p99))
        out.key("p999"); out.double(BenchLatencySummary.rounded(summary.p999))
        out.key("max"); out.double(BenchLatencySummary.rounded(summary.max))
        out.endObject()
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(out.bytes)) else { return }
        rename(temporary, path)
    }
}

/// The delivery lines hookbus writes to a subscriber (a pipe process or a
/// socket subscription), as the bench's subscribers read them.
enum BenchDeliveryLines {
    static let prefix = Array(#"{"delivery":"#.utf8)

    /// Calls `body` for every complete delivery line in `bytes`, with the digits
    /// of its delivery id and the send time and warm-up mark its event carries
    /// (if it is a bench event); other lines are skipped. Returns the bytes used.
    static func scan(_ bytes: UnsafeRawBufferPointer,
                     _ body: (UnsafeRawBufferPointer, (sentAt: UInt64, warmup: Bool)?) -> Void) -> Int {
        var start = 0
        while let newline = memchrIndex(0x0A, in: bytes, from: start) {
            let line = UnsafeRawBufferPointer(rebasing: bytes[start..<newline])
            start = newline + 1
            guard line.starts(with: prefix) else { continue }
            var end = prefix.count
            while end < line.count, line[end] >= UInt8(ascii: "0"), line[end] <= UInt8(ascii: "9") { end += 1 }
            body(UnsafeRawBufferPointer(rebasing: line[prefix.count..<end]), BenchEvent.stamp(in: line))
        }
        return start
    }
}
