import VirtformModel

/// A DHCP operation that failed: what, where, and the server's own words.
///
/// Messages read "failed to <operation> on <endpoint>: <reason>"; for Kea the reason includes
/// the control command and Kea's `text`.
public struct DHCPError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The endpoint cannot be reached or used (socket, file, daemon).
        case unreachable
        /// The server answered with an error (Kea `result` ≠ 0) or something unreadable.
        case serverError
        /// The server changed since the observation in a way that touches these changes.
        case concurrentEdit
        /// The change collides with a reservation virtform does not own, or its subnet is not served.
        case conflict
        /// The request itself is wrong (no such driver, endpoint without socket path …).
        case invalidRequest
        /// The driver cannot do this.
        case unsupported
    }

    public let code: Code
    public let message: String
    /// The endpoint the failure happened on, when there is one.
    public let endpoint: String?

    public init(_ code: Code, _ message: String, endpoint: String? = nil) {
        self.code = code
        self.message = message
        self.endpoint = endpoint
    }

    public var description: String { message }
}

extension DHCPError: SystemFailureConvertible {
    public func failure(on system: String) -> SystemFailure {
        let (code, retryable): (SystemFailure.Code, Bool) = switch self.code {
        case .unreachable: (.unreachable, true)
        case .serverError: (.failed, true)
        case .concurrentEdit: (.concurrentEdit, true)
        case .conflict: (.conflict, false)
        case .invalidRequest: (.invalid, false)
        case .unsupported: (.unsupported, false)
        }
        return SystemFailure(code, system: system, message: message,
                             cause: "dhcp \(self.code.rawValue)\(endpoint.map { " on \($0)" } ?? "")", retryable: retryable)
    }
}
