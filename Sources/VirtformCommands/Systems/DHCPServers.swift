import VirtformDHCP
import VirtformRemote
import VirtformModel
import VirtformPlanning

/// DHCP servers: each read for the subnets of the networks it serves (and virtform's own
/// reservations anywhere else).
enum DHCPServers: SystemKind {
    static func drivers(for site: Site, context: ReadContext) -> [any SystemDriver] {
        var subnets: [String: [IPv4Subnet]] = [:]
        for network in site.networks {
            if let server = network.dhcpServer { subnets[server, default: []].append(network.subnet) }
        }
        return site.dhcpServers.map { ServerDriver(server: $0, subnets: subnets[$0.meta.name] ?? []) }
    }

    struct ServerDriver: SystemDriver {
        let server: DHCPServer
        let subnets: [IPv4Subnet]
        var address: SystemAddress { .dhcpServer(server.meta.name) }

        /// No separate probe: an HA pair with one peer down is still read, with that endpoint
        /// marked unreachable inside the observation.
        func read(timeout: Duration) async throws -> SystemRead {
            // dnsmasq's hosts file on another machine is edited there, by `virtform agent` over ssh.
            let driver = try server.ssh.map { RemoteDrivers.dhcp(for: server, access: $0) } ?? DHCPDrivers.driver(for: server)
            let observation = try await driver.observe(subnets: subnets)
            return SystemRead(reading: .dhcp(observation), session: ServerSession(address: address, driver: driver, token: observation.token))
        }
    }

    /// All of a run's reservation edits in one write per endpoint, against the state read for
    /// this run (a server edited since is re-checked by the driver).
    struct ServerSession: SystemSession {
        let address: SystemAddress
        let driver: any DHCPDriver
        let token: DHCPVersionToken
        var addresses: [SystemAddress] { [address] }

        func execute(_ changes: [Change], on address: SystemAddress, settings: PlanExecution.Settings) async throws {
            var edits: [ReservationChange] = []
            var unfinished: [String] = []
            for change in changes {
                switch change.operation {
                case .reservation(let edit): edits.append(Self.stamped(edit, run: settings.runID))
                case .finishDHCPWrite(let endpoint): unfinished.append(endpoint)
                default: throw CommandFailure.notFor(change, address)
                }
            }
            if !edits.isEmpty { _ = try await driver.apply(edits, basedOn: token) }
            // After the edits: an endpoint they wrote is lasting already, finishing it again is harmless.
            if !unfinished.isEmpty { try await driver.finishWrites(on: unfinished) }
        }

        /// The edit as this run writes it: the new reservation's mark names the run.
        static func stamped(_ edit: ReservationChange, run: String?) -> ReservationChange {
            switch edit {
            case .add(var r):
                r.owner?.run = run
                return .add(r)
            case .change(let from, var to):
                to.owner?.run = run
                return .change(from: from, to: to)
            case .remove: return edit
            }
        }
    }
}
