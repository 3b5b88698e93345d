import Histogram

/// What one producer connection is asked to do.
struct BenchPlan: Sendable {
    var connection: Int
    var window: Int
    /// Events to send; nil: until `stopSendingAt`.
    var count: Int?
    /// Monotonic time after which nothing more is sent (replies are still awaited).
    var stopSendingAt: UInt64
    /// Monotonic start time shared by every connection.
    var start: UInt64
    /// Events sent before this monotonic time are not measured.
    var measureFrom: UInt64
    /// Nanoseconds between intended sends on this connection (open loop); nil: closed loop.
    var interval: Double?
    /// realtime − monotonic, to stamp events with a realtime send time.
    var realtimeOffset: UInt64
    var run: String
    var size: Int
    /// Event ids in random order instead of counting up.
    var randomIDs = false
}

/// What one producer connection measured.
struct BenchProducerResult: @unchecked Sendable {
    var sent = 0
    var acknowledged = 0
    var refused = 0
    /// Replies to events sent after the warm-up.
    var measured = 0
    var latency = BenchLatency.histogram()
    var firstReplyAt: UInt64 = .max
    var lastReplyAt: UInt64 = 0
    var firstError: String?
    /// The connection broke; what was sent and not answered is lost.
    var failure: String?
}

/// Drives one connection: keeps up to `window` requests in flight, measures
/// each reply's latency from its send time or, with an offered rate, from the
/// time it should have been sent (so a stalled target is charged for the
/// events it held back: no coordinated omission).
struct BenchProducer<Wire: BenchWire> {
    var wire: Wire
    let socket: BenchSocket
    let plan: BenchPlan

    mutating func run() -> BenchProducerResult {
        var result = BenchProducerResult()
        var wire = self.wire
        defer { self.wire = wire }
        var event = BenchEvent(run: plan.run, connection: plan.connection, size: plan.size, randomIDs: plan.randomIDs)
        let window = plan.window
        var sentAt = [UInt64](repeating: 0, count: window)
        var out: [UInt8] = []
        out.reserveCapacity(window * (event.bytes.count + 64))
        var inbox = BenchInbox()
        var sent = 0
        var acknowledged = 0

        func intended(_ index: Int) -> UInt64 {
            plan.start + UInt64(Double(index) * plan.interval!)
        }

        BenchClock.sleep(until: plan.start)
        while true {
            let now = BenchClock.monotonic()
            let open = (plan.count.map { sent < $0 } ?? true) && now < plan.stopSendingAt
            if !open && acknowledged == sent { break }

            // Send what the window (and the offered rate) allow, in one write.
            if open && sent - acknowledged < window {
                var batch = window - (sent - acknowledged)
                if let count = plan.count { batch = min(batch, count - sent) }
                if let interval = plan.interval {
                    let due = Int(Double(now - plan.start) / interval) + 1 - sent
                    batch = min(batch, max(0, due))
                }
                if batch > 0 {
                    out.removeAll(keepingCapacity: true)
                    for _ in 0..<batch {
                        let at = plan.interval == nil ? now : intended(sent)
                        sentAt[sent % window] = at
                        event.set(counter: sent, sentAtRealtime: at &+ plan.realtimeOffset, warmup: at < plan.measureFrom)
                        wire.encode(event.bytes, into: &out)
                        sent += 1
                    }
                    do {
                        try socket.write(out)
                    } catch {
                        result.failure = error.description
                        break
                    }
                }
            }

            if sent > acknowledged {
                // Open loop with room in the window: wake up for the next send time.
                if plan.interval != nil && open && sent - acknowledged < window {
                    let next = intended(sent)
                    let current = BenchClock.monotonic()
                    if next <= current || !socket.waitReadable(nanoseconds: next - current) { continue }
                }
                do {
                    guard try socket.read(into: &inbox) else {
                        result.failure = "\(socket.address) closed the connection with \(sent - acknowledged) event(s) unanswered"
                        break
                    }
                } catch {
                    result.failure = error.description
                    break
                }
                let readAt = BenchClock.monotonic()
                inbox.parse { bytes in
                    wire.parse(bytes) { stored in
                        let at = sentAt[acknowledged % window]
                        acknowledged += 1
                        if !stored { result.refused += 1 }
                        if at >= plan.measureFrom {
                            result.latency.record(readAt > at ? readAt - at : 0)
                            result.measured += 1
                            result.firstReplyAt = min(result.firstReplyAt, readAt)
                            result.lastReplyAt = readAt
                        }
                    }
                }
            } else if open, plan.interval != nil {
                BenchClock.sleep(until: intended(sent))
            }
        }
        result.sent = sent
        result.acknowledged = acknowledged
        result.firstError = wire.firstError
        return result
    }
}
