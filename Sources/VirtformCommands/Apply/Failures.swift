import Libvirt
import VirtformHypervisor
import VirtformModel
import VirtformSystem

extension SystemFailure {
    /// Any error of a driver, as the failure of an operation on `system`: the driver modules'
    /// errors say what they are themselves; libvirt's are the hypervisor driver's; a deadline or
    /// a program that failed is worth another try.
    static func from(_ error: any Error, system: String) -> SystemFailure {
        switch error {
        case let failure as SystemFailure:
            return failure
        case let error as any SystemFailureConvertible:
            return error.failure(on: system)
        case let error as LibvirtError:
            return .libvirt(error, on: system)
        case let error as SystemError:
            return SystemFailure(error.timedOut ? .timeout : .failed, system: system, message: error.message, retryable: true)
        default:
            return SystemFailure(.failed, system: system, message: "\(error)", retryable: false)
        }
    }
}
