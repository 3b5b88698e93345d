import HookbusCore
import NIOCore

/// The frames of one read, handed to the connection as one batch so that its
/// events share a commit and its replies share one write.
struct FrameBatch: Sendable {
    var frames: [Frame]
    /// The broker is shutting down: this is the last batch the connection will
    /// get; nothing more is read from the socket.
    var isLast = false
}

/// Asks a connection to finish: answer what was read, read nothing more.
struct DrainEvent: Sendable {}

/// Frames bytes into lines (see `LineFramer`) and batches them per read.
///
/// Sits in front of the `NIOAsyncChannel`, whose back-pressure stops reading
/// from the socket while batches wait, so a producer that writes without
/// reading its replies is slowed rather than buffered without bound.
final class LineFramingHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = FrameBatch
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var framer: LineFramer
    private var pending: [Frame] = []
    private var draining = false

    init(maxLineBytes: Int) {
        framer = LineFramer(maxLineBytes: maxLineBytes)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !draining else { return }
        let buffer = unwrapInboundIn(data)
        buffer.withUnsafeReadableBytes { framer.feed($0, into: &pending) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flush(context: context, isLast: false)
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is DrainEvent {
            guard !draining else { return }
            draining = true
            flush(context: context, isLast: true)
            context.fireChannelReadComplete()
            return
        }
        if case ChannelEvent.inputClosed = event, !draining {
            framer.finish(into: &pending)
            flush(context: context, isLast: false)
            context.fireChannelReadComplete()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func read(context: ChannelHandlerContext) {
        // Once draining, nothing more is read: everything read has been answered.
        if !draining { context.read() }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
    }

    private func flush(context: ChannelHandlerContext, isLast: Bool) {
        guard !pending.isEmpty || isLast else { return }
        let batch = FrameBatch(frames: pending, isLast: isLast)
        pending = []
        context.fireChannelRead(wrapInboundOut(batch))
    }
}
