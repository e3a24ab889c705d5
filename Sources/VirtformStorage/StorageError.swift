import Foundation
import VirtformModel

/// A storage or export operation that failed: a code to act on, what failed on which object,
/// and why (a program's stderr, an errno text).
public struct StorageError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The pool or export cannot be used at all (not mounted, tool missing, daemon down).
        case unusable
        /// The object does not exist.
        case notFound
        /// An object with that name is already there.
        case alreadyExists
        /// The object was not made by virtform (no ownership mark): never modified or deleted.
        case unowned
        /// The request is refused as unsafe (shrinking, deleting a non-empty project, unexporting
        /// a target with connected initiators).
        case refused
        /// The driver cannot do this.
        case unsupported
        /// The request itself is malformed (a name that is not a name).
        case invalid
        /// The pool has no room for it (ENOSPC, or less free space than a copy needs).
        case noSpace
        /// The operation was attempted and failed (a program's exit status, an errno).
        case failed
    }

    public let code: Code
    /// "failed to <operation> <object>: <reason>", lower-case.
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    static func failed(_ operation: String, _ reason: String) -> StorageError {
        StorageError(.failed, "failed to \(operation): \(reason)")
    }

    /// `failed`, or `noSpace` when the errno says the filesystem is full.
    static func failed(_ operation: String, errno code: Int32) -> StorageError {
        StorageError(code == ENOSPC || code == EDQUOT ? .noSpace : .failed, "failed to \(operation): \(String(cString: strerror(code)))")
    }
}

extension StorageError: SystemFailureConvertible {
    public func failure(on system: String) -> SystemFailure {
        let (code, retryable): (SystemFailure.Code, Bool) = switch self.code {
        case .unusable: (.unreachable, true)
        case .notFound: (.notFound, false)
        case .alreadyExists: (.alreadyExists, false)
        case .unowned: (.notOwned, false)
        case .refused: (.refused, true)
        case .unsupported: (.unsupported, false)
        case .invalid: (.invalid, false)
        case .noSpace: (.noSpace, true)
        case .failed: (.failed, true)
        }
        return SystemFailure(code, system: system, message: message, cause: "storage \(self.code.rawValue)", retryable: retryable)
    }
}
