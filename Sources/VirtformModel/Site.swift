/// Everything the manifests declare: the desired state of one site.
public struct Site: Sendable {
    /// The name a site goes by when no `Site` document names it.
    public static let defaultName = "default"

    /// `Site` documents; one is allowed (the validator reports the rest).
    public var declarations: [SiteDeclaration] = []
    /// The site's name: every ownership mark carries it, and a site changes only what carries
    /// its own name. From the `Site` document, or `default` without one.
    public var name: String {
        get { declarations.first?.meta.name ?? Site.defaultName }
        set {
            if declarations.isEmpty {
                declarations = [SiteDeclaration(meta: ObjectMeta(name: newValue), provenance: .synthetic("site"))]
            } else {
                declarations[0].meta.name = newValue
            }
        }
    }
    public var hosts: [Host] = []
    public var clusters: [Cluster] = []
    public var pools: [StoragePool] = []
    public var projects: [StorageProject] = []
    public var images: [Image] = []
    public var networks: [Network] = []
    public var dhcpServers: [DHCPServer] = []
    public var virtualMachines: [VirtualMachine] = []
    public var bindings: [NetworkBinding] = []

    /// Names of objects that were declared but could not be built because their document had
    /// errors. References to them are not reported again as "unknown".
    public var incomplete: Set<String> = []

    public init() {}

    public var objectCount: Int {
        declarations.count + hosts.count + clusters.count + pools.count + projects.count + images.count + networks.count
            + dhcpServers.count + virtualMachines.count + bindings.count
    }

    /// Adds an object of any kind.
    public mutating func add(_ object: any SiteObject) {
        switch object {
        case let o as SiteDeclaration: declarations.append(o)
        case let o as Host: hosts.append(o)
        case let o as Cluster: clusters.append(o)
        case let o as StoragePool: pools.append(o)
        case let o as StorageProject: projects.append(o)
        case let o as Image: images.append(o)
        case let o as Network: networks.append(o)
        case let o as DHCPServer: dhcpServers.append(o)
        case let o as VirtualMachine: virtualMachines.append(o)
        case let o as NetworkBinding: bindings.append(o)
        default: preconditionFailure("unknown object type \(type(of: object))")
        }
    }

    /// Forgets where each object was declared, down to its document: a site that has been
    /// validated needs the parsed documents no more (a plan names files, not fields), and for a
    /// large site they are most of its memory.
    public mutating func dropSourceMaps() {
        for i in declarations.indices { declarations[i].provenance.fields = nil }
        for i in hosts.indices { hosts[i].provenance.fields = nil }
        for i in clusters.indices { clusters[i].provenance.fields = nil }
        for i in pools.indices { pools[i].provenance.fields = nil }
        for i in projects.indices { projects[i].provenance.fields = nil }
        for i in images.indices { images[i].provenance.fields = nil }
        for i in networks.indices { networks[i].provenance.fields = nil }
        for i in dhcpServers.indices { dhcpServers[i].provenance.fields = nil }
        for i in virtualMachines.indices { virtualMachines[i].provenance.fields = nil }
        for i in bindings.indices { bindings[i].provenance.fields = nil }
    }

    /// Merges another partial site (e.g. one file's objects) into this one, keeping order.
    /// Makes room for `count` more of each kind's objects, so that merging many files does not
    /// grow the arrays by doubling (briefly twice the memory of a large site).
    public mutating func reserveCapacity(for others: [Site]) {
        declarations.reserveCapacity(declarations.count + others.reduce(0) { $0 + $1.declarations.count })
        hosts.reserveCapacity(hosts.count + others.reduce(0) { $0 + $1.hosts.count })
        clusters.reserveCapacity(clusters.count + others.reduce(0) { $0 + $1.clusters.count })
        pools.reserveCapacity(pools.count + others.reduce(0) { $0 + $1.pools.count })
        projects.reserveCapacity(projects.count + others.reduce(0) { $0 + $1.projects.count })
        images.reserveCapacity(images.count + others.reduce(0) { $0 + $1.images.count })
        networks.reserveCapacity(networks.count + others.reduce(0) { $0 + $1.networks.count })
        dhcpServers.reserveCapacity(dhcpServers.count + others.reduce(0) { $0 + $1.dhcpServers.count })
        virtualMachines.reserveCapacity(virtualMachines.count + others.reduce(0) { $0 + $1.virtualMachines.count })
        bindings.reserveCapacity(bindings.count + others.reduce(0) { $0 + $1.bindings.count })
    }

    public mutating func merge(_ other: Site) {
        declarations += other.declarations
        hosts += other.hosts
        clusters += other.clusters
        pools += other.pools
        projects += other.projects
        images += other.images
        networks += other.networks
        dhcpServers += other.dhcpServers
        virtualMachines += other.virtualMachines
        bindings += other.bindings
        incomplete.formUnion(other.incomplete)
    }

    /// The key under which `incomplete` records a declared object: `Kind/uniqueName`.
    public static func incompleteKey(_ kind: Kind, _ uniqueName: String) -> String { "\(kind.rawValue)/\(uniqueName)" }
}

/// Name → object indexes over a site (the first declaration wins; later ones are duplicates).
public struct SiteIndex: Sendable {
    public let hosts: [String: Host]
    public let clusters: [String: Cluster]
    public let pools: [String: StoragePool]
    public let projects: [String: StorageProject]
    public let images: [String: Image]
    public let networks: [String: Network]
    public let dhcpServers: [String: DHCPServer]

    public init(_ site: Site) {
        hosts = Self.index(site.hosts)
        clusters = Self.index(site.clusters)
        pools = Self.index(site.pools)
        projects = Self.index(site.projects)
        images = Self.index(site.images)
        networks = Self.index(site.networks)
        dhcpServers = Self.index(site.dhcpServers)
    }

    private static func index<T: SiteObject>(_ objects: [T]) -> [String: T] {
        Dictionary(objects.map { ($0.uniqueName, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// The hosts a cluster contains, in a stable order.
    public func members(of cluster: Cluster) -> [Host] {
        switch cluster.members {
        case .hosts(let names):
            return names.compactMap { hosts[$0] }
        case .selector(let selector):
            return hosts.values.filter { $0.meta.labels.matches(selector) }.sorted { $0.name < $1.name }
        }
    }

    /// Every host a VM may be placed on under its placement rule.
    public func candidateHosts(for vm: VirtualMachine) -> [Host] {
        switch vm.placement {
        case .host(let name):
            return hosts[name].map { [$0] } ?? []
        case .cluster(let name, let selector):
            guard let cluster = clusters[name] else { return [] }
            return members(of: cluster).filter { $0.meta.labels.matches(selector) }
        }
    }
}

extension Dictionary where Key == String, Value == String {
    /// Whether every key/value of `selector` is present here.
    public func matches(_ selector: [String: String]) -> Bool {
        selector.allSatisfy { self[$0.key] == $0.value }
    }
}

extension Site {
    /// Each VM's position in `virtualMachines` (the first of duplicates): a lookup that copies
    /// no VM. Not part of `SiteIndex`: with ten thousand VMs it costs more than the rest of the
    /// index, and only binding checks need it.
    public var virtualMachineIndices: [VMID: Int] {
        var indices: [VMID: Int] = [:]
        indices.reserveCapacity(virtualMachines.count)
        for (i, vm) in virtualMachines.enumerated() where indices[vm.id] == nil { indices[vm.id] = i }
        return indices
    }
}
