/// A libiscsi operation that failed: what was attempted, against which portal or target, and
/// libiscsi's own error text (`iscsi_get_error`) or the SCSI status of the command.
public struct ISCSIError: Error, Sendable, CustomStringConvertible {
    /// The operation, e.g. "discover targets at 127.0.0.1:3260".
    public let operation: String
    /// libiscsi's explanation.
    public let reason: String

    public init(operation: String, reason: String) {
        self.operation = operation
        self.reason = reason
    }

    public var description: String { "failed to \(operation): \(reason)" }
}
