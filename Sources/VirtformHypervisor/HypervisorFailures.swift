import Libvirt
import VirtformModel

extension HypervisorError: SystemFailureConvertible {
    public func failure(on system: String) -> SystemFailure {
        SystemFailure(.failed, system: system, message: description, retryable: false)
    }
}

extension SystemFailure {
    /// A libvirt call of the hypervisor driver that failed, by libvirt's error code.
    public static func libvirt(_ error: LibvirtError, on system: String) -> SystemFailure {
        let (code, retryable): (Code, Bool) = switch error.code {
        case .noConnect, .invalidConnection, .rpcError, .authFailed: (.unreachable, true)
        case .operationTimeout: (.timeout, true)
        case .noDomain: (.notFound, false)
        case .domainExists: (.alreadyExists, false)
        case .noSupport, .operationUnsupported, .configUnsupported: (.unsupported, false)
        case .invalidArgument, .xmlError, .xmlDetail: (.invalid, false)
        case .operationInvalid, .migrateUnsafe: (.refused, false)
        default: (.failed, true)
        }
        return SystemFailure(code, system: system, message: error.description, cause: "libvirt error \(error.code)", retryable: retryable)
    }
}
