import VirtformDHCP
import VirtformHypervisor
import VirtformModel
import VirtformPlanning
import VirtformStorage

/// A hypervisor: domain operations through its libvirt session.
struct HostConnection: SystemConnection {
    let address: SystemAddress
    let host: LibvirtHost

    func execute(_ change: Change, settings: PlanExecution.Settings) async throws {
        let timeout = Duration.milliseconds(Int(settings.shutdownTimeout * 1000))
        switch change.operation {
        case .defineDomain(let spec, let ownership, let replacing, let live):
            try await host.define(spec, ownership: ownership, replacing: replacing)
            if let live {
                if let memory = live.memoryKiB { try await host.setLiveMemory(spec.name, kib: memory) }
                if let vcpus = live.vcpus { try await host.setLiveVCPUs(spec.name, count: vcpus) }
                if !live.attach.isEmpty || !live.detach.isEmpty {
                    try await host.hotplug(spec.name, attach: live.attach, detach: live.detach)
                }
            }
        case .startDomain(let name):
            try await host.start(name)
        case .stopDomain(let name):
            try await host.stop(name, timeout: timeout)
        case .restartDomain(let name):
            try await host.stop(name, timeout: timeout)
            try await host.start(name)
        case .deleteDomain(let name):
            try await host.delete(name)
        case .migrateDomain:
            throw HypervisorError("migration is not carried out yet (the cluster feature)")
        default:
            throw CommandFailure.notFor(change, address)
        }
    }
}

/// A storage pool: projects, images, snapshots and LUNs through its driver.
struct PoolConnection: SystemConnection {
    let address: SystemAddress
    let driver: any StorageDriver

    func execute(_ change: Change, settings: PlanExecution.Settings) async throws {
        switch change.operation {
        case .createProject(let name):
            try await driver.createProject(name)
        case .deleteProject(let name):
            try await driver.deleteProject(name)
        case .createImage(let project, let name, let size, let source):
            if let source {
                try await driver.importImage(project: project, name: name, source: source, size: size)
            } else {
                try await driver.createImage(project: project, name: name, size: size ?? 0)
            }
        case .createSnapshot(let reference):
            try await driver.createSnapshot(reference)
        case .deleteSnapshot(let reference):
            try await driver.deleteSnapshot(reference)
        case .cloneVolume(let source, let project, let name, let size):
            try await driver.clone(from: source, project: project, name: name, size: size)
        case .growVolume(let project, let name, let size):
            try await driver.grow(project: project, name: name, to: size)
        case .deleteVolume(let project, let name):
            try await driver.deleteVolume(project: project, name: name)
        default:
            throw CommandFailure.notFor(change, address)
        }
    }
}

/// A pool's iSCSI target server: one target per LUN through its export driver.
struct ExportConnection: SystemConnection {
    let address: SystemAddress
    let exporter: any ExportDriver

    func execute(_ change: Change, settings: PlanExecution.Settings) async throws {
        switch change.operation {
        case .exportVolume(let request):
            try await exporter.export([request])
        case .reexportVolume(let iqn, let request):
            try await exporter.unexport(iqn: iqn, force: false)
            try await exporter.export([request])
        case .unexportVolume(let iqn):
            try await exporter.unexport(iqn: iqn, force: false)
        default:
            throw CommandFailure.notFor(change, address)
        }
    }
}

/// A DHCP server: all of a run's reservation edits in one write per endpoint, against the
/// state read for this run (a server edited since is re-checked by the driver).
struct DHCPConnection: BatchingSystemConnection {
    let address: SystemAddress
    let driver: any DHCPDriver
    let token: DHCPVersionToken

    func execute(batch: [Change], settings: PlanExecution.Settings) async throws {
        let edits = try batch.map { change -> ReservationChange in
            guard case .reservation(let edit) = change.operation else { throw CommandFailure.notFor(change, address) }
            return edit
        }
        _ = try await driver.apply(edits, basedOn: token)
    }
}

extension CommandFailure {
    /// An operation sent to a system of the wrong kind: a plan edited by hand, or a bug.
    static func notFor(_ change: Change, _ address: SystemAddress) -> CommandFailure {
        CommandFailure(change.operation == .manual
            ? "\(change.id) cannot be carried out by virtform: \(change.blocked ?? change.reason)"
            : "\(change.id) is not an operation for \(address)")
    }
}
