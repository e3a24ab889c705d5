import ISCSI
import Libvirt
import VirtformDHCP
import VirtformHypervisor
import VirtformModel
import VirtformStorage
import VirtformSystem

extension SystemFailure {
    /// Any error of a driver, as the failure of an operation on `system`.
    static func from(_ error: any Error, system: String) -> SystemFailure {
        switch error {
        case let failure as SystemFailure:
            return failure
        case let error as StorageError:
            let (code, retryable): (Code, Bool) = switch error.code {
            case .unusable: (.unreachable, true)
            case .notFound: (.notFound, false)
            case .alreadyExists: (.alreadyExists, false)
            case .unowned: (.notOwned, false)
            case .refused: (.refused, true)
            case .unsupported: (.unsupported, false)
            case .invalid: (.invalid, false)
            case .failed: (.failed, true)
            }
            return SystemFailure(code, system: system, message: error.message, cause: "storage \(error.code.rawValue)", retryable: retryable)
        case let error as DHCPError:
            let (code, retryable): (Code, Bool) = switch error.code {
            case .unreachable: (.unreachable, true)
            case .serverError: (.failed, true)
            case .concurrentEdit: (.concurrentEdit, true)
            case .conflict: (.conflict, false)
            case .invalidRequest: (.invalid, false)
            case .unsupported: (.unsupported, false)
            }
            return SystemFailure(code, system: system, message: error.message,
                                 cause: "dhcp \(error.code.rawValue)\(error.endpoint.map { " on \($0)" } ?? "")", retryable: retryable)
        case let error as LibvirtError:
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
        case let error as ISCSIError:
            return SystemFailure(.failed, system: system, message: error.description, cause: "iscsi", retryable: true)
        case let error as SystemError:
            return SystemFailure(error.timedOut ? .timeout : .failed, system: system, message: error.message, retryable: true)
        case let error as HypervisorError:
            return SystemFailure(.failed, system: system, message: error.description, retryable: false)
        case let error as CommandFailure:
            return SystemFailure(.failed, system: system, message: error.description, retryable: false)
        default:
            return SystemFailure(.failed, system: system, message: "\(error)", retryable: false)
        }
    }
}
