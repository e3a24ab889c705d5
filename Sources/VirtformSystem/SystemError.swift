/// An operating-system operation that failed (a program, a file, a user lookup), with what
/// failed and why.
public struct SystemError: Error, Sendable, CustomStringConvertible {
    public let message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}
