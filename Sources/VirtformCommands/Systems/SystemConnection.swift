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

/// The drivers a site uses that are stand-ins (from their descriptors in `Drivers`): a plan
/// says so.
enum StandIns {
    static func warnings(_ site: Site) -> [String] {
        var warnings: [String] = []
        for host in site.hosts {
            if let reason = Drivers.descriptor(.hypervisor, host.domainType.rawValue)?.standIn {
                warnings.append("Host/\(host.name) runs \(host.domainType.rawValue) guests, a stand-in: \(reason)")
            }
        }
        for pool in site.pools {
            if let reason = Drivers.descriptor(.storagePool, pool.driver.rawValue)?.standIn {
                warnings.append("StoragePool/\(pool.name) uses the \(pool.driver.rawValue) driver, a stand-in: \(reason)")
            }
            if pool.sshTarget != nil {
                warnings.append("StoragePool/\(pool.name) runs its commands over ssh, a stand-in: checked only by the command lines it runs")
            }
            if let export = pool.export, let reason = Drivers.descriptor(.export, export.driver.rawValue)?.standIn {
                warnings.append("StoragePool/\(pool.name) exports with the \(export.driver.rawValue) driver, a stand-in: \(reason)")
            }
        }
        return warnings
    }
}
