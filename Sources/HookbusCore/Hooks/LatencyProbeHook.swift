import Histogram
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Measures publish-to-delivery latency inside the broker: for every event
/// whose `data` starts with `"t": <send time>` (nanoseconds since the Unix
/// epoch, as `hookbus bench` sends), it records the time from then to the
/// moment the hook runs, and keeps a report file with the percentiles. An
/// event whose `t` is followed by `"w":1` was sent during the generator's
/// warm-up: it is counted, not measured.
///
///     [[subscribers]]
///     name = "probe"
///     hook = "latency-probe"
///     types = ["bench.*"]
///     options = { report = "/tmp/probe.json" }
///
/// The report (rewritten atomically within two `interval_ms`, 100 by
/// default, after events stop coming, every ten intervals while they keep
/// coming, and when dispatch stops) is one JSON object:
/// `{"received":N,"warmup":W,"unmeasured":U,"measured":M,"p50":µs,...,"max":µs}`
/// (`received` counts every event: W sent during the warm-up, U without a
/// send time, M in the latencies); `hookbus bench --e2e-report FILE` reads it.
///
/// Options: `report` (required), `interval_ms` (100).
public struct LatencyProbeHook: Hook {
    public static let name = "latency-probe"

    public let report: String
    /// Time between two looks at the tally: the report is rewritten at the
    /// first look that finds no new events, or every ten while events keep
    /// coming.
    public let interval: Duration
    private let box = TallyBox()

    final class TallyBox: Sendable {
        /// What the hook recorded since the last report.
        let tally = Mutex(Tally())
        /// Everything reported so far (only `writeReport` touches it).
        let reported = Mutex(Tally())
    }

    struct Tally {
        var latency = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: LatencyProbeHook.longest,
                                        numberOfSignificantValueDigits: .three)
        var unmeasured = 0
        var warmup = 0
        /// Events counted since the report was last written.
        var unreported = 0
        /// Events counted since `run` last looked.
        var sinceTick = 0
    }

    /// While events keep coming, the report is rewritten every this many
    /// intervals only: writing it (a rename over the old one, which makes
    /// ext4 start writing the new file out at once) slowed the commits of
    /// the events it measured, ten times a second.
    static let ticksPerSteadyReport = 10

    /// The longest latency recorded as such (an hour, in ns).
    static let longest: UInt64 = 3_600_000_000_000

    public init(options: HookOptions) throws {
        try options.only(["report", "interval_ms"])
        report = try options.string("report")
        let milliseconds = try options.int("interval_ms", default: 100)
        guard milliseconds >= 1 else {
            throw HookOptions.Problem(description: "option 'interval_ms' of hook \(Self.name) must be at least 1, got \(milliseconds)")
        }
        interval = .milliseconds(milliseconds)
    }

    public func handle(_ event: StoredEvent, context: HookContext) async throws {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let nanos = UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
        let stamp = Self.stamp(in: event.json)
        box.tally.withLock { tally in
            if let stamp, stamp.warmup {
                tally.warmup += 1
            } else if let sentAt = stamp?.sentAt {
                // Beyond an hour (a clock far off, an old replayed event) counts as an hour.
                tally.latency.record(min(nanos > sentAt ? nanos - sentAt : 0, Self.longest))
            } else {
                tally.unmeasured += 1
            }
            tally.unreported += 1
            tally.sinceTick += 1
        }
    }

    public func run() async {
        var busyTicks = 0
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            let (came, unreported) = box.tally.withLock { tally in
                defer { tally.sinceTick = 0 }
                return (tally.sinceTick, tally.unreported)
            }
            guard unreported > 0 else { continue }
            if came > 0 {
                busyTicks += 1
                if busyTicks < Self.ticksPerSteadyReport { continue }
            }
            busyTicks = 0
            writeReport()
        }
        writeReport()
    }

    /// Rewrites the report if events came since the last time.
    private func writeReport() {
        // The hook's histogram is swapped for an empty one, made before the
        // lock, and added to the reported ones after it: the hook waits for
        // neither the merge nor the percentiles (they walk the counts).
        var recent = Tally().latency
        let counts = box.tally.withLock { tally -> (unmeasured: Int, warmup: Int)? in
            if tally.unreported == 0 { return nil }
            tally.unreported = 0
            swap(&tally.latency, &recent)
            defer { (tally.unmeasured, tally.warmup) = (0, 0) }
            return (tally.unmeasured, tally.warmup)
        }
        guard let counts else { return }
        let text = box.reported.withLock { reported in
            reported.latency.add(recent)
            reported.unmeasured += counts.unmeasured
            reported.warmup += counts.warmup
            return Self.render(reported)
        }
        do {
            // Not synced: syncing it flushed the disk beside the commits it
            // measures (at 20k events/s, events whose path overlapped a synced
            // write had p99 1.47 ms, the others 0.82 ms).
            try AtomicFile.write(text + "\n", to: report, durable: false)
        } catch {
            // A probe that cannot write its report loses nothing but the report.
        }
    }

    static func render(_ tally: Tally) -> String {
        let micros = { (value: UInt64) -> Double in (Double(value) / 100).rounded() / 10 }
        var out = JSONWriter(capacity: 160)
        out.beginObject()
        out.key("received"); out.int(Int(tally.latency.totalCount) + tally.unmeasured + tally.warmup)
        out.key("warmup"); out.int(tally.warmup)
        out.key("unmeasured"); out.int(tally.unmeasured)
        out.key("measured"); out.int(Int(tally.latency.totalCount))
        out.key("p50"); out.double(micros(tally.latency.valueAtPercentile(50)))
        out.key("p99"); out.double(micros(tally.latency.valueAtPercentile(99)))
        out.key("p999"); out.double(micros(tally.latency.valueAtPercentile(99.9)))
        out.key("max"); out.double(micros(tally.latency.max))
        out.endObject()
        return String(decoding: out.bytes, as: UTF8.self)
    }

    /// The send time in `data.t`, if the event's `data` starts with it, and
    /// whether `"w":1` follows it (an event sent during the warm-up).
    static func stamp(in json: String) -> SendStamp? {
        var json = json
        return json.withUTF8 { SendStamp.find(in: UnsafeRawBufferPointer($0)) }
    }
}
