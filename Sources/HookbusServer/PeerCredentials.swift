import HookbusCore
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// The layout of Linux's `struct ucred`, which Glibc does not export to Swift.
struct UCred: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

enum PeerCredentials {
    /// Reads SO_PEERCRED of a connected Unix socket: who is on the other end.
    static func read(from channel: any Channel) -> EventLoopFuture<Producer> {
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeFailedFuture(ChannelError.operationUnsupported)
        }
        return provider.unsafeGetSocketOption(
            level: NIOBSDSocket.OptionLevel(rawValue: SOL_SOCKET),
            name: NIOBSDSocket.Option(rawValue: SO_PEERCRED)
        ).map { (cred: UCred) in
            Producer(uid: cred.uid, gid: cred.gid, pid: cred.pid)
        }
    }
}
