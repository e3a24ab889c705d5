// The objects of the manifest language. Each is a plain value: the manifests module builds them
// from YAML, the planner compares them with what it observes. Field docs say what an operator writes.

/// The site itself: its name is carried in every ownership mark, and a site changes only what
/// carries its name. One per site; without one the site is called `default`.
public struct SiteDeclaration: SiteObject {
    public static let kind = Kind.site
    public var meta: ObjectMeta
    /// Free text for people: what the site is, who runs it.
    public var description: String?
    /// Where the site's apply lock and run history live: `file:DIR` (relative to the Site
    /// document's directory) or `postgres://user@host:port/database`; nil for the default.
    public var backend: String?
    /// What `virtform reconcile` may do by itself for the site's objects (a VM's own
    /// `spec.reconcile` overrides it); nil: `observe`.
    public var reconcile: ReconcileMode?
    public var provenance: Provenance

    public init(meta: ObjectMeta, description: String? = nil, backend: String? = nil, reconcile: ReconcileMode? = nil,
                provenance: Provenance) {
        self.meta = meta
        self.description = description
        self.backend = backend
        self.reconcile = reconcile
        self.provenance = provenance
    }
}

/// What the long-running `virtform reconcile` may apply without a human, per site and per VM.
public enum ReconcileMode: String, Sendable, CaseIterable, Codable, Comparable {
    /// Report only: every difference is logged and counted, nothing is changed.
    case observe
    /// Undo what changed outside virtform (a guest stopped or edited by hand, a LUN or
    /// reservation removed) and restart HA guests of a fenced host; manifest changes not applied
    /// yet wait for `apply`.
    case repair
    /// Everything `apply` would carry out with the loop's allowances, manifest changes included.
    case full

    private var rank: Int {
        switch self {
        case .observe: 0
        case .repair: 1
        case .full: 2
        }
    }

    public static func < (a: ReconcileMode, b: ReconcileMode) -> Bool { a.rank < b.rank }
}

/// One hypervisor.
public struct Host: SiteObject {
    public static let kind = Kind.host
    public var meta: ObjectMeta
    /// libvirt connection URI, e.g. `qemu+ssh://root@vm-host1/system`.
    public var uri: String
    public var capacity: Capacity
    /// Bridge names the host offers to guests (`fe0`, `be0`).
    public var bridges: [String]
    /// Address other hosts use to send live-migration traffic here.
    public var migrationAddress: String?
    /// A host in maintenance takes no new guests and is drained by rebalancing.
    public var maintenance: Bool
    /// libvirt's domain type on this host: `kvm` (default), `qemu` where there is no KVM, `xen`,
    /// or `test` for libvirt's test driver.
    public var domainType: DomainType
    /// How guests' interfaces reach their network: `bridge` (default, the network's bridge on
    /// the host) or `user-mode` (QEMU's user-mode networking, for unprivileged hypervisors such
    /// as the local lab's session daemons, which cannot attach to a bridge). The bridge checks
    /// still use `bridges`.
    public var guestNetworking: GuestNetworking
    /// How to power the host off for certain when it cannot be read (IPMI in a data centre,
    /// `virtform lab fence HOST` in the lab): a fixed argument vector, run on this machine.
    /// HA restarts the host's guests elsewhere only after it succeeded (or the operator says
    /// the host is down).
    public var fenceCommand: [String]?
    /// For an SSH URI (`qemu+libssh://…`, `qemu+ssh://…`): the key to log in with and the
    /// known_hosts file the host's key must be in (`connectionURI` passes them to libvirt).
    public var ssh: SSHClientFiles?
    /// The iSCSI initiator name this host's guests log in as (a pool with `initiators` must
    /// list it); nil: the first name the pool admits, or QEMU's own.
    public var initiatorName: String?
    public var provenance: Provenance

    public enum DomainType: String, Sendable, CaseIterable { case kvm, qemu, xen, test }
    public enum GuestNetworking: String, Sendable, CaseIterable {
        case bridge
        case userMode = "user-mode"
    }

    public init(meta: ObjectMeta, uri: String, capacity: Capacity, bridges: [String], migrationAddress: String? = nil,
                maintenance: Bool = false, domainType: DomainType = .kvm, guestNetworking: GuestNetworking = .bridge,
                fenceCommand: [String]? = nil, ssh: SSHClientFiles? = nil, initiatorName: String? = nil, provenance: Provenance) {
        self.fenceCommand = fenceCommand
        self.ssh = ssh
        self.initiatorName = initiatorName
        self.domainType = domainType
        self.guestNetworking = guestNetworking
        self.meta = meta
        self.uri = uri
        self.capacity = capacity
        self.bridges = bridges
        self.migrationAddress = migrationAddress
        self.maintenance = maintenance
        self.provenance = provenance
    }
}

public struct Capacity: Hashable, Sendable {
    public var memory: ByteSize
    public var vcpus: Int
    public var maxGuests: Int?

    public init(memory: ByteSize, vcpus: Int, maxGuests: Int? = nil) {
        self.memory = memory
        self.vcpus = vcpus
        self.maxGuests = maxGuests
    }
}

/// A set of hosts that share storage and network names, with a placement policy.
public struct Cluster: SiteObject {
    public static let kind = Kind.cluster
    public var meta: ObjectMeta
    public var members: Members
    public var placement: PlacementPolicy
    public var rebalance: Rebalance
    public var highAvailability: HighAvailability
    public var migration: MigrationPolicy
    /// Affinity and anti-affinity between the cluster's VMs, by their labels.
    public var rules: [PlacementRule]
    public var provenance: Provenance

    public enum Members: Hashable, Sendable {
        case hosts([String])
        case selector([String: String])
    }

    public init(meta: ObjectMeta, members: Members, placement: PlacementPolicy, rebalance: Rebalance = .init(),
                highAvailability: HighAvailability = .init(), migration: MigrationPolicy = .init(), rules: [PlacementRule] = [],
                provenance: Provenance) {
        self.rules = rules
        self.meta = meta
        self.members = members
        self.placement = placement
        self.rebalance = rebalance
        self.highAvailability = highAvailability
        self.migration = migration
        self.provenance = provenance
    }
}

/// A rule between the VMs a label selector matches: kept together on one host (affinity) or
/// never two on one host (anti-affinity, "the two web VMs never on one host").
public struct PlacementRule: Hashable, Sendable {
    public enum Kind: String, Hashable, Sendable { case affinity, antiAffinity }
    public var name: String
    public var kind: Kind
    public var selector: [String: String]

    public init(name: String, kind: Kind, selector: [String: String]) {
        self.name = name
        self.kind = kind
        self.selector = selector
    }

    /// Whether the rule is about a VM with these labels.
    public func applies(to labels: [String: String]) -> Bool { !selector.isEmpty && labels.matches(selector) }
}

/// How live migrations are bounded: how many run at once, and how long one may take.
public struct MigrationPolicy: Hashable, Sendable, Codable {
    /// Outbound migrations at once from one host.
    public var maxPerHost: Int
    /// Migrations at once in the cluster.
    public var maxInCluster: Int
    /// A migration is aborted after this many seconds per GiB of guest memory (at least one GiB's worth).
    public var secondsPerGiB: Int
    /// A migration is aborted when the data left to send has not shrunk for this many seconds.
    public var noProgressSeconds: Int
    /// A cap on each migration's bandwidth, in MiB/s (nil: as fast as the network goes).
    public var bandwidthMiBps: Int?

    public init(maxPerHost: Int = 2, maxInCluster: Int = 5, secondsPerGiB: Int = 150, noProgressSeconds: Int = 150, bandwidthMiBps: Int? = nil) {
        self.maxPerHost = maxPerHost
        self.maxInCluster = maxInCluster
        self.secondsPerGiB = secondsPerGiB
        self.noProgressSeconds = noProgressSeconds
        self.bandwidthMiBps = bandwidthMiBps
    }

    /// How long a migration of a guest with `memoryKiB` may take in all.
    public func completionTimeout(memoryKiB: UInt64) -> Int {
        let gibibytes = max(1.0, Double(memoryKiB) / Double(1 << 20))
        return Int((gibibytes * Double(secondsPerGiB)).rounded(.up))
    }
}

public enum PlacementPolicy: Hashable, Sendable {
    /// Fill a host up to `maxGuestsPerHost` before using the next (the seed's "4-6 guests per host").
    case pack(maxGuestsPerHost: Int)
    /// Put each guest on the least-loaded eligible host.
    case spread
}

/// DRS-like rebalancing: when the most and least loaded hosts of a cluster differ by more than
/// a threshold of memory use, a bounded batch of live migrations narrows the gap.
public struct Rebalance: Hashable, Sendable {
    /// `manual`: the migrations are planned but carried out only with `--allow-rebalance`;
    /// `automatic`: carried out by every apply.
    public enum Mode: String, Sendable, CaseIterable { case off, manual, automatic }
    public var mode: Mode
    /// Rebalance when hosts' memory use differs by more than this many percentage points.
    public var thresholdPercent: Int
    public var maxMigrationsPerRun: Int
    /// A guest virtform moved is not moved again by rebalancing for this long.
    public var cooldownSeconds: Int

    public init(mode: Mode = .off, thresholdPercent: Int = 20, maxMigrationsPerRun: Int = 1, cooldownSeconds: Int = 3600) {
        self.mode = mode
        self.thresholdPercent = thresholdPercent
        self.maxMigrationsPerRun = maxMigrationsPerRun
        self.cooldownSeconds = cooldownSeconds
    }
}

/// HA restart of guests from a failed host, carried out by the cluster issue; validated now.
public struct HighAvailability: Hashable, Sendable {
    public var enabled: Bool
    /// How many host failures the cluster keeps room for.
    public var hostFailuresToTolerate: Int

    public init(enabled: Bool = false, hostFailuresToTolerate: Int = 1) {
        self.enabled = enabled
        self.hostFailuresToTolerate = hostFailuresToTolerate
    }
}

/// A storage system holding projects and LUNs.
public struct StoragePool: SiteObject {
    public static let kind = Kind.storagePool
    public var meta: ObjectMeta
    public var driver: Driver
    /// Mount point (btrfs) or folder (dir).
    public var path: String?
    /// Parent dataset (zfs).
    public var dataset: String?
    /// The storage machine, when it is not this one: its pool and its export are driven there
    /// through `virtform agent` over ssh. Local when absent.
    public var ssh: SSHAccess?
    public var export: ISCSIExport?
    public var provenance: Provenance

    public enum Driver: String, Sendable, CaseIterable { case btrfs, dir, zfs }

    /// `user@host` of `ssh`.
    public var sshTarget: String? { ssh?.target }

    public init(meta: ObjectMeta, driver: Driver, path: String? = nil, dataset: String? = nil, sshTarget: String? = nil,
                ssh: SSHAccess? = nil, export: ISCSIExport? = nil, provenance: Provenance) {
        self.meta = meta
        self.driver = driver
        self.path = path
        self.dataset = dataset
        self.ssh = ssh ?? sshTarget.map { SSHAccess(target: $0) }
        self.export = export
        self.provenance = provenance
    }
}

/// How a pool's LUNs are exported over iSCSI.
public struct ISCSIExport: Hashable, Sendable {
    public enum Driver: String, Sendable, CaseIterable { case tgt, lio }
    public var driver: Driver
    public var portal: HostPort
    /// Target names are `<iqnPrefix>:<project>.<lun>`.
    public var iqnPrefix: String
    /// Initiator IQNs allowed to log in; empty means all.
    public var initiators: [String]
    /// tgt: which local tgtd instance manages the targets (`tgtadm -C N`); 0 by default.
    public var controlPort: Int

    /// CHAP: the account hypervisors log in with (and the target's, for mutual CHAP); nil for
    /// none.
    public var chap: CHAPSettings?
    /// Each target admits only the initiator names (`Host.initiatorName`) of the host that runs
    /// its guest — and, while it moves, of its destination — instead of `initiators`.
    public var admitHosts = false

    public init(driver: Driver, portal: HostPort, iqnPrefix: String, initiators: [String] = [], controlPort: Int = 0,
                chap: CHAPSettings? = nil) {
        self.controlPort = controlPort
        self.driver = driver
        self.portal = portal
        self.iqnPrefix = iqnPrefix
        self.initiators = initiators
        self.chap = chap
    }
}

/// A folder of LUNs on a pool: `masters`, `appl-1`.
public struct StorageProject: SiteObject {
    public static let kind = Kind.storageProject
    public var meta: ObjectMeta
    public var pool: String
    public var quota: ByteSize?
    public var provenance: Provenance

    public init(meta: ObjectMeta, pool: String, quota: ByteSize? = nil, provenance: Provenance) {
        self.meta = meta
        self.pool = pool
        self.quota = quota
        self.provenance = provenance
    }
}

/// A master image LUN and its named snapshots: `masters/osol-0811@version-01`.
public struct Image: SiteObject {
    public static let kind = Kind.image
    public var meta: ObjectMeta
    public var project: String
    /// An empty LUN of this size, or the size of `source` when absent.
    public var size: ByteSize?
    /// A raw image file imported as the LUN's content.
    public var source: String?
    public var snapshots: [String]
    public var provenance: Provenance

    public init(meta: ObjectMeta, project: String, size: ByteSize? = nil, source: String? = nil, snapshots: [String] = [],
                provenance: Provenance) {
        self.meta = meta
        self.project = project
        self.size = size
        self.source = source
        self.snapshots = snapshots
        self.provenance = provenance
    }

    public var uniqueName: String { "\(project)/\(meta.name)" }
}

/// A logical network: the bridge every host offers for it, its subnet and its DHCP server.
public struct Network: SiteObject {
    public static let kind = Kind.network
    public var meta: ObjectMeta
    public var bridge: String
    public var subnet: IPv4Subnet
    public var gateway: IPv4Address?
    public var dhcpServer: String?
    public var provenance: Provenance

    public init(meta: ObjectMeta, bridge: String, subnet: IPv4Subnet, gateway: IPv4Address? = nil, dhcpServer: String? = nil,
                provenance: Provenance) {
        self.meta = meta
        self.bridge = bridge
        self.subnet = subnet
        self.gateway = gateway
        self.dhcpServer = dhcpServer
        self.provenance = provenance
    }
}

/// One DHCP server, or an HA pair of them.
public struct DHCPServer: SiteObject {
    public static let kind = Kind.dhcpServer
    public var meta: ObjectMeta
    public var driver: Driver
    public var endpoints: [Endpoint]
    /// The machine holding dnsmasq's hosts file, when it is not this one (`virtform agent`
    /// over ssh edits the file and signals dnsmasq there). Not used by Kea (its control socket
    /// or agent URL is reached directly).
    public var ssh: SSHAccess?
    public var provenance: Provenance

    public enum Driver: String, Sendable, CaseIterable { case kea, dnsmasq }

    /// How to reach one server. Kea: `controlSocket` (unix) or `url` (control agent).
    /// dnsmasq: `hostsFile` and `pidFile`.
    public struct Endpoint: Hashable, Sendable {
        public var name: String
        public var controlSocket: String?
        public var url: String?
        public var hostsFile: String?
        public var pidFile: String?

        public init(name: String, controlSocket: String? = nil, url: String? = nil, hostsFile: String? = nil,
                    pidFile: String? = nil) {
            self.name = name
            self.controlSocket = controlSocket
            self.url = url
            self.hostsFile = hostsFile
            self.pidFile = pidFile
        }
    }

    public init(meta: ObjectMeta, driver: Driver, endpoints: [Endpoint], ssh: SSHAccess? = nil, provenance: Provenance) {
        self.meta = meta
        self.driver = driver
        self.endpoints = endpoints
        self.ssh = ssh
        self.provenance = provenance
    }
}

/// The identity of a guest: `appl-1/vm-1`, whose libvirt domain is named `appl-1:vm-1`.
public struct VMID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var project: String
    public var name: String

    public init(project: String, name: String) {
        self.project = project
        self.name = name
    }

    /// Accepts `appl-1/vm-1` and the domain form `appl-1:vm-1`.
    public init?(parsing text: some StringProtocol) {
        let parts = text.split(omittingEmptySubsequences: false) { $0 == "/" || $0 == ":" }
        guard parts.count == 2, Names.isName(parts[0]), Names.isName(parts[1]) else { return nil }
        project = String(parts[0])
        name = String(parts[1])
    }

    public var domainName: String { "\(project):\(name)" }
    public var description: String { "\(project)/\(name)" }
    public static func < (a: VMID, b: VMID) -> Bool { (a.project, a.name) < (b.project, b.name) }
}

/// `project/image@snapshot`.
public struct SnapshotReference: Hashable, Sendable, CustomStringConvertible {
    public var project: String
    public var image: String
    public var snapshot: String

    public init(project: String, image: String, snapshot: String) {
        self.project = project
        self.image = image
        self.snapshot = snapshot
    }

    public init?(parsing text: some StringProtocol) {
        let at = text.split(separator: "@", omittingEmptySubsequences: false)
        guard at.count == 2 else { return nil }
        let path = at[0].split(separator: "/", omittingEmptySubsequences: false)
        guard path.count == 2, Names.isName(path[0]), Names.isName(path[1]), Names.isName(at[1]) else { return nil }
        project = String(path[0])
        image = String(path[1])
        snapshot = String(at[1])
    }

    public var description: String { "\(project)/\(image)@\(snapshot)" }
}

/// A guest.
public struct VirtualMachine: SiteObject {
    public static let kind = Kind.virtualMachine
    public var meta: ObjectMeta
    public var project: String
    public var type: VirtualizationType
    public var memory: ByteSize
    public var vcpus: Int
    /// The most vCPUs the running guest can be given without a restart (vCPUs above `vcpus`
    /// are hot-plugged); `vcpus` when not declared.
    public var maxVCPUs: Int
    public var disk: Disk?
    public var interfaces: [Interface]
    public var placement: Placement
    public var power: PowerState
    /// When true, virtform never deletes the guest, even with `--allow-destroy`.
    public var deletionProtection: Bool
    /// When true, apply restarts the running guest by itself when a change cannot be made live
    /// (as `--allow-restart` does for every VM).
    public var allowRestart: Bool
    /// `restart`: when its host cannot be read and has been fenced (or is confirmed down), the
    /// guest is started on another host of its cluster (whose HA is enabled).
    public var ha: HAPolicy
    /// What `virtform reconcile` may do for this VM by itself; nil: the site's mode.
    public var reconcile: ReconcileMode?
    public var provenance: Provenance

    public enum HAPolicy: String, Sendable, CaseIterable { case none, restart }
    public enum VirtualizationType: String, Sendable, CaseIterable { case hvm, pv }
    public enum PowerState: String, Sendable, CaseIterable, Codable { case running, stopped }

    /// The boot disk: a clone of a master image snapshot, optionally grown.
    public struct Disk: Hashable, Sendable {
        public var source: SnapshotReference
        public var size: ByteSize?

        public init(source: SnapshotReference, size: ByteSize? = nil) {
            self.source = source
            self.size = size
        }
    }

    public struct Interface: Hashable, Sendable {
        /// Unique inside the VM; defaults to the network's name.
        public var name: String
        public var network: String
        public var mac: MACAddress?

        public init(name: String, network: String, mac: MACAddress? = nil) {
            self.name = name
            self.network = network
            self.mac = mac
        }
    }

    public enum Placement: Hashable, Sendable {
        case host(String)
        /// Any host of the cluster whose labels include all of `hostSelector` (e.g. `segment: odd`).
        case cluster(String, hostSelector: [String: String])
    }

    public init(meta: ObjectMeta, project: String, type: VirtualizationType = .hvm, memory: ByteSize, vcpus: Int, maxVCPUs: Int? = nil,
                disk: Disk? = nil, interfaces: [Interface] = [], placement: Placement, power: PowerState = .running,
                deletionProtection: Bool = false, allowRestart: Bool = false, ha: HAPolicy = .none, reconcile: ReconcileMode? = nil,
                provenance: Provenance) {
        self.allowRestart = allowRestart
        self.ha = ha
        self.reconcile = reconcile
        self.meta = meta
        self.project = project
        self.type = type
        self.memory = memory
        self.vcpus = vcpus
        self.maxVCPUs = maxVCPUs ?? vcpus
        self.disk = disk
        self.interfaces = interfaces
        self.placement = placement
        self.power = power
        self.deletionProtection = deletionProtection
        self.provenance = provenance
    }

    public var id: VMID { VMID(project: project, name: meta.name) }
    public var uniqueName: String { id.description }

    /// The interface's MAC: the fixed one, or one derived from project, VM and interface name.
    public func mac(of interface: Interface) -> MACAddress {
        interface.mac ?? .derived(for: id, interface: interface.name)
    }
}

/// A VM interface bound to an address and host name in DHCP: `domu-assign-ip appl-1:vm-1 fe0 vm-host1 192.168.76.71`.
public struct NetworkBinding: SiteObject {
    public static let kind = Kind.networkBinding
    public var meta: ObjectMeta
    public var vm: VMID
    /// The VM interface's name.
    public var interface: String
    public var address: IPv4Address
    public var hostname: String
    public var provenance: Provenance

    public init(meta: ObjectMeta, vm: VMID, interface: String, address: IPv4Address, hostname: String,
                provenance: Provenance) {
        self.meta = meta
        self.vm = vm
        self.interface = interface
        self.address = address
        self.hostname = hostname
        self.provenance = provenance
    }
}

/// Encoded as `project/name`.
extension VMID: TextCoded {
    public init?(text: String) { self.init(parsing: text) }
}
