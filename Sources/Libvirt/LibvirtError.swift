import CLibvirt
import Foundation

/// A failed libvirt call: libvirt's own error code, error domain and message, plus the operation
/// this wrapper was performing.
public struct LibvirtError: Error, Sendable, Equatable, CustomStringConvertible {
    /// libvirt's `virErrorNumber`. Any value libvirt reports is kept; the named constants are the
    /// ones callers commonly branch on.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        init(_ number: virErrorNumber) { self.rawValue = Int32(bitPattern: number.rawValue) }

        public static let internalError = Code(VIR_ERR_INTERNAL_ERROR)
        public static let noSupport = Code(VIR_ERR_NO_SUPPORT)
        public static let invalidArgument = Code(VIR_ERR_INVALID_ARG)
        public static let operationFailed = Code(VIR_ERR_OPERATION_FAILED)
        public static let xmlError = Code(VIR_ERR_XML_ERROR)
        public static let xmlDetail = Code(VIR_ERR_XML_DETAIL)
        public static let systemError = Code(VIR_ERR_SYSTEM_ERROR)
        public static let rpcError = Code(VIR_ERR_RPC)
        public static let noConnect = Code(VIR_ERR_NO_CONNECT)
        public static let invalidConnection = Code(VIR_ERR_INVALID_CONN)
        public static let noDomain = Code(VIR_ERR_NO_DOMAIN)
        public static let noSecret = Code(VIR_ERR_NO_SECRET)
        public static let operationInvalid = Code(VIR_ERR_OPERATION_INVALID)
        public static let operationUnsupported = Code(VIR_ERR_OPERATION_UNSUPPORTED)
        public static let operationTimeout = Code(VIR_ERR_OPERATION_TIMEOUT)
        public static let operationAborted = Code(VIR_ERR_OPERATION_ABORTED)
        public static let authFailed = Code(VIR_ERR_AUTH_FAILED)
        public static let noDomainMetadata = Code(VIR_ERR_NO_DOMAIN_METADATA)
        public static let configUnsupported = Code(VIR_ERR_CONFIG_UNSUPPORTED)
        public static let migrateUnsafe = Code(VIR_ERR_MIGRATE_UNSAFE)
        public static let domainExists = Code(VIR_ERR_DOM_EXIST)

        public var description: String { "\(rawValue)" }
    }

    /// libvirt's error code (`virErrorNumber`).
    public let code: Code
    /// libvirt's error domain (`virErrorDomain`): which part of libvirt raised it.
    public let domain: Int32
    /// libvirt's own message, e.g. "Domain not found: no domain with matching name 'x'".
    public let message: String
    /// What this wrapper was doing, e.g. "define domain" or "open connection to 'test:///default'".
    public let operation: String

    public init(code: Code, domain: Int32 = 0, message: String, operation: String) {
        self.code = code
        self.domain = domain
        self.message = message
        self.operation = operation
    }

    public var description: String { "failed to \(operation): \(message)" }

    /// Captures and clears the calling thread's last libvirt error.
    ///
    /// Must run on the thread that made the failing call, right after it: libvirt keeps the last
    /// error per thread and any later call may overwrite it.
    static func last(operation: String) -> LibvirtError {
        guard let error = virGetLastError() else {
            return LibvirtError(
                code: .internalError, message: "libvirt reported failure without an error", operation: operation)
        }
        let result = LibvirtError(
            code: Code(rawValue: error.pointee.code),
            domain: error.pointee.domain,
            message: error.pointee.message.map { String(cString: $0) } ?? "unknown libvirt error",
            operation: operation)
        virResetLastError()
        return result
    }
}

/// Throws the thread's last libvirt error if `result` is negative (libvirt's failure convention).
@discardableResult
func check(_ result: Int32, _ operation: @autoclosure () -> String) throws(LibvirtError) -> Int32 {
    if result < 0 { throw LibvirtError.last(operation: operation()) }
    return result
}

/// Throws the thread's last libvirt error if `pointer` is NULL.
func check<P>(_ pointer: P?, _ operation: @autoclosure () -> String) throws(LibvirtError) -> P {
    guard let pointer else { throw LibvirtError.last(operation: operation()) }
    return pointer
}

/// Takes ownership of a `char *` libvirt returned: copies it and `free()`s it.
func takeString(_ pointer: UnsafeMutablePointer<CChar>?) -> String? {
    guard let pointer else { return nil }
    defer { free(pointer) }
    return String(cString: pointer)
}
