import VirtformModel

/// Everything observed for one plan, handed to the planner as data: the hypervisors, every
/// storage pool (with its export server and what its portal serves) and every DHCP server. A
/// system that could not be read is `unreachable`, never empty.
public struct SiteObservation: Sendable {
    public enum Scope: Sendable {
        /// Hypervisors, storage and DHCP, with the rules across them.
        case everything
        /// Only the hypervisors: for benchmarks and tests of the hypervisor planner alone.
        case hypervisors
    }

    public var hosts: ObservedSite
    /// By pool name. A declared pool missing here counts as unreachable.
    public var pools: [String: PoolReading]
    /// By server name. A declared server missing here counts as unreachable.
    public var dhcpServers: [String: DHCPReading]
    public var scope: Scope

    public init(hosts: ObservedSite, pools: [String: PoolReading] = [:], dhcpServers: [String: DHCPReading] = [:],
                scope: Scope = .everything) {
        self.hosts = hosts
        self.pools = pools
        self.dhcpServers = dhcpServers
        self.scope = scope
    }
}

/// One pool as read.
public enum PoolReading: Sendable, Hashable {
    case read(PoolContents)
    case unreachable(reason: String)
}

public struct PoolContents: Sendable, Hashable {
    public var observation: PoolObservation
    /// Every target on the pool's export server (nil when the pool exports nothing).
    public var targets: [ObservedTarget]?
    /// For each of virtform's targets (by IQN): what the portal serves as LUN 1.
    public var served: [String: ServedLUN]
    /// What the pool's driver can do (after its probe).
    public var capabilities: StorageCapabilities

    public init(observation: PoolObservation, targets: [ObservedTarget]?, served: [String: ServedLUN] = [:],
                capabilities: StorageCapabilities = StorageCapabilities(cloneMethod: nil, canImport: true, reportsExclusiveBytes: false)) {
        self.capabilities = capabilities
        self.observation = observation
        self.targets = targets
        self.served = served
    }
}

/// One DHCP server as read (an HA pair whose one peer did not answer is `read`, with that
/// endpoint marked unreachable inside).
public enum DHCPReading: Sendable, Hashable {
    case read(DHCPObservation)
    case unreachable(reason: String)
}
