import Histogram
import Synchronization

/// Tells a consumer thread when it has seen enough: the producers' total once
/// they finish, and a time after which it stops waiting for stragglers.
final class BenchConsumerControl: Sendable {
    let expected = Atomic<Int>(.max)
    let giveUpAt = Atomic<UInt64>(.max)

    func done(received: Int) -> Bool {
        received >= expected.load(ordering: .acquiring)
            || BenchClock.monotonic() >= giveUpAt.load(ordering: .acquiring)
    }
}

/// What a consumer measured: publish-to-delivery latency of the events it got.
struct BenchConsumerResult: @unchecked Sendable {
    var received = 0
    var measured = 0
    var latency = BenchLatency.histogram()
    var failure: String?

    /// Records the delivery of an event sent at `sentAt` (realtime), seen at `now`.
    mutating func record(sentAt: UInt64, now: UInt64, measureFrom: UInt64) {
        received += 1
        guard sentAt >= measureFrom else { return }
        measured += 1
        latency.record(now > sentAt ? now - sentAt : 0)
    }
}

/// The consumers `--e2e` runs beside the producers, one per target kind.
enum BenchConsumer {
    /// A hookbus socket subscriber (live, unnamed) for `bench.*` that acks every
    /// delivery; the acks of one read go out in one write. Returns once the
    /// subscription is in place, so no event of the run is missed.
    static func hookbus(
        address: BenchAddress, window: Int, measureFrom: UInt64, control: BenchConsumerControl
    ) throws -> BenchThread<BenchConsumerResult> {
        let socket = try BenchSocket(connectingTo: address)
        try socket.write(Array(#"{"op":"subscribe","types":["bench.*"],"window":\#(window)}"#.utf8) + [0x0A])
        var inbox = BenchInbox()
        var reply: String?
        while reply == nil {
            guard try socket.read(into: &inbox) else { throw BenchSocket.Failure(description: "the broker closed the subscription") }
            inbox.parse { bytes in
                guard let newline = memchrIndex(0x0A, in: bytes, from: 0) else { return 0 }
                reply = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[..<newline]), as: UTF8.self)
                return newline + 1
            }
        }
        guard reply!.hasPrefix(#"{"ok":true"#) else {
            throw BenchSocket.Failure(description: "the broker refused the subscription: \(reply!)")
        }
        socket.setReceiveTimeout(milliseconds: 100)
        return BenchThread { [inbox] in
            var inbox = inbox
            var result = BenchConsumerResult()
            var acks: [UInt8] = []
            while !control.done(received: result.received) {
                do {
                    guard try socket.read(into: &inbox) else {
                        result.failure = "the broker closed the subscription"
                        break
                    }
                } catch {
                    result.failure = "\(error)"
                    break
                }
                let now = BenchClock.realtime()
                acks.removeAll(keepingCapacity: true)
                inbox.parse { bytes in
                    BenchDeliveryLines.scan(bytes) { delivery, stamp in
                        acks.append(contentsOf: #"{"op":"ack","delivery":"#.utf8)
                        acks.append(contentsOf: delivery)
                        acks.append(contentsOf: "}\n".utf8)
                        if let stamp { result.record(sentAt: stamp.sentAt, now: now, measureFrom: measureFrom) }
                    }
                }
                if !acks.isEmpty {
                    do { try socket.write(acks) } catch {
                        result.failure = "\(error)"
                        break
                    }
                }
            }
            return result
        }
    }

    /// A redis stream consumer in group `bench`: `XREADGROUP ... COUNT 512
    /// BLOCK 100 STREAMS <stream> >`, then one `XACK` for the entries of each
    /// reply, sent together with the next read.
    static func redis(
        address: BenchAddress, stream: String, measureFrom: UInt64, control: BenchConsumerControl
    ) throws -> BenchThread<BenchConsumerResult> {
        let socket = try BenchSocket(connectingTo: address)
        let read = RESP.command(["XREADGROUP", "GROUP", "bench", "consumer", "COUNT", "512", "BLOCK", "100", "STREAMS", stream, ">"])
        return BenchThread {
            var result = BenchConsumerResult()
            var inbox = BenchInbox()
            var pendingAcks = 0
            var request = read
            while !control.done(received: result.received) {
                do {
                    try socket.write(request)
                } catch {
                    result.failure = "\(error)"
                    break
                }
                request = []
                // Answers: the XACK (if one was sent), then the XREADGROUP.
                var answers: [RESP.Value] = []
                while answers.count < pendingAcks + 1 {
                    do {
                        guard try socket.read(into: &inbox) else {
                            result.failure = "redis closed the connection"
                            return result
                        }
                    } catch {
                        result.failure = "\(error)"
                        return result
                    }
                    inbox.parse { bytes in
                        var start = 0
                        while let (value, end) = RESP.parse(bytes, at: start) {
                            answers.append(value)
                            start = end
                        }
                        return start
                    }
                }
                let now = BenchClock.realtime()
                if case .error(let text)? = answers.last {
                    result.failure = "XREADGROUP failed: \(text)"
                    break
                }
                var ids: [[UInt8]] = []
                // [[stream, [[id, [field, value]], ...]]] or nil after BLOCK ran out.
                for streamReply in answers.last?.elements ?? [] {
                    for entry in streamReply.elements?.last?.elements ?? [] {
                        guard let parts = entry.elements, let id = parts.first?.bytes else { continue }
                        ids.append(id)
                        guard let value = parts.last?.elements?.last?.bytes else { continue }
                        if let sentAt = value.withUnsafeBytes({ BenchEvent.sentAt(in: $0) }) {
                            result.record(sentAt: sentAt, now: now, measureFrom: measureFrom)
                        }
                    }
                }
                pendingAcks = ids.isEmpty ? 0 : 1
                if !ids.isEmpty {
                    request = RESP.command([Array("XACK".utf8), Array(stream.utf8), Array("bench".utf8)] + ids)
                }
                request += read
            }
            return result
        }
    }
}
