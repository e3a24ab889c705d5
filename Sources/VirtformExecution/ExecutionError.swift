/// The one error type of `VirtformExecution`: a code to branch on, a message people can act on,
/// the node ids involved (for graph errors) and an optional underlying cause.
public struct ExecutionError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// Two nodes of a graph share one id.
        case duplicateNode
        /// A node depends on an id that is not in the graph.
        case unknownDependency
        /// The dependencies form a cycle; `nodes` lists it in dependency order.
        case dependencyCycle
        /// The run lock is held by someone else; the message names the holder.
        case locked
        /// The run lock stayed held until the timeout passed; the message names the holder.
        case lockTimeout
        /// The lock file could not be opened, locked or written.
        case lockFailed
    }

    public let code: Code
    public let message: String
    /// The node ids the error is about, rendered with `String(describing:)`.
    public let nodes: [String]
    public let cause: (any Error)?

    public init(_ code: Code, _ message: String, nodes: [String] = [], cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.nodes = nodes
        self.cause = cause
    }

    public var description: String {
        guard let cause else { return message }
        return "\(message): \(cause)"
    }
}
