import VirtformHypervisor
import VirtformModel
import VirtformPlanning

/// Hypervisors: one libvirt session per host, whatever its domain type (`Drivers` holds what
/// each type changes live; the planner reads it from there).
enum Hypervisors: SystemKind {
    static func drivers(for site: Site) -> [any SystemDriver] {
        site.hosts.map { HostDriver(name: $0.name, uri: $0.uri) }
    }

    struct HostDriver: SystemDriver {
        let name: String
        let uri: String
        var address: SystemAddress { .host(name) }

        func read(timeout: Duration) async throws -> SystemRead {
            let host = try await LibvirtHost.connect(name: name, uri: uri, timeout: timeout)
            return SystemRead(reading: .host(try await host.observe()), session: HostSession(address: address, host: host))
        }
    }

    /// Domain operations through the host's libvirt session.
    struct HostSession: SystemSession {
        let address: SystemAddress
        let host: LibvirtHost
        var addresses: [SystemAddress] { [address] }

        func execute(_ changes: [Change], on address: SystemAddress, settings: PlanExecution.Settings) async throws {
            for change in changes { try await execute(change, settings: settings) }
        }

        func close() async { await host.close() }

        private func execute(_ change: Change, settings: PlanExecution.Settings) async throws {
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
            case .startDomain(let name, let mark):
                try await host.start(name)
                if let mark { try await host.writeMark(name, mark) }
            case .stopDomain(let name, let mark):
                try await host.stop(name, timeout: timeout)
                if let mark { try await host.writeMark(name, mark) }
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
}
