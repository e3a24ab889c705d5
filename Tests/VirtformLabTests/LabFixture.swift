import Foundation
import VirtformSystem
import Libvirt
import Testing
import VirtformLab

/// Why the lab tests cannot run here, or nil.
let labUnavailable = HypervisorLab.unmetRequirements()

/// A lab in a fresh temporary root with test-only users (`vfltesth1`…), so it never touches a
/// real lab. Torn down when `body` ends, also when it throws.
enum LabFixture {
    static func with<T: Sendable>(
        hosts count: Int, _ body: @Sendable (HypervisorLab, [LabHost]) async throws -> T
    ) async throws -> T {
        try await HypervisorLab.withTemporaryLab(hosts: count, userPrefix: "vfltesth", body)
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}

/// A guest QEMU can run with TCG and nothing else: no disk, no graphics element at all
/// (`<graphics type='none'/>` is rejected by this libvirt).
func guestXML(name: String) -> String {
    """
    <domain type='qemu'>
      <name>\(name)</name>
      <memory unit='MiB'>64</memory>
      <vcpu>1</vcpu>
      <os><type arch='x86_64' machine='pc'>hvm</type></os>
      <on_poweroff>destroy</on_poweroff>
      <devices><memballoon model='none'/></devices>
    </domain>
    """
}
