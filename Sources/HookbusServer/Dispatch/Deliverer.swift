import HookbusCore

/// Hands one delivery to a subscriber and reports how the attempt ended.
///
/// Implementations never throw: every failure is an `AttemptResult`, with a
/// message that says what happened (exit status, timeout, stderr tail, ...).
protocol Deliverer: Sendable {
    func deliver(_ delivery: Delivery) async -> AttemptResult
    /// Long-running work the deliverer needs (a supervised process, say); runs
    /// until cancelled. Most deliverers need none.
    func run() async
}

extension Deliverer {
    func run() async {}
}
