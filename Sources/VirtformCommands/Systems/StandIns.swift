import VirtformModel

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
            if let export = pool.export, let reason = Drivers.descriptor(.export, export.driver.rawValue)?.standIn {
                warnings.append("StoragePool/\(pool.name) exports with the \(export.driver.rawValue) driver, a stand-in: \(reason)")
            }
        }
        return warnings
    }
}
