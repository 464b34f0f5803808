import Foundation

/// Waits for a condition that an event will make true, checking it with a short backoff and
/// failing after `timeout`. For state reached asynchronously (a row written by a service);
/// the bound keeps a broken system from hanging the suite.
public func eventually(
    _ what: String, timeout: Duration = .seconds(15), _ condition: @Sendable () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    var pause = Duration.milliseconds(20)
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: pause)
        pause = min(pause * 2, .milliseconds(250))
    }
    throw TestFailure("timed out after \(timeout) waiting for: \(what)")
}

public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
