/// An operating-system operation that failed (a program, a file, a user lookup), with what
/// failed and why.
public struct SystemError: Error, Sendable, CustomStringConvertible {
    public let message: String
    /// Set when the operation ran out of time (`withDeadline`) rather than failing.
    public let timedOut: Bool

    public init(_ message: String, timedOut: Bool = false) {
        self.message = message
        self.timedOut = timedOut
    }

    public var description: String { message }
}
