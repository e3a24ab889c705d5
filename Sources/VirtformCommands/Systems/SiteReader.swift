import ISCSI
import VirtformDHCP
import VirtformHypervisor
import VirtformModel
import VirtformPlanning
import VirtformStorage
import VirtformSystem

/// Reads every system a site names, all at once: the hypervisors, every declared storage pool
/// with its export server and what its portal serves, and every declared DHCP server. A system
/// that cannot be read is reported as such, never as empty.
enum SiteReader {
    struct Result: Sendable {
        var observation: SiteObservation
        var systems: ConnectedSystems
    }

    static func read(site: Site, timeout: Duration) async -> Result {
        async let hosts = SiteObserver.observe(site.hosts.map { ($0.name, $0.uri) }, timeout: timeout)
        async let pools = withTaskGroup(of: (String, PoolReading, (any StorageDriver)?, (any ExportDriver)?).self) { group in
            for pool in site.pools {
                group.addTask {
                    do {
                        return try await withDeadline(timeout * 3, "reading storage pool \(pool.name) and its targets") {
                            await readPool(pool, site: site.name)
                        }
                    } catch {
                        return (pool.name, .unreachable(reason: "\(error)"), nil, nil)
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        async let dhcp = withTaskGroup(of: (String, DHCPReading, (any DHCPDriver)?).self) { group in
            var subnets: [String: [IPv4Subnet]] = [:]
            for network in site.networks {
                if let server = network.dhcpServer { subnets[server, default: []].append(network.subnet) }
            }
            for server in site.dhcpServers {
                let served = subnets[server.meta.name] ?? []
                group.addTask {
                    do {
                        return try await withDeadline(timeout * 3, "reading DHCP server \(server.meta.name)") {
                            await readDHCP(server, subnets: served)
                        }
                    } catch {
                        return (server.meta.name, .unreachable(reason: "\(error)"), nil)
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let hypervisors = await hosts
        // The systems apply will use: the same drivers that read them.
        var systems = ConnectedSystems()
        for (name, session) in hypervisors.sessions { systems.add(HostConnection(address: .host(name), host: session)) }
        var observation = SiteObservation(hosts: hypervisors.observed)
        for (name, reading, driver, exporter) in await pools {
            observation.pools[name] = reading
            if let driver { systems.add(PoolConnection(address: .pool(name), driver: driver)) }
            if let exporter { systems.add(ExportConnection(address: .exportServer(name), exporter: exporter)) }
        }
        for (name, reading, driver) in await dhcp {
            observation.dhcpServers[name] = reading
            if let driver, case .read(let seen) = reading {
                systems.add(DHCPConnection(address: .dhcpServer(name), driver: driver, token: seen.token))
            }
        }
        return Result(observation: observation, systems: systems)
    }

    private static func readPool(_ pool: StoragePool, site: String) async -> (String, PoolReading, (any StorageDriver)?, (any ExportDriver)?) {
        do {
            let driver = try StorageDrivers.driver(for: pool, site: site)
            try await driver.probe()
            let observation = try await driver.observe()
            guard let export = pool.export else {
                return (pool.name, .read(PoolContents(observation: observation, targets: nil, capabilities: driver.capabilities)), driver, nil)
            }
            let exporter = try ExportDrivers.driver(for: export, tgtControlPort: export.controlPort)
            try await exporter.probe()
            let targets = try await exporter.observe()
            let portal = "\(export.portal.host):\(export.portal.port)"
            let ours = targets.filter { $0.isOwned && $0.iqn.hasPrefix(export.iqnPrefix + ":") }
            // A pool whose targets admit only named initiators is checked as the first of them
            // (what a hypervisor logs in as); otherwise as virtform's own initiator name.
            let initiator = export.initiators.first.map { Initiator(name: $0) } ?? Initiator()
            let served = await withTaskGroup(of: (String, ServedLUN).self) { group in
                for target in ours {
                    group.addTask {
                        do {
                            let capacity = try await initiator.capacity(portal: portal, target: target.iqn, lun: 1)
                            return (target.iqn, .size(capacity.bytes))
                        } catch let error as ISCSIError {
                            return (target.iqn, .unreadable(error.reason))
                        } catch {
                            return (target.iqn, .unreadable("\(error)"))
                        }
                    }
                }
                return await group.reduce(into: [String: ServedLUN]()) { $0[$1.0] = $1.1 }
            }
            return (pool.name, .read(PoolContents(observation: observation, targets: targets, served: served, capabilities: driver.capabilities)),
                    driver, exporter)
        } catch {
            return (pool.name, .unreachable(reason: "\(error)"), nil, nil)
        }
    }

    private static func readDHCP(_ server: DHCPServer, subnets: [IPv4Subnet]) async -> (String, DHCPReading, (any DHCPDriver)?) {
        do {
            let driver = try DHCPDrivers.driver(for: server)
            let observation = try await driver.observe(subnets: subnets)
            return (server.meta.name, .read(observation), driver)
        } catch {
            return (server.meta.name, .unreachable(reason: "\(error)"), nil)
        }
    }
}
