import VirtformModel
import VirtformPlanning

/// One system virtform drives, connected for one run: apply carries the plan's operations out
/// through it. One type per kind of system (`HostConnection`, `PoolConnection`,
/// `ExportConnection`, `DHCPConnection`), each made by `SiteReader` from the driver that
/// observed the system, so an operation runs against what was read.
protocol SystemConnection: Sendable {
    var address: SystemAddress { get }
    /// Runs one change's operation; throws what the driver threw.
    func execute(_ change: Change, settings: PlanExecution.Settings) async throws
}

/// A system that takes several changes in one write (a DHCP server: one write per endpoint).
protocol BatchingSystemConnection: SystemConnection {
    func execute(batch: [Change], settings: PlanExecution.Settings) async throws
}

extension BatchingSystemConnection {
    func execute(_ change: Change, settings: PlanExecution.Settings) async throws {
        try await execute(batch: [change], settings: settings)
    }
}

/// The connected systems of one run, by address.
struct ConnectedSystems: Sendable {
    private(set) var connections: [SystemAddress: any SystemConnection] = [:]

    mutating func add(_ connection: any SystemConnection) { connections[connection.address] = connection }

    subscript(address: SystemAddress) -> (any SystemConnection)? { connections[address] }
}

/// Every driver virtform has, by the system it drives and the name a manifest gives it, and
/// which of them are stand-ins: checked only by the command lines they would run, because the
/// real thing cannot run on the machines virtform is tested on. A plan says when it uses one.
enum DriverRegistry {
    struct Descriptor: Sendable {
        var kind: SystemAddress.Kind
        var name: String
        /// Why it is a stand-in; nil for a driver tested against the real program.
        var standIn: String?
    }

    static let all: [Descriptor] = [
        Descriptor(kind: .host, name: "libvirt", standIn: nil),
        Descriptor(kind: .storagePool, name: "btrfs", standIn: nil),
        Descriptor(kind: .storagePool, name: "dir", standIn: nil),
        Descriptor(kind: .storagePool, name: "zfs", standIn: "ZFS cannot run on the test machines; the driver is checked only by the zfs command lines it runs"),
        Descriptor(kind: .exportServer, name: "tgt", standIn: nil),
        Descriptor(kind: .exportServer, name: "lio", standIn: "LIO needs kernel modules the test machines lack; the driver is checked only by the targetcli command lines it runs"),
        Descriptor(kind: .dhcpServer, name: "kea", standIn: nil),
        Descriptor(kind: .dhcpServer, name: "dnsmasq", standIn: nil),
    ]

    static func descriptor(_ kind: SystemAddress.Kind, _ name: String) -> Descriptor? {
        all.first { $0.kind == kind && $0.name == name }
    }

    /// What a plan should say of the site's drivers that are stand-ins.
    static func standInWarnings(_ site: Site) -> [String] {
        var warnings: [String] = []
        for pool in site.pools {
            if let reason = descriptor(.storagePool, pool.driver.rawValue)?.standIn {
                warnings.append("StoragePool/\(pool.name) uses the \(pool.driver.rawValue) driver, a stand-in: \(reason)")
            }
            if pool.sshTarget != nil {
                warnings.append("StoragePool/\(pool.name) runs its commands over ssh, a stand-in: checked only by the command lines it runs")
            }
            if let export = pool.export, let reason = descriptor(.exportServer, export.driver.rawValue)?.standIn {
                warnings.append("StoragePool/\(pool.name) exports with the \(export.driver.rawValue) driver, a stand-in: \(reason)")
            }
        }
        return warnings
    }
}
