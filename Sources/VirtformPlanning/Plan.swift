import VirtformModel

/// What virtform would do, as data: rendered as text for people and as JSON for CI, saved to
/// a file by `plan --out` and carried out by `apply`, operation for operation. Format 2 is
/// described in `docs/plan-format.md`.
public struct Plan: Codable, Sendable {
    public static let formatVersion = 2

    public var formatVersion = Plan.formatVersion
    /// The site the plan is for; only objects marked with it are ever changed.
    public var site = Site.defaultName
    /// Counts of the changes by action, and of the blocked, erroneous and unknown.
    public var summary = Summary()
    public var changes: [Change] = []
    /// Problems that stop the plan from being applied (a VM that fits nowhere, a name taken).
    public var errors: [Problem] = []
    /// Systems that could not be read: nothing they hold is taken to be absent.
    public var unreachable: [UnreachableSystem] = []
    /// VMs whose state cannot be told because a system they depend on could not be read.
    public var unknown: [UnknownVM] = []
    /// Domains virtform does not own; listed only when asked for.
    public var unmanaged: [UnmanagedDomain] = []
    /// Objects another site owns, or that an earlier virtform marked without a site and this
    /// site does not declare: never changed or deleted.
    public var foreign: [ForeignObject] = []
    /// Things to know that do not stop the plan (no `Site` document, objects adopted).
    public var warnings: [String] = []
    /// Every change apply will not carry out, and why (the same as each change's `blocked`,
    /// gathered for readers of the JSON; filled by `summarize()`).
    public var blocked: [BlockedChange] = []
    /// Resource → fingerprint of what it was observed as (`absent` for what is to be created),
    /// for apply to check that a saved plan still matches what is there.
    public var fingerprints: [String: String] = [:]
    /// Host name → libvirt URI.
    public var hosts: [String: String] = [:]
    /// For a saved plan: every manifest file it was made from, with a digest of its bytes, and
    /// the paths given on the command line. `apply --plan` refuses when a file changed.
    public var sources: Sources?
    /// For a saved plan: what it was allowed to do when it was made (apply plans again with the same).
    public var allowed: Allowances?

    public struct Allowances: Codable, Sendable, Hashable {
        public var destroy: Bool
        public var recreateLostDisks: Bool
        public var restart: Bool
        /// Hosts the operator confirmed are down (`--confirm-host-down`): HA restarts their
        /// guests elsewhere without fencing them.
        public var confirmedDown: [String] = []
        /// Manual rebalancing carried out (`--allow-rebalance`).
        public var rebalance = false
        public init(destroy: Bool, recreateLostDisks: Bool, restart: Bool, confirmedDown: [String] = [], rebalance: Bool = false) {
            self.destroy = destroy
            self.recreateLostDisks = recreateLostDisks
            self.restart = restart
            self.confirmedDown = confirmedDown
            self.rebalance = rebalance
        }
    }

    public static let absent = "absent"

    public init() {}

    /// No changes at all (blocked ones included).
    public var isEmpty: Bool { changes.isEmpty }

    /// Nothing to do and nothing in doubt: no changes, errors, unknowns or unreadable systems.
    public var isClean: Bool { changes.isEmpty && errors.isEmpty && unknown.isEmpty && unreachable.isEmpty }

    public var runnable: [Change] { changes.filter { $0.blocked == nil } }

    public func count(_ action: Change.Action) -> Int { changes.filter { $0.action == action }.count }

    public func change(_ id: String) -> Change? { changes.first { $0.id == id } }

    public struct Summary: Codable, Sendable, Hashable {
        public var create = 0, update = 0, delete = 0, start = 0, stop = 0, restart = 0, migrate = 0, fence = 0
        public var blocked = 0, errors = 0, unknown = 0, unreachable = 0, foreign = 0
        /// Changes by cause: what changed outside virtform since it was applied (or cannot be
        /// told apart from that), and what the manifests ask for that is not applied yet.
        public var outside = 0, unapplied = 0
        public init() {}
    }

    /// Recounts `summary` from the sections.
    public mutating func summarize() {
        var summary = Summary()
        for change in changes {
            switch change.action {
            case .create: summary.create += 1
            case .update: summary.update += 1
            case .delete: summary.delete += 1
            case .start: summary.start += 1
            case .stop: summary.stop += 1
            case .restart: summary.restart += 1
            case .migrate: summary.migrate += 1
            case .fence: summary.fence += 1
            }
            if change.blocked != nil { summary.blocked += 1 }
            if change.cause == .unapplied { summary.unapplied += 1 } else { summary.outside += 1 }
        }
        summary.errors = errors.count
        summary.unknown = unknown.count
        summary.unreachable = unreachable.count
        summary.foreign = foreign.count
        self.summary = summary
        blocked = changes.compactMap { change in change.blocked.map { BlockedChange(id: change.id, reason: $0) } }
    }

    public struct Sources: Codable, Sendable, Hashable {
        /// The paths given to `plan`, made absolute.
        public var paths: [String]
        /// Every manifest file read, in load order.
        public var files: [SourceFile]
        public init(paths: [String], files: [SourceFile]) {
            self.paths = paths
            self.files = files
        }
    }

    public struct SourceFile: Codable, Sendable, Hashable {
        public var path: String
        /// `StableHash` of the bytes and their count: tells an edited file, not a forged one.
        public var digest: String
        public init(path: String, digest: String) {
            self.path = path
            self.digest = digest
        }
    }

    public struct Problem: Codable, Sendable, Hashable {
        public var resource: String
        public var message: String
        public init(resource: String, message: String) { self.resource = resource; self.message = message }
    }

    public struct UnreachableSystem: Codable, Sendable, Hashable {
        public var system: SystemAddress
        /// For an HA pair, the endpoint that could not be read.
        public var endpoint: String?
        public var reason: String
        public init(system: SystemAddress, endpoint: String? = nil, reason: String) {
            self.system = system
            self.endpoint = endpoint
            self.reason = reason
        }
    }

    public struct UnknownVM: Codable, Sendable, Hashable {
        public var resource: String
        public var reason: String
        public init(resource: String, reason: String) { self.resource = resource; self.reason = reason }
    }

    public struct BlockedChange: Codable, Sendable, Hashable {
        public var id: String
        public var reason: String
        public init(id: String, reason: String) {
            self.id = id
            self.reason = reason
        }
    }

    public struct ForeignObject: Codable, Sendable, Hashable {
        public var resource: String
        public var system: SystemAddress
        /// The site its mark names; nil for a mark written before sites existed.
        public var site: String?
        public init(resource: String, system: SystemAddress, site: String?) {
            self.resource = resource
            self.system = system
            self.site = site
        }

        /// `site lab-b`, or what a mark without a site means.
        public var owner: String { site.map { "site \($0)" } ?? "no site (marked by an earlier virtform, not declared here)" }
    }

    public struct UnmanagedDomain: Codable, Sendable, Hashable {
        public var host: String
        public var name: String
        public var state: String
        public init(host: String, name: String, state: String) { self.host = host; self.name = name; self.state = state }
    }
}

/// Where a change happens: one of the systems virtform drives.
public struct SystemAddress: Codable, Sendable, Hashable, Comparable, CustomStringConvertible {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// A hypervisor (`Host`).
        case host
        /// A storage pool: projects, images, snapshots, LUNs.
        case storagePool = "storage_pool"
        /// The iSCSI target server of a pool.
        case exportServer = "export_server"
        /// A `DHCPServer` (one endpoint or an HA pair).
        case dhcpServer = "dhcp_server"

        var rank: Int {
            switch self {
            case .host: 0
            case .dhcpServer: 1
            case .exportServer: 2
            case .storagePool: 3
            }
        }
    }

    public var kind: Kind
    /// The manifest name: the host, the pool (for its export server too), the DHCP server.
    public var name: String

    public init(_ kind: Kind, _ name: String) {
        self.kind = kind
        self.name = name
    }

    public static func host(_ name: String) -> SystemAddress { SystemAddress(.host, name) }
    public static func pool(_ name: String) -> SystemAddress { SystemAddress(.storagePool, name) }
    public static func exportServer(_ pool: String) -> SystemAddress { SystemAddress(.exportServer, pool) }
    public static func dhcpServer(_ name: String) -> SystemAddress { SystemAddress(.dhcpServer, name) }

    /// `appl-1` for a host; `StoragePool/lab-pool`, `ExportServer/lab-pool`, `DHCPServer/lab-dhcp`.
    public var description: String {
        switch kind {
        case .host: name
        case .storagePool: "StoragePool/\(name)"
        case .exportServer: "ExportServer/\(name)"
        case .dhcpServer: "DHCPServer/\(name)"
        }
    }

    /// Hosts first, then DHCP servers, export servers and pools (the order of their names as
    /// text), each by name; no strings are built, since a plan sorts tens of thousands of changes.
    public static func < (a: SystemAddress, b: SystemAddress) -> Bool {
        a.kind.rank != b.kind.rank ? a.kind.rank < b.kind.rank : a.name < b.name
    }
}

/// One change to one resource: what it is, where, the operation apply runs for it, and what it
/// waits for.
public struct Change: Codable, Sendable, Hashable {
    public enum Action: String, Codable, Sendable, CaseIterable {
        case create, update, start, stop, restart, delete, migrate
        /// A host that cannot be read is powered off with its fencing command (before its HA
        /// guests start elsewhere).
        case fence
    }

    /// Unique in the plan: `create StorageVolume/appl-1/vm-1` (`… on HOST` for a second copy).
    public var id: String
    public var action: Action
    /// `VirtualMachine/appl-1/vm-1`, `StorageVolume/appl-1/vm-1`, `NetworkBinding/vm-1-public`.
    public var resource: String
    public var system: SystemAddress
    /// Exactly what apply does for this change.
    public var operation: Operation
    /// The resource as observed (nil for a create) and as it will be (nil for a delete).
    public var before: ResourceState?
    public var after: ResourceState?
    /// For updates: each field that differs and how it takes effect.
    public var fields: [FieldChange] = []
    /// Ids of the changes that must succeed before this one runs.
    public var dependsOn: [String] = []
    /// Why, for people.
    public var reason: String
    /// Set when apply will not carry the change out as things stand, and why.
    public var blocked: String?
    /// For resources other than domains: what is created or removed, in one line.
    public var summary: String?
    /// For a migration: where the guest goes.
    public var destination: String?
    /// For a change to a VM's domain (and a disk recreated from its master): how it takes effect.
    public var changeClass: ChangeClass?
    /// Why it differs: changed outside virtform since it was applied, or the manifests changed
    /// and were not applied yet (decided from virtform's marks; see `ChangeCause`).
    public var cause: ChangeCause = .unknown

    public init(action: Action, resource: String, system: SystemAddress, operation: Operation, before: ResourceState? = nil,
                after: ResourceState? = nil, fields: [FieldChange] = [], reason: String, blocked: String? = nil,
                summary: String? = nil, destination: String? = nil) {
        self.id = "\(action.rawValue) \(resource)"
        self.action = action
        self.resource = resource
        self.system = system
        self.operation = operation
        self.before = before
        self.after = after
        self.fields = fields
        self.reason = reason
        self.blocked = blocked
        self.summary = summary
        self.destination = destination
    }

    /// The system as text, for grouping and messages (`appl-1`, `StoragePool/lab-pool`).
    public var host: String { system.description }

    /// The VM a `VirtualMachine/…` change is about.
    public var vm: VMID? { VMID(resource: resource) }

    /// For a domain create or update: the definition and the mark it writes.
    public var definition: (spec: DomainSpec, ownership: Ownership)? {
        switch operation {
        case .defineDomain(let spec, let ownership, _, _), .importDomain(let spec, let ownership): return (spec, ownership)
        default: return nil
        }
    }

    /// The VM the change serves: its domain, its LUN and target (named after it), its reservations.
    public var subjectVM: VMID? {
        if let vm { return vm }
        if let owner = (after?.reservation ?? before?.reservation)?.owner { return owner.vm }
        let parts = resource.split(separator: "/", maxSplits: 1)
        guard parts.count == 2, parts[0] == "StorageVolume" || parts[0] == "ISCSITarget" else { return nil }
        return VMID(parsing: parts[1])
    }

    /// Blocks the change (keeping the first reason given).
    public mutating func block(_ reason: String) {
        if blocked == nil { blocked = reason }
    }
}

extension VMID {
    /// The VM a `VirtualMachine/…` resource names.
    public init?(resource: String) {
        guard resource.hasPrefix("VirtualMachine/") else { return nil }
        self.init(parsing: resource.dropFirst("VirtualMachine/".count))
    }
}

/// A domain's move to another host, with everything apply needs to carry it out and bound it.
public struct MigrationRequest: Codable, Sendable, Hashable {
    public var destination: String
    /// The domain's UUID, kept on the destination.
    public var uuid: String
    /// The definition (and mark) virtform wants on the destination.
    public var spec: DomainSpec
    public var ownership: Ownership
    /// A running guest moves live; a stopped one is moved cold.
    public var live: Bool
    /// Where the source sends the guest's memory (`tcp://ADDRESS` from the destination's
    /// `migrationAddress`); nil lets the destination choose.
    public var uri: String?
    /// Aborted after this many seconds in all, or when the data left has not shrunk for
    /// `noProgressSeconds`.
    public var completionSeconds: Int
    public var noProgressSeconds: Int
    /// A cap on its bandwidth in MiB/s, from the cluster's policy.
    public var bandwidthMiBps: Int?
    /// The limits it counts against: outbound migrations of its source host, and of its cluster
    /// (`limitGroup`: the cluster's name, or the site's when the source is in none).
    public var maxPerHost: Int
    public var maxInGroup: Int
    public var limitGroup: String

    public init(destination: String, uuid: String, spec: DomainSpec, ownership: Ownership, live: Bool, uri: String?,
                completionSeconds: Int, noProgressSeconds: Int, bandwidthMiBps: Int? = nil, maxPerHost: Int, maxInGroup: Int, limitGroup: String) {
        self.destination = destination
        self.uuid = uuid
        self.spec = spec
        self.ownership = ownership
        self.live = live
        self.uri = uri
        self.completionSeconds = completionSeconds
        self.noProgressSeconds = noProgressSeconds
        self.bandwidthMiBps = bandwidthMiBps
        self.maxPerHost = maxPerHost
        self.maxInGroup = maxInGroup
        self.limitGroup = limitGroup
    }
}

/// How a change to a VM's domain takes effect, from the least disruptive.
public enum ChangeClass: String, Codable, Sendable, Hashable {
    /// Nothing that runs is interrupted: a stopped guest's definition, or changes made live.
    case inPlaceLive = "in_place_live"
    /// Written to the definition; the running guest keeps the old values until it restarts.
    case inPlaceRestart = "in_place_restart"
    /// A stopped guest defined on another host.
    case coldMove = "cold_move"
    /// A running guest moved to another host without stopping.
    case liveMigration = "live_migration"
    /// The guest is made again (its disk cloned anew from its master: what it wrote is lost).
    case replace

    /// How plans show it.
    public var label: String {
        switch self {
        case .inPlaceLive: "in place, live"
        case .inPlaceRestart: "in place, restart needed"
        case .coldMove: "cold move"
        case .liveMigration: "live migration"
        case .replace: "replace"
        }
    }
}

/// Why a change is in the plan, told from virtform's marks without any state file: each mark
/// records what virtform last wrote (a domain's digest, power and host, a reservation's digest),
/// so a difference between the mark and what is there was made by someone else.
public enum ChangeCause: String, Codable, Sendable, Hashable {
    /// The object changed outside virtform since virtform last applied it (a `virsh edit`, a
    /// guest shut down by hand, a LUN or reservation removed behind virtform's back).
    case outside
    /// The manifests changed (or virtform's own work is unfinished) and were not applied yet;
    /// the object is as virtform left it.
    case unapplied
    /// The marks cannot tell (one written by an earlier virtform, or an object removed without
    /// a trace); counted with `outside`, so a drift check does not miss it.
    case unknown
}

/// What apply runs for a change, on the change's system. Encoded in JSON as an object with one
/// key, the operation's name, holding its arguments. Indirect, like `ResourceState`: a copy
/// of a change copies a reference to its arguments.
public indirect enum Operation: Codable, Sendable, Hashable {
    // Hypervisors.
    /// Defines (or redefines in place) the domain with virtform's mark; on a running guest,
    /// `live` names what is also changed on the running guest.
    case defineDomain(spec: DomainSpec, ownership: Ownership, replacing: Bool, live: LiveUpdate?)
    /// `virtform import`: redefines in place, keeping its UUID, a domain that carries no mark,
    /// with the mark; refused if it carries one by then.
    case importDomain(spec: DomainSpec, ownership: Ownership)
    /// Defines the host's libvirt secret of a pool's CHAP account (private, by its usage) with
    /// the value `secret` holds when it runs; the plan holds only the reference.
    case defineSecret(usage: String, username: String, secret: SecretRef)
    /// Starts the domain; `mark`, when given, is written to its metadata afterwards (the power
    /// state virtform gave it, when no define in the plan writes the mark).
    case startDomain(name: String, mark: Ownership? = nil)
    /// A graceful shutdown, forced after apply's shutdown timeout; then `mark`, as for start.
    case stopDomain(name: String, mark: Ownership? = nil)
    /// Shut down, then start again, so that the definition takes effect.
    case restartDomain(name: String)
    case deleteDomain(name: String)
    /// Moves the domain to another host: live (`virDomainMigrate3`, persistent there with the
    /// definition virtform wants, undefined here) when it runs, cold (defined there with the same
    /// UUID, then undefined here) when it does not.
    case migrateDomain(name: String, request: MigrationRequest)
    /// Powers a host that cannot be read off for certain: runs its fencing command (a fixed
    /// argument vector) on the machine virtform runs on; exit status 0 means it is off.
    /// `uri` is probed again first: a host that answers now is not fenced (a passing blip).
    case fenceHost(command: [String], uri: String)

    // Storage pools.
    case createProject(name: String)
    case deleteProject(name: String)
    /// A blank image of `size` bytes, or one imported from `source` (grown to `size` if given).
    case createImage(project: String, name: String, size: UInt64?, source: String?)
    case createSnapshot(reference: SnapshotReference)
    case deleteSnapshot(reference: SnapshotReference)
    /// Makes a snapshot that is in place but writable read-only again (an apply was killed
    /// between putting it in place and sealing it).
    case sealSnapshot(reference: SnapshotReference)
    case cloneVolume(source: SnapshotReference, project: String, name: String, size: UInt64?)
    case growVolume(project: String, name: String, size: UInt64)
    /// An image or a LUN.
    case deleteVolume(project: String, name: String)
    /// Rewrites the marks of objects an earlier virtform made without a site (`marks`, as they
    /// are now) with this site's name: the site adopts them once.
    case adoptMarks(marks: [OwnershipMark])
    /// Writes `marks`, with this site's name, on objects that carry no mark at all (`virtform
    /// import`: a LUN virtform did not make becomes the imported VM's); refused if one has a
    /// mark by then.
    case markImported(marks: [OwnershipMark])
    /// Removes what an interrupted apply of this site left under temporary names (paths
    /// relative to the pool).
    case removeHalfMade(paths: [String])

    // Export servers.
    case exportVolume(request: ExportRequest)
    /// Removes the target and makes it again (the served LUN changed under it).
    case reexportVolume(iqn: String, request: ExportRequest)
    case unexportVolume(iqn: String)
    /// Makes the pool's CHAP accounts (with `rotate`, anew with the secrets as they are now:
    /// the target refused them) and binds them to each of `iqns`. The secrets are read from
    /// their `secretRef`s when it runs; a plan never holds them.
    case secureTargets(iqns: [String], rotate: Bool)
    /// A pool that admits hosts by name: the initiator names `add` admitted to the target, and
    /// `remove` no longer (a guest's new host before it moves there, its old one after).
    case admitInitiators(iqn: String, add: [String], remove: [String])

    // DHCP servers: written in one go per server.
    case reservation(change: ReservationChange)
    /// Finishes a write an interrupted apply left half-done on one endpoint: Kea saves its
    /// running configuration, dnsmasq re-reads its hosts file.
    case finishDHCPWrite(endpoint: String)

    /// Nothing apply can do; the change is always blocked and says why.
    case manual
}

/// What a define also changes on the running guest.
public struct LiveUpdate: Codable, Sendable, Hashable {
    /// The balloon's target, in KiB (at most the maximum memory).
    public var memoryKiB: UInt64?
    /// vCPUs online (more than now, at most the maximum).
    public var vcpus: Int?
    /// Interfaces the running guest is given.
    public var attach: [DomainSpec.InterfaceSpec]
    /// Interfaces the running guest is asked to give up.
    public var detach: [DomainSpec.InterfaceSpec]

    public init(memoryKiB: UInt64? = nil, vcpus: Int? = nil, attach: [DomainSpec.InterfaceSpec] = [], detach: [DomainSpec.InterfaceSpec] = []) {
        self.memoryKiB = memoryKiB
        self.vcpus = vcpus
        self.attach = attach
        self.detach = detach
    }

    public var isEmpty: Bool { memoryKiB == nil && vcpus == nil && attach.isEmpty && detach.isEmpty }

    enum CodingKeys: String, CodingKey {
        case memoryKiB = "memoryKib"
        case vcpus, attach, detach
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(memoryKiB: try container.decodeIfPresent(UInt64.self, forKey: .memoryKiB),
                  vcpus: try container.decodeIfPresent(Int.self, forKey: .vcpus),
                  attach: try container.decodeIfPresent([DomainSpec.InterfaceSpec].self, forKey: .attach) ?? [],
                  detach: try container.decodeIfPresent([DomainSpec.InterfaceSpec].self, forKey: .detach) ?? [])
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(memoryKiB, forKey: .memoryKiB)
        try container.encodeIfPresent(vcpus, forKey: .vcpus)
        if !attach.isEmpty { try container.encode(attach, forKey: .attach) }
        if !detach.isEmpty { try container.encode(detach, forKey: .detach) }
    }
}

/// A resource as observed or as it will be, typed by its kind: exactly one member is set.
///
/// Held boxed, one kind at a time: a plan of ten thousand VMs copies its changes several times
/// while it is made and sorted, and each copy is then a reference, not six states side by side.
public struct ResourceState: Codable, Sendable, Hashable {
    private indirect enum Value: Sendable, Hashable {
        case none
        case domain(DomainSpec)
        case project(ProjectState)
        case volume(VolumeState)
        case snapshot(SnapshotState)
        case target(TargetState)
        case reservation(Reservation)
    }

    private var value: Value

    public var domain: DomainSpec? {
        get { if case .domain(let state) = value { state } else { nil } }
        set { value = newValue.map(Value.domain) ?? .none }
    }
    public var project: ProjectState? {
        get { if case .project(let state) = value { state } else { nil } }
        set { value = newValue.map(Value.project) ?? .none }
    }
    public var volume: VolumeState? {
        get { if case .volume(let state) = value { state } else { nil } }
        set { value = newValue.map(Value.volume) ?? .none }
    }
    public var snapshot: SnapshotState? {
        get { if case .snapshot(let state) = value { state } else { nil } }
        set { value = newValue.map(Value.snapshot) ?? .none }
    }
    public var target: TargetState? {
        get { if case .target(let state) = value { state } else { nil } }
        set { value = newValue.map(Value.target) ?? .none }
    }
    public var reservation: Reservation? {
        get { if case .reservation(let state) = value { state } else { nil } }
        set { value = newValue.map(Value.reservation) ?? .none }
    }

    /// Exactly one of the states is given.
    public init(domain: DomainSpec? = nil, project: ProjectState? = nil, volume: VolumeState? = nil, snapshot: SnapshotState? = nil,
                target: TargetState? = nil, reservation: Reservation? = nil) {
        value = domain.map(Value.domain) ?? project.map(Value.project) ?? volume.map(Value.volume)
            ?? snapshot.map(Value.snapshot) ?? target.map(Value.target) ?? reservation.map(Value.reservation) ?? .none
    }

    enum CodingKeys: String, CodingKey {
        case domain, project, volume, snapshot, target, reservation
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(domain: try container.decodeIfPresent(DomainSpec.self, forKey: .domain),
                  project: try container.decodeIfPresent(ProjectState.self, forKey: .project),
                  volume: try container.decodeIfPresent(VolumeState.self, forKey: .volume),
                  snapshot: try container.decodeIfPresent(SnapshotState.self, forKey: .snapshot),
                  target: try container.decodeIfPresent(TargetState.self, forKey: .target),
                  reservation: try container.decodeIfPresent(Reservation.self, forKey: .reservation))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch value {
        case .none: break
        case .domain(let state): try container.encode(state, forKey: .domain)
        case .project(let state): try container.encode(state, forKey: .project)
        case .volume(let state): try container.encode(state, forKey: .volume)
        case .snapshot(let state): try container.encode(state, forKey: .snapshot)
        case .target(let state): try container.encode(state, forKey: .target)
        case .reservation(let state): try container.encode(state, forKey: .reservation)
        }
    }

    public static func domain(_ spec: DomainSpec) -> ResourceState { ResourceState(domain: spec) }

    public struct ProjectState: Codable, Sendable, Hashable {
        public var name: String
        public init(name: String) { self.name = name }
    }

    /// An image or a LUN.
    public struct VolumeState: Codable, Sendable, Hashable {
        public var project: String
        public var name: String
        /// Bytes; nil for an image whose size is its source's.
        public var size: UInt64?
        /// For a LUN: the snapshot it is cloned from.
        public var origin: SnapshotReference?
        /// For an imported image: the file it is read from.
        public var source: String?
        public init(project: String, name: String, size: UInt64?, origin: SnapshotReference? = nil, source: String? = nil) {
            self.project = project
            self.name = name
            self.size = size
            self.origin = origin
            self.source = source
        }
    }

    public struct SnapshotState: Codable, Sendable, Hashable {
        public var reference: SnapshotReference
        public var size: UInt64?
        public init(reference: SnapshotReference, size: UInt64?) {
            self.reference = reference
            self.size = size
        }
    }

    public struct TargetState: Codable, Sendable, Hashable {
        public var iqn: String
        /// tgt's target id, when observed.
        public var tid: Int?
        /// What LUN 1 serves.
        public var backingPath: String?
        public init(iqn: String, tid: Int? = nil, backingPath: String?) {
            self.iqn = iqn
            self.tid = tid
            self.backingPath = backingPath
        }
    }
}

public struct FieldChange: Codable, Sendable, Hashable {
    /// How a field's change takes effect.
    public enum Effect: String, Codable, Sendable {
        /// Changed on the running guest (and in its definition) by this apply.
        case live
        /// Changed in the definition; the running guest keeps the old value until it restarts.
        case restart
        /// Not a running guest (or not a domain): takes effect when applied.
        case applied
    }

    public var field: String
    public var before: String
    public var after: String
    public var effect: Effect

    public init(field: String, before: String, after: String, effect: Effect) {
        self.field = field
        self.before = before
        self.after = after
        self.effect = effect
    }

    /// Shown after the values: `(live)`, `(needs restart)`; nothing for a plain change.
    public var label: String? {
        switch effect {
        case .live: "live"
        case .restart: "needs restart"
        case .applied: nil
        }
    }
}
