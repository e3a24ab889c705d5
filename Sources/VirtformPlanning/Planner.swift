import VirtformModel

/// Compares the desired site with what was observed and produces a plan. Pure: it is given
/// everything it needs, so it is tested without any system.
public struct Planner {
    public struct Options: Sendable {
        /// Carry out deletions of managed VMs that left the manifests.
        public var allowDestroy = false
        public var showUnmanaged = false

        public init(allowDestroy: Bool = false, showUnmanaged: Bool = false) {
            self.allowDestroy = allowDestroy
            self.showUnmanaged = showUnmanaged
        }
    }

    let site: Site
    let index: SiteIndex
    let observed: ObservedSite
    let options: Options

    public init(site: Site, observed: ObservedSite, options: Options = Options()) {
        self.site = site
        self.index = SiteIndex(site)
        self.observed = observed
        self.options = options
    }

    public func plan() -> Plan {
        var plan = Plan()
        plan.hosts = Dictionary(uniqueKeysWithValues: index.hosts.map { ($0.key, $0.value.uri) })
        plan.unreachableHosts = observed.unreachableHosts.map { Plan.UnreachableHost(host: $0.host, reason: $0.reason) }
        let anyUnreachable = !plan.unreachableHosts.isEmpty

        // Owned domains by the VM they belong to (further copies aside: a VM found on two hosts
        // is a problem to report, not to fix). Matched entries are taken out as the VMs are
        // walked; what is left belongs to VMs that left the manifests.
        var owned: [VMID: ObservedDomain] = [:]
        var copies: [VMID: [ObservedDomain]] = [:]
        var unmanagedByName: [String: ObservedDomain] = [:]
        for hostName in observed.hosts.keys.sorted() {
            guard case .reachable(let domains) = observed.hosts[hostName] else { continue }
            for domain in domains {
                if let owner = domain.ownership {
                    if owned[owner.vm] == nil { owned[owner.vm] = domain } else { copies[owner.vm, default: []].append(domain) }
                } else {
                    unmanagedByName[domain.name] = domain
                    if options.showUnmanaged {
                        plan.unmanaged.append(Plan.UnmanagedDomain(host: domain.host, name: domain.name, state: domain.state.rawValue))
                    }
                }
            }
        }
        if options.showUnmanaged { plan.unmanaged.sort { ($0.host, $0.name) < ($1.host, $1.name) } }

        // What each host runs, counted only when a VM has to be placed (a plan without creates or
        // migrations never needs it).
        var countedLoad: HostLoad?
        func withLoad<T>(_ body: (inout HostLoad) -> T) -> T {
            if countedLoad == nil { countedLoad = HostLoad(observed: observed, index: index) }
            return body(&countedLoad!)
        }
        // Thousands of VMs share a handful of placements: work out each one's hosts once.
        var placements: [VirtualMachine.Placement: (hosts: [Host], names: Set<String>)] = [:]
        // In VM order, without copying ten thousand VMs into a sorted array first.
        let order = site.virtualMachines.indices.sorted { site.virtualMachines[$0].id < site.virtualMachines[$1].id }
        for position in order {
            let vm = site.virtualMachines[position]
            var resource: String { "VirtualMachine/\(vm.id)" }
            let placement: (hosts: [Host], names: Set<String>)
            if let known = placements[vm.placement] {
                placement = known
            } else {
                let hosts = index.candidateHosts(for: vm)
                placement = (hosts, Set(hosts.map(\.name)))
                placements[vm.placement] = placement
            }
            let (candidates, candidateNames) = placement
            let first = owned.removeValue(forKey: vm.id)
            let extra = copies.removeValue(forKey: vm.id) ?? []

            if let first, !extra.isEmpty {
                plan.errors.append(.init(resource: resource,
                    message: "defined on several hosts (\(([first] + extra).map(\.host).sorted().joined(separator: ", "))); undefine the stale copy, then plan again"))
                continue
            }
            if let domain = first {
                guard let host = index.hosts[domain.host] else { continue }
                if !candidateNames.contains(domain.host) {
                    let destination = withLoad { $0.choose(for: vm, among: candidates.filter { !$0.maintenance && isReachable($0.name) }) }
                    plan.observed[resource] = domain.fingerprint
                    plan.changes.append(Change(
                        action: .migrate, resource: resource, host: domain.host, destination: destination?.name,
                        before: domain.spec, after: destination.map { DomainSpec.desired(for: vm, on: $0, index: index) },
                        reason: "its placement no longer allows host \(domain.host)",
                        blocked: "live migration is carried out by the cluster feature, which has not landed yet"))
                    continue
                }
                let desired = DomainSpec.desired(for: vm, on: host, index: index)
                let fields = domain.spec.changes(to: desired)
                let protectionChanged = domain.ownership?.deletionProtection != vm.deletionProtection
                if !fields.isEmpty || protectionChanged || !domain.persistent {
                    plan.changes.append(Change(action: .update, resource: resource, host: domain.host, before: domain.spec,
                                               after: desired, ownership: ownership(vm, desired), fields: fields,
                                               reason: fields.isEmpty ? "refresh virtform's mark on the domain" : "differs from the manifest"))
                }
                let running = domain.state == .running || domain.state == .paused
                defer {
                    // Saved plans check what their changes were made against; a resource
                    // without changes that moves on shows up as a new change instead.
                    if plan.changes.last?.resource == resource { plan.observed[resource] = domain.fingerprint }
                }
                if vm.power == .running && !running {
                    plan.changes.append(Change(action: .start, resource: resource, host: domain.host, reason: "power: running, but it is \(domain.state.rawValue)"))
                } else if vm.power == .stopped && running {
                    plan.changes.append(Change(action: .stop, resource: resource, host: domain.host,
                                               reason: "power: stopped; shut down gracefully, forced after the timeout"))
                }
                continue
            }

            // Not found. If a host that could hold it was not read, it may well exist there.
            let unreadable = candidates.filter { !isReachable($0.name) }.map(\.name)
            if !unreadable.isEmpty || (anyUnreachable && candidates.isEmpty) {
                plan.unknown.append(.init(resource: resource,
                    reason: "not found on the hosts that answered, and host \(unreadable.joined(separator: ", ")) could not be read"))
                continue
            }
            if anyUnreachable {
                // It could have been moved to an unreadable host outside its placement by hand; creating it
                // here would make a second copy. Be safe.
                plan.unknown.append(.init(resource: resource,
                    reason: "not found, but host \(plan.unreachableHosts.map(\.host).joined(separator: ", ")) could not be read and may hold it"))
                continue
            }
            guard let host = withLoad({ $0.choose(for: vm, among: candidates.filter { !$0.maintenance }) }) else {
                plan.errors.append(.init(resource: resource, message: "fits on no host: \(withLoad { $0.explainNoFit(for: vm, among: candidates) })"))
                continue
            }
            if let clash = unmanagedByName[vm.id.domainName] {
                plan.errors.append(.init(resource: resource,
                    message: "a domain named \(clash.name) that virtform does not own exists on host \(clash.host); rename or remove it"))
                continue
            }
            withLoad { $0.place(vm, on: host.name) }
            let desired = DomainSpec.desired(for: vm, on: host, index: index)
            plan.observed[resource] = Plan.absent
            plan.changes.append(Change(action: .create, resource: resource, host: host.name, after: desired,
                                       ownership: ownership(vm, desired), reason: "declared in \(vm.provenance.document.file)"))
            if vm.power == .running {
                plan.changes.append(Change(action: .start, resource: resource, host: host.name, reason: "power: running"))
            }
        }

        // Managed domains whose VM left the manifests.
        var leftovers: [VMID: [ObservedDomain]] = copies
        for (id, domain) in owned { leftovers[id, default: []].insert(domain, at: 0) }
        for (id, domains) in leftovers.sorted(by: { $0.key < $1.key }) {
            for domain in domains {
                let resource = "VirtualMachine/\(id)"
                plan.observed[resource] = domain.fingerprint
                var blocked: String?
                if domain.ownership?.deletionProtection == true {
                    blocked = "deletion protection is on; set deletionProtection: false and apply before removing it"
                } else if !options.allowDestroy {
                    blocked = "deletions need --allow-destroy"
                }
                plan.changes.append(Change(action: .delete, resource: resource, host: domain.host, before: domain.spec,
                                           reason: "no longer in the manifests", blocked: blocked))
            }
        }
        plan.changes.sort { ($0.host, $0.resource, Self.order($0.action)) < ($1.host, $1.resource, Self.order($1.action)) }
        return plan
    }

    private func ownership(_ vm: VirtualMachine, _ spec: DomainSpec) -> Ownership {
        Ownership(vm: vm.id, digest: spec.digest, deletionProtection: vm.deletionProtection)
    }

    private func isReachable(_ host: String) -> Bool {
        if case .reachable = observed.hosts[host] { return true }
        return false
    }

    private static func order(_ action: Change.Action) -> Int { Change.Action.allCases.firstIndex(of: action)! }
}

/// What each host already runs, plus what this plan places on it.
struct HostLoad {
    private var memory: [String: UInt64] = [:]
    private var vcpus: [String: Int] = [:]
    private var guests: [String: Int] = [:]
    private let index: SiteIndex

    init(observed: ObservedSite, index: SiteIndex) {
        self.index = index
        for case .reachable(let domains) in observed.hosts.values {
            for domain in domains where domain.state == .running || domain.state == .paused || domain.ownership != nil {
                memory[domain.host, default: 0] += domain.spec.memoryKiB << 10
                vcpus[domain.host, default: 0] += domain.spec.vcpus
                guests[domain.host, default: 0] += 1
            }
        }
    }

    mutating func place(_ vm: VirtualMachine, on host: String) {
        memory[host, default: 0] += vm.memory.bytes
        vcpus[host, default: 0] += vm.vcpus
        guests[host, default: 0] += 1
    }

    func fits(_ vm: VirtualMachine, on host: Host, perHost: Int?) -> Bool {
        let count = guests[host.name] ?? 0
        if let maxGuests = host.capacity.maxGuests, count >= maxGuests { return false }
        if let perHost, count >= perHost { return false }
        return (memory[host.name] ?? 0) + vm.memory.bytes <= host.capacity.memory.bytes
            && (vcpus[host.name] ?? 0) + vm.vcpus <= host.capacity.vcpus
    }

    /// Pinned: the host if it fits. Pack: the first host by name with room below the per-host
    /// limit. Spread: the host with the lowest memory use after placing, then by name.
    func choose(for vm: VirtualMachine, among hosts: [Host]) -> Host? {
        let sorted = hosts.sorted { $0.name < $1.name }
        switch vm.placement {
        case .host:
            return sorted.first { fits(vm, on: $0, perHost: nil) }
        case .cluster(let name, _):
            switch index.clusters[name]?.placement {
            case .pack(let perHost):
                return sorted.first { fits(vm, on: $0, perHost: perHost) }
            case .spread, nil:
                return sorted.filter { fits(vm, on: $0, perHost: nil) }.min { a, b in
                    usage(a, adding: vm) < usage(b, adding: vm)
                }
            }
        }
    }

    private func usage(_ host: Host, adding vm: VirtualMachine) -> Double {
        Double((memory[host.name] ?? 0) + vm.memory.bytes) / Double(max(host.capacity.memory.bytes, 1))
    }

    func explainNoFit(for vm: VirtualMachine, among hosts: [Host]) -> String {
        if hosts.isEmpty { return "its placement allows no host" }
        return hosts.sorted { $0.name < $1.name }.map { host in
            if host.maintenance { return "\(host.name) is in maintenance" }
            let freeMemory = host.capacity.memory.bytes - min(memory[host.name] ?? 0, host.capacity.memory.bytes)
            return "\(host.name) has \(ByteSize(bytes: freeMemory)) and \(host.capacity.vcpus - (vcpus[host.name] ?? 0)) vCPUs free, \(guests[host.name] ?? 0) guests"
        }.joined(separator: "; ")
    }
}
