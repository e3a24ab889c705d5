/// A failure of any system virtform drives, in one shape: what kind of failure, on which
/// system, what happened, the underlying cause as the system reported it, and whether trying
/// again can help. Apply reports every failed operation so; each driver module's error type
/// says what it is as one (`SystemFailureConvertible`), and the errors of the thin wrappers
/// (libvirt, libiscsi, running programs), which know nothing of virtform, are translated by the
/// driver that called them.
public struct SystemFailure: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Code: String, Sendable, Codable, CaseIterable {
        /// The system could not be reached or used (connection, socket, daemon, mount).
        case unreachable
        /// It did not answer in time.
        case timeout
        /// The object is not there.
        case notFound
        /// The object is there already.
        case alreadyExists
        /// The object is not virtform's, or another site's: never changed.
        case notOwned
        /// Refused as unsafe (shrinking, connected initiators, a non-empty project).
        case refused
        /// It collides with something virtform does not own.
        case conflict
        /// The system changed since it was observed, in a way that touches this change.
        case concurrentEdit
        /// The driver or the system cannot do this.
        case unsupported
        /// The request is malformed.
        case invalid
        /// The system has no room for it (a full pool).
        case noSpace
        /// Attempted, and failed.
        case failed
    }

    public var code: Code
    /// `lab-h1`, `StoragePool/lab-pool`, `ExportServer/lab-pool`, `DHCPServer/lab-dhcp`.
    public var system: String
    public var message: String
    /// What the system itself said: `libvirt error 55`, a program's stderr, an errno text.
    public var cause: String?
    /// Whether the same operation may succeed later without a change of the manifests.
    public var retryable: Bool

    public init(_ code: Code, system: String, message: String, cause: String? = nil, retryable: Bool) {
        self.code = code
        self.system = system
        self.message = message
        self.cause = cause
        self.retryable = retryable
    }

    public var description: String {
        "\(message) [\(code.rawValue) on \(system)\(cause.map { "; \($0)" } ?? "")\(retryable ? "; retrying may help" : "")]"
    }
}

/// A driver's own error that says what it is as a `SystemFailure`: each driver module decides
/// the code and whether retrying can help for its errors, apply reports them in one shape.
public protocol SystemFailureConvertible: Error {
    func failure(on system: String) -> SystemFailure
}
