import HookbusCore
import Logging

/// Answers command lines (lines with an `op`). Each command writes exactly one
/// reply line.
struct CommandRouter: Sendable {
    /// The protocol version this broker speaks, reported by `ping`.
    static let protocolVersion = 1

    func handle(_ command: Command, producer: Producer, into out: inout JSONWriter) async {
        switch command.op {
        case "ping":
            Reply.ok(op: "ping", into: &out) { out in
                out.key("protocol"); out.int(Self.protocolVersion)
            }
        default:
            Reply.error(WireError(.unknownOp, "unknown_op", attribute: "op",
                                  "unknown op \"\(EventValidator.clipped(command.op))\"; this broker implements: ping"),
                        into: &out)
        }
    }
}
