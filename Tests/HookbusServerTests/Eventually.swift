import Testing

/// Polls `condition` every 5 ms until it holds; fails the test (by throwing)
/// if it still does not after `timeout`.
func eventually(within timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        try #require(ContinuousClock.now < deadline, "condition not met in \(timeout)")
        try await Task.sleep(for: .milliseconds(5))
    }
}
