import Testing
import VirtformModel
import VirtformPlanning

/// A whole site as the planner sees it — the hypervisors, the reference site's pool with its
/// targets and the DHCP server's reservations — with `apply` doing to it what each operation
/// does to the real systems. Lets the site planner's rules be tested without any system.
struct World {
    static let pool = "lab-pool"
    static let dhcpServer = "lab-dhcp"
    static let endpoint = "kea-1"
    static let iqnPrefix = "iqn.2026-11.io.virtform.lab"

    var hosts: ObservedSite
    var projects: [String: ObservedProject] = [:]
    var targets: [ObservedTarget] = []
    var served: [String: ServedLUN] = [:]
    var reservations: [Reservation] = []
    var poolUnreachable: String?
    /// Whether the pool's driver can import images (zfs cannot).
    var canImport = true
    var dhcpUnreachable: String?
    /// Whether the DHCP endpoint holds a write an apply did not finish.
    var dhcpUnfinished = false
    /// What an interrupted apply left under temporary names in the pool.
    var halfMade: [HalfMadeObject] = []
    /// Running guests that do not let go of a detached interface (no ACPI hot-plug in the guest).
    var stuckDetaching = false
    private var nextTID = 1
    /// The site the storage drivers name in their marks (they are made for one site).
    var site = referenceSite.name

    init(hosts: ObservedSite = emptyLab()) {
        self.hosts = hosts
    }

    /// The reference site applied from scratch.
    static func applied(_ site: Site = referenceSite) -> World {
        var world = World()
        world.apply(Planner(site: site, observation: world.observation(for: site)).plan())
        return world
    }

    func observation(for site: Site) -> SiteObservation {
        let subnets = site.networks.filter { $0.dhcpServer == Self.dhcpServer }.map(\.subnet)
        let pool: PoolReading = poolUnreachable.map { .unreachable(reason: $0) } ?? .read(PoolContents(
            observation: PoolObservation(pool: Self.pool, projects: projects.values.sorted { $0.name < $1.name }, cloneMethod: .reflink, halfMade: halfMade),
            targets: targets.sorted { $0.iqn < $1.iqn }, served: served,
            capabilities: StorageCapabilities(cloneMethod: .reflink, canImport: canImport, reportsExclusiveBytes: true)))
        let dhcp: DHCPReading = dhcpUnreachable.map { .unreachable(reason: $0) } ?? .read(DHCPObservation(
            server: Self.dhcpServer, subnets: subnets,
            endpoints: [EndpointObservation(name: Self.endpoint, state: .observed(reservations: reservations, unservedSubnets: []),
                                            unfinished: dhcpUnfinished)],
            token: DHCPVersionToken(endpoints: [:])))
        return SiteObservation(hosts: hosts, pools: [Self.pool: pool], dhcpServers: [Self.dhcpServer: dhcp])
    }

    func plan(_ site: Site = referenceSite, _ options: Planner.Options = .init()) -> Plan {
        Planner(site: site, observation: observation(for: site), options: options).plan()
    }

    /// Carries out every runnable change in an order its dependencies allow, as apply would.
    mutating func apply(_ plan: Plan) {
        var done = Set<String>()
        var pending = plan.runnable
        while !pending.isEmpty {
            guard let next = pending.firstIndex(where: { Set($0.dependsOn).isSubset(of: done) }) else {
                Issue.record("dependencies that can never be met: \(pending.map(\.id))")
                return
            }
            let change = pending.remove(at: next)
            apply(change)
            done.insert(change.id)
        }
    }

    mutating func apply(_ change: Change) {
        let host = change.system.name
        switch change.operation {
        case .defineDomain(let spec, let ownership, _, let live):
            var list = domains(on: host)
            if let i = list.firstIndex(where: { $0.name == spec.name }) {
                list[i].spec = spec
                list[i].ownership = ownership
                list[i].persistent = true
                // The running guest keeps what it runs, but for what apply changes live.
                if let memory = live?.memoryKiB { list[i].live?.currentMemoryKiB = memory }
                if let vcpus = live?.vcpus { list[i].live?.vcpus = vcpus }
                if let live, list[i].live != nil {
                    list[i].live!.interfaces.removeAll { live.detach.contains($0) && !stuckDetaching }
                    list[i].live!.interfaces += live.attach  // hot-plugged: last on the bus
                }
            } else {
                list.append(ObservedDomain(host: host, name: spec.name, uuid: "uuid-\(spec.name)", state: .shutoff, persistent: true,
                                           spec: spec, ownership: ownership))
            }
            hosts.hosts[host] = .reachable(list)
        case .startDomain(let name, let mark):
            setState(name, on: host, .running, mark: mark)
        case .restartDomain(let name):
            setState(name, on: host, .running)
        case .stopDomain(let name, let mark):
            setState(name, on: host, .shutoff, mark: mark)
        case .deleteDomain(let name):
            hosts.hosts[host] = .reachable(domains(on: host).filter { $0.name != name })
        case .fenceHost:
            // Powered off: it stays unreachable; what it held is gone until it comes back.
            break
        case .defineSecret(let usage, _, _):
            hosts.secrets[host, default: []].removeAll { $0.usage == usage }
            hosts.secrets[host, default: []].append(ObservedSecret(usage: usage, uuid: "uuid-\(usage)", current: true))
        case .secureTargets, .admitInitiators:
            break
        case .migrateDomain(let name, let request):
            // As apply does: defined on the destination (running there when it ran here), gone here.
            guard let domain = domains(on: host).first(where: { $0.name == name }) else { break }
            hosts.hosts[host] = .reachable(domains(on: host).filter { $0.name != name })
            var moved = domain
            moved.host = request.destination
            moved.spec = request.spec
            moved.ownership = request.ownership
            if moved.live != nil { moved.live = request.spec }
            hosts.hosts[request.destination] = .reachable(domains(on: request.destination) + [moved])
        case .createProject(let name):
            projects[name] = ObservedProject(name: name, ownership: .owned(OwnershipMark(kind: .project, name: name, site: site)), volumes: [], snapshots: [])
        case .deleteProject(let name):
            projects[name] = nil
        case .createImage(let project, let name, let size, _):
            addVolume(project, name, size: size ?? 0, mark: OwnershipMark(kind: .image, name: "\(project)/\(name)", site: site))
        case .createSnapshot(let reference):
            let size = projects[reference.project]?.volume(reference.image)?.size ?? 0
            projects[reference.project]?.snapshots.append(ObservedSnapshot(
                reference: reference, size: size, ownership: .owned(OwnershipMark(kind: .snapshot, name: reference.description, site: site))))
        case .sealSnapshot(let reference):
            if let i = projects[reference.project]?.snapshots.firstIndex(where: { $0.reference == reference }) {
                projects[reference.project]!.snapshots[i].sealed = true
            }
        case .deleteSnapshot(let reference):
            projects[reference.project]?.snapshots.removeAll { $0.reference == reference }
        case .cloneVolume(let source, let project, let name, let size):
            let snapshotSize = projects[source.project]?.snapshots.first { $0.reference == source }?.size ?? 0
            addVolume(project, name, size: max(size ?? 0, snapshotSize), mark: OwnershipMark(kind: .lun, name: "\(project)/\(name)", origin: source, site: site))
        case .growVolume(let project, let name, let size):
            if let i = projects[project]?.volumes.firstIndex(where: { $0.name == name }) { projects[project]!.volumes[i].size = size }
        case .deleteVolume(let project, let name):
            projects[project]?.volumes.removeAll { $0.name == name }
        case .exportVolume(let request), .reexportVolume(_, let request):
            let iqn = "\(Self.iqnPrefix):\(request.project).\(request.volume)"
            targets.removeAll { $0.iqn == iqn }
            targets.append(ObservedTarget(tid: nextTID, iqn: iqn,
                                          luns: [ObservedTargetLUN(lun: 1, backingPath: request.backingPath, reportedSize: 0, backingExists: true)],
                                          boundInitiators: ["ALL"], connectedInitiators: [], isOwned: true, site: site))
            nextTID += 1
            served[iqn] = .size(projects[request.project]?.volume(request.volume)?.size ?? 0)
        case .unexportVolume(let iqn):
            targets.removeAll { $0.iqn == iqn }
            served[iqn] = nil
        case .reservation(let edit):
            if let before = edit.before { reservations.removeAll { $0.owner?.binding == before.owner?.binding } }
            if var after = edit.after {
                // As the drivers write it: the mark records the digest of what was reserved.
                let digest = after.digest
                after.owner?.applied = digest
                reservations.append(after)
            }
        case .adoptMarks(let marks):
            for mark in marks {
                let project = String(mark.name.prefix { $0 != "/" && $0 != "@" })
                guard var seen = projects[project] else { continue }
                var adopted = mark
                adopted.site = site
                if seen.ownership.mark == mark { seen.ownership = .owned(adopted) }
                for i in seen.volumes.indices where seen.volumes[i].ownership.mark == mark { seen.volumes[i].ownership = .owned(adopted) }
                for i in seen.snapshots.indices where seen.snapshots[i].ownership.mark == mark { seen.snapshots[i].ownership = .owned(adopted) }
                projects[project] = seen
                // A target's site is its LUN's.
                if mark.kind == .lun {
                    for i in targets.indices where targets[i].iqn.hasSuffix(":\(mark.name.replacingOccurrences(of: "/", with: "."))") { targets[i].site = site }
                }
            }
        case .importDomain(let spec, let ownership):
            var list = domains(on: host)
            if let i = list.firstIndex(where: { $0.name == spec.name }) {
                list[i].spec = spec
                list[i].ownership = ownership
            }
            hosts.hosts[host] = .reachable(list)
        case .markImported(let marks):
            for mark in marks where mark.kind == .lun {
                let parts = mark.name.split(separator: "/").map(String.init)
                guard parts.count == 2, var seen = projects[parts[0]] else { continue }
                var adopted = mark
                adopted.site = site
                for i in seen.volumes.indices where seen.volumes[i].name == parts[1] && seen.volumes[i].ownership.mark == nil {
                    seen.volumes[i].ownership = .owned(adopted)
                }
                projects[parts[0]] = seen
                for i in targets.indices where targets[i].iqn.hasSuffix(":\(parts[0]).\(parts[1])") {
                    targets[i].isOwned = true
                    targets[i].site = site
                }
            }
        case .finishDHCPWrite:
            dhcpUnfinished = false
        case .removeHalfMade(let paths):
            halfMade.removeAll { paths.contains($0.path) }
        case .manual:
            break
        }
    }

    func domains(on host: String) -> [ObservedDomain] {
        if case .reachable(let list) = hosts.hosts[host] { return list }
        return []
    }

    func domain(_ vm: String) -> ObservedDomain? { hosts.domains.first { $0.ownership?.vm.description == vm } }

    /// A start runs the definition; a stop leaves nothing running.
    private mutating func setState(_ name: String, on host: String, _ state: ObservedDomain.State, mark: Ownership? = nil) {
        hosts.hosts[host] = .reachable(domains(on: host).map { domain in
            var domain = domain
            if domain.name == name {
                domain.state = state
                domain.live = state == .running ? domain.spec : nil
                if let mark { domain.ownership = mark }
            }
            return domain
        })
    }

    /// Changes what the running guest `vm` runs (as a change made live by hand would).
    mutating func changeLive(_ vm: String, _ body: (inout DomainSpec) -> Void) {
        guard let domain = domain(vm) else { return }
        hosts.hosts[domain.host] = .reachable(domains(on: domain.host).map { other in
            var other = other
            if other.name == domain.name, other.live != nil { body(&other.live!) }
            return other
        })
    }

    /// Changes what was observed of `vm`'s domain.
    mutating func changeObserved(_ vm: String, _ body: (inout ObservedDomain) -> Void) {
        guard let domain = domain(vm) else { return }
        hosts.hosts[domain.host] = .reachable(domains(on: domain.host).map { other in
            var other = other
            if other.name == domain.name { body(&other) }
            return other
        })
    }

    /// Changes the definition of `vm` (as `virsh setmem --config` or `attach-device --config` would).
    mutating func changeDefinition(_ vm: String, _ body: (inout DomainSpec) -> Void) {
        guard let domain = domain(vm) else { return }
        hosts.hosts[domain.host] = .reachable(domains(on: domain.host).map { other in
            var other = other
            if other.name == domain.name { body(&other.spec) }
            return other
        })
    }

    private mutating func addVolume(_ project: String, _ name: String, size: UInt64, mark: OwnershipMark) {
        projects[project]?.volumes.removeAll { $0.name == name }
        projects[project]?.volumes.append(ObservedVolume(project: project, name: name, size: size, exclusiveBytes: nil, ownership: .owned(mark),
                                                         backingPath: "/var/lib/virtform-lab/pool/\(project)/\(name).img"))
        projects[project]?.volumes.sort { $0.name < $1.name }
    }
}
