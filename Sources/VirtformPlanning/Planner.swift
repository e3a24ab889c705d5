import VirtformModel

/// The site planner: compares the desired site with everything observed and produces one plan
/// for every system. It runs the hypervisor, storage and DHCP planners and owns the rules
/// across them:
///
/// - nothing a VM uses (LUN, target, reservation) is deleted while a host that might hold the
///   VM's domain cannot be read, or while the domain is deletion-protected;
/// - a VM whose pool or DHCP server cannot be read is unknown: not created, started or changed;
/// - an existing VM whose LUN is gone gets "recreate disk from master", blocked unless allowed;
/// - every change lists the changes it waits for (`dependsOn`), and a change that waits for
///   a blocked one is blocked too.
///
/// Pure: it is given everything it needs, so it is tested without any system.
public struct Planner {
    public struct Options: Sendable {
        /// Carry out deletions of managed objects that left the manifests.
        public var allowDestroy = false
        public var showUnmanaged = false
        /// Clone a missing LUN of a defined domain again from its master snapshot (its data is lost).
        public var recreateLostDisks = false
        /// Restart running guests whose definition changed in ways that cannot be made live.
        public var allowRestart = false
        /// Hosts the operator confirmed are down: their HA guests are restarted elsewhere
        /// without fencing.
        public var confirmedDown: Set<String> = []
        /// Carry out the rebalancing migrations of clusters whose rebalancing is `manual`.
        public var allowRebalance = false
        /// The time of the plan (Unix seconds): stamped into the marks of moved domains, and
        /// what rebalancing's cooldown is measured against.
        public var now = 0

        public init(allowDestroy: Bool = false, showUnmanaged: Bool = false, recreateLostDisks: Bool = false, allowRestart: Bool = false,
                    confirmedDown: Set<String> = [], allowRebalance: Bool = false, now: Int = 0) {
            self.confirmedDown = confirmedDown
            self.allowRebalance = allowRebalance
            self.now = now
            self.allowRestart = allowRestart
            self.allowDestroy = allowDestroy
            self.showUnmanaged = showUnmanaged
            self.recreateLostDisks = recreateLostDisks
        }
    }

    let site: Site
    let index: SiteIndex
    let observation: SiteObservation
    let options: Options

    public init(site: Site, observation: SiteObservation, options: Options = Options()) {
        self.site = site
        self.index = SiteIndex(site)
        self.observation = observation
        self.options = options
    }

    /// Hypervisors only: for benchmarks and tests of the hypervisor planner alone.
    public init(site: Site, observed: ObservedSite, options: Options = Options()) {
        self.init(site: site, observation: SiteObservation(hosts: observed, scope: .hypervisors), options: options)
    }

    public func plan() -> Plan {
        var plan = Plan()
        plan.site = site.name
        plan.hosts = Dictionary(uniqueKeysWithValues: index.hosts.map { ($0.key, Redaction.redacted($0.value.uri)) })
        let unreachableHosts = observation.hosts.unreachableHosts
        plan.unreachable = unreachableHosts.map { Plan.UnreachableSystem(system: .host($0.host), reason: $0.reason) }

        for host in options.confirmedDown.sorted() where index.hosts[host] == nil {
            plan.errors.append(Plan.Problem(resource: "Host/\(host)",
                                            message: "--confirm-host-down names host \(host), which the manifests do not declare (hosts: \(index.hosts.keys.sorted().joined(separator: ", ")))"))
        }
        let hypervisors = HypervisorPlanner(site: site, index: index, observed: observation.hosts, options: options).plan()
        plan.changes = hypervisors.changes
        plan.errors += hypervisors.errors
        plan.unknown = hypervisors.unknown
        plan.unmanaged = hypervisors.unmanaged
        plan.foreign = hypervisors.foreign
        plan.fingerprints = hypervisors.fingerprints
        if site.declarations.isEmpty {
            plan.warnings.append("no Site document: this site is called \"\(site.name)\", and every mark it writes says so")
        }
        if !hypervisors.adopted.isEmpty {
            plan.warnings.append("\(hypervisors.adopted.count) domain\(hypervisors.adopted.count == 1 ? "" : "s") marked by an earlier virtform without a site \(hypervisors.adopted.count == 1 ? "is" : "are") adopted by site \(site.name): \(hypervisors.adopted.count == 1 ? "its mark is" : "their marks are") rewritten by the updates below")
        }

        if observation.scope == .everything {
            let defined = planStorageAndDHCP(into: &plan, unreachableHosts: unreachableHosts.map(\.host))
            planSecrets(&plan)
            markUnknownAcrossSystems(&plan)
            keepHARestartsToGuestsThatRan(&plan)
            linkAcrossSystems(&plan)
            ChangeCauses.assign(&plan, site: site, defined: defined)
        }
        plan.blockDependents()
        Self.sort(&plan.changes)
        plan.summarize()
        return plan
    }

    // MARK: Storage and DHCP

    /// Returns the declared VMs whose domain is defined.
    private func planStorageAndDHCP(into plan: inout Plan, unreachableHosts: [String]) -> Set<VMID> {
        let declared = Set(site.virtualMachines.map(\.id))
        // Domains deleted by this plan (runnable deletions) no longer hold their disks.
        let deleted = Set(plan.changes.filter { $0.action == .delete && $0.blocked == nil }.compactMap(\.vm))
        var definedDisks = Set<String>()
        var runningDisks = Set<String>()
        // This site's domains by VM (the first of several copies), and the disks in use.
        var domains: [VMID: ObservedDomain] = [:]
        for domain in observation.hosts.domains {
            if let owner = domain.ownership, owner.site == site.name || (owner.site == nil && declared.contains(owner.vm)),
                domains[owner.vm] == nil {
                domains[owner.vm] = domain
            }
            let goes = domain.ownership.map { deleted.contains($0.vm) } ?? false
            let running = domain.state == .running || domain.state == .paused
            // A running guest may still use a disk its definition no longer names.
            for disk in domain.spec.disks + (running ? domain.live?.disks ?? [] : []) {
                if !goes { definedDisks.insert(disk.target) }
                if running { runningDisks.insert(disk.target) }
            }
        }
        let deletionGuard: (VMID) -> String? = { vm in
            if let domain = domains[vm] {
                if domain.ownership?.deletionProtection == true {
                    return "VirtualMachine/\(vm) has deletion protection on; nothing it uses is deleted"
                }
                if !deleted.contains(vm) && !declared.contains(vm) {
                    return "the domain \(vm.domainName) on host \(domain.host) stays defined and uses it"
                }
                return nil
            }
            if !unreachableHosts.isEmpty {
                return "host \(unreachableHosts.joined(separator: ", ")) could not be read and may hold the domain of \(vm); nothing it uses is deleted"
            }
            return nil
        }
        let definedVMs = Set(domains.keys).intersection(declared)
        var context = StorageContext(definedDisks: definedDisks, runningDisks: runningDisks, deletionGuard: deletionGuard,
                                     definedVMs: definedVMs, options: options)
        context.anyHostUnreachable = !unreachableHosts.isEmpty
        if site.pools.contains(where: { $0.export?.admitHosts == true }) {
            for host in site.hosts { if let name = host.initiatorName { context.initiatorNames[host.name] = name } }
            // Where each guest is, and where this plan puts or moves it.
            for (vm, domain) in domains where !deleted.contains(vm) {
                context.admission[vm] = Admission(before: [domain.host], after: [domain.host], move: nil)
            }
            for change in plan.changes where change.system.kind == .host && change.blocked == nil {
                guard let vm = change.vm else { continue }
                switch change.action {
                case .create:
                    context.admission[vm] = Admission(before: [change.system.name], after: [change.system.name], move: nil)
                case .migrate:
                    guard let destination = change.destination else { continue }
                    context.admission[vm] = Admission(before: [change.system.name, destination], after: [destination], move: change.id)
                default:
                    continue
                }
            }
        }

        let declaredProjects = Set(site.projects.map(\.name))
        var adoptedInStorage = 0
        for pool in site.pools.sorted(by: { $0.name < $1.name }) {
            switch observation.pools[pool.name] {
            case .read(let contents):
                let (view, foreign, adopted) = contents.ownedBy(site: site.name, declaredProjects: declaredProjects, pool: pool)
                plan.foreign += foreign
                adoptedInStorage += adopted.count
                var planner = StoragePlanner(site: site, pool: pool, contents: view, context: context, foreign: foreign)
                planner.plan()
                if !adopted.isEmpty {
                    // Once: the marks are rewritten with the site's name, so the next plan finds them its own.
                    plan.changes.append(Change(action: .update, resource: "StoragePool/\(pool.name)", system: .pool(pool.name),
                                               operation: .adoptMarks(marks: adopted),
                                               fields: [FieldChange(field: "marks", before: "\(adopted.count) without a site",
                                                                    after: "site \(site.name)", effect: .applied)],
                                               reason: "adopt: \(adopted.count) object\(adopted.count == 1 ? "" : "s") marked by an earlier virtform without a site, in projects this site declares"))
                }
                plan.changes += planner.changes
                plan.errors += planner.problems
                plan.fingerprints.merge(planner.fingerprints) { first, _ in first }
            case .unreachable(let reason):
                plan.unreachable.append(Plan.UnreachableSystem(system: .pool(pool.name), reason: reason))
            case nil:
                plan.unreachable.append(Plan.UnreachableSystem(system: .pool(pool.name), reason: "not observed"))
            }
        }

        if adoptedInStorage > 0 {
            plan.warnings.append("\(adoptedInStorage) storage object\(adoptedInStorage == 1 ? "" : "s") marked by an earlier virtform without a site, in projects site \(site.name) declares, \(adoptedInStorage == 1 ? "is" : "are") adopted by site \(site.name): \(adoptedInStorage == 1 ? "its mark is" : "their marks are") rewritten by the pool updates below")
        }

        var dhcp = DHCPPlanner(site: site, readings: observation.dhcpServers, deletionGuard: deletionGuard, options: options)
        dhcp.plan(index: index)
        plan.foreign += dhcp.foreign
        plan.changes += dhcp.changes
        plan.errors += dhcp.problems
        plan.unreachable += dhcp.unreachable
        plan.fingerprints.merge(dhcp.fingerprints) { first, _ in first }
        return definedVMs
    }

    /// A VM whose pool or DHCP server could not be read is unknown: its own changes are taken
    /// out of the plan, since what they would start or change on cannot be told.
    private func markUnknownAcrossSystems(_ plan: inout Plan) {
        var unreadable: [String: String] = [:]
        for system in plan.unreachable where system.endpoint == nil {
            switch system.system.kind {
            case .storagePool, .dhcpServer: unreadable[system.system.description] = system.reason
            case .host, .exportServer: break
            }
        }
        guard !unreadable.isEmpty else { return }
        var reasons: [VMID: String] = [:]
        for vm in site.virtualMachines {
            var systems: [String] = []
            if let disk = vm.disk, let pool = index.projects[disk.source.project].map(\.pool), unreadable["StoragePool/\(pool)"] != nil {
                systems.append("StoragePool/\(pool)")
            }
            if let project = index.projects[vm.project], unreadable["StoragePool/\(project.pool)"] != nil, vm.disk != nil,
                !systems.contains("StoragePool/\(project.pool)") {
                systems.append("StoragePool/\(project.pool)")
            }
            for interface in vm.interfaces {
                if let server = index.networks[interface.network]?.dhcpServer, unreadable["DHCPServer/\(server)"] != nil,
                    !systems.contains("DHCPServer/\(server)") {
                    systems.append("DHCPServer/\(server)")
                }
            }
            if !systems.isEmpty {
                reasons[vm.id] = "\(systems.joined(separator: " and ")) could not be read (\(systems.compactMap { unreadable[$0] }.joined(separator: "; "))); nothing is created, started or changed for it"
            }
        }
        guard !reasons.isEmpty else { return }
        let alreadyUnknown = Set(plan.unknown.map(\.resource))
        plan.changes.removeAll { change in
            guard let vm = change.subjectVM, reasons[vm] != nil else { return false }
            return change.action != .delete
        }
        for (vm, reason) in reasons.sorted(by: { $0.key < $1.key }) where !alreadyUnknown.contains("VirtualMachine/\(vm)") {
            plan.unknown.append(Plan.UnknownVM(resource: "VirtualMachine/\(vm)", reason: reason))
        }
    }

    /// An HA restart is for a guest that ran somewhere: one whose disk does not exist yet (this
    /// plan clones it) never did, so no host is fenced for it; it stays unknown until the hosts
    /// can be read, and a fence nothing else waits for is dropped.
    private func keepHARestartsToGuestsThatRan(_ plan: inout Plan) {
        let cloned = Set(plan.changes.filter { $0.action == .create && $0.resource.hasPrefix("StorageVolume/") }.compactMap(\.subjectVM))
        guard !cloned.isEmpty else { return }
        var never: [VMID] = []
        for change in plan.changes where change.action == .create {
            guard let vm = change.vm, cloned.contains(vm), change.definition?.ownership.replaces?.isEmpty == false else { continue }
            never.append(vm)
        }
        guard !never.isEmpty else { return }
        let dropped = Set(never)
        plan.changes.removeAll { change in change.system.kind == .host && change.vm.map(dropped.contains) == true }
        for vm in never.sorted() {
            plan.unknown.append(Plan.UnknownVM(resource: "VirtualMachine/\(vm)",
                reason: "not found on the hosts that answered, and its disk does not exist yet: it never ran, so no host is fenced for it; it is created once every host can be read"))
        }
        let waitedFor = Set(plan.changes.flatMap(\.dependsOn))
        plan.changes.removeAll { $0.action == .fence && !waitedFor.contains($0.id) }
    }

    /// The dependencies between systems: a domain is defined after its disk's LUN and target
    /// exist; it starts after its definition, its disk's export and its reservations; a
    /// domain's deletion comes before the deletion of its target, its LUN and its reservations.
    /// CHAP: every host that was read keeps a libvirt secret of each pool's account (a guest may
    /// be placed or moved to any of them); one missing is defined, one whose value is not the
    /// manifest's any more (rotated) is defined again. What a VM of such a pool does on a host
    /// waits for that host's secret.
    private func planSecrets(_ plan: inout Plan) {
        let exports = site.pools.compactMap { pool -> (String, ISCSIExport, CHAPSettings)? in
            guard let export = pool.export, let chap = export.chap else { return nil }
            return (pool.name, export, chap)
        }
        guard !exports.isEmpty else { return }
        var secretChanges: [String: [String]] = [:]  // host → change ids
        for host in site.hosts.sorted(by: { $0.name < $1.name }) {
            // A host whose secrets could not be listed: nothing is planned for them there (its
            // guests' changes go ahead; a start without the secret fails and says so).
            guard case .reachable = observation.hosts.hosts[host.name], let present = observation.hosts.secrets[host.name] else { continue }
            for (pool, export, chap) in exports {
                let usage = export.secretUsage
                let found = present.first { $0.usage == usage }
                if let found, found.current != false { continue }
                var change = Change(action: found == nil ? .create : .update, resource: "LibvirtSecret/\(pool)/\(chap.initiator.username)",
                                    system: .host(host.name), operation: .defineSecret(usage: usage, username: chap.initiator.username, secret: chap.initiator.secret),
                                    fields: found == nil ? [] : [FieldChange(field: "value", before: Redaction.placeholder,
                                                                             after: "\(Redaction.placeholder), changed (from \(chap.initiator.secret))", effect: .applied)],
                                    reason: found == nil ? "the host's guests log in to pool \(pool)'s targets with CHAP" : "the CHAP secret was rotated",
                                    summary: "libvirt secret \(usage) from \(chap.initiator.secret)")
                change.id += " on \(host.name)"
                change.cause = .unapplied
                plan.changes.append(change)
                secretChanges[host.name, default: []].append(change.id)
            }
        }
        guard !secretChanges.isEmpty else { return }
        // A guest of a CHAP pool waits for the secret of the host it is defined or started on
        // (and of its destination when it moves).
        let chapPools = Set(exports.map(\.0))
        let chapVMs = Set(site.virtualMachines.filter { vm in vm.disk != nil && index.projects[vm.project].map { chapPools.contains($0.pool) } == true }.map(\.id))
        for i in plan.changes.indices where plan.changes[i].system.kind == .host {
            guard [.create, .update, .migrate, .start, .restart].contains(plan.changes[i].action), let vm = plan.changes[i].vm,
                chapVMs.contains(vm) else { continue }
            let hosts = [plan.changes[i].system.name] + (plan.changes[i].destination.map { [$0] } ?? [])
            for id in hosts.flatMap({ secretChanges[$0] ?? [] }) where !plan.changes[i].dependsOn.contains(id) {
                plan.changes[i].dependsOn.append(id)
            }
        }
    }

    private func linkAcrossSystems(_ plan: inout Plan) {
        // What a VM's domain changes wait for, and what waits for its deletion, by VM.
        var disk: [VMID: [String]] = [:]
        var reservations: [VMID: [String]] = [:]
        var deletions: [VMID: [String]] = [:]
        for change in plan.changes {
            switch change.system.kind {
            case .host:
                if change.action == .delete, let vm = change.vm { deletions[vm, default: []].append(change.id) }
            case .storagePool, .exportServer:
                // (A former host's admission removed after a move waits for the move, not the other way.)
                var afterAMove = false
                if case .admitInitiators(_, let add, _) = change.operation, add.isEmpty, !change.dependsOn.isEmpty { afterAMove = true }
                let isDisk = change.resource.hasPrefix("StorageVolume/") ? change.action == .create
                    : change.resource.hasPrefix("ISCSITarget/") && (change.action == .create || change.action == .update) && !afterAMove
                if isDisk, let vm = change.subjectVM { disk[vm, default: []].append(change.id) }
            case .dhcpServer:
                if change.action != .delete, let vm = change.subjectVM { reservations[vm, default: []].append(change.id) }
            }
        }
        guard !disk.isEmpty || !reservations.isEmpty || !deletions.isEmpty else { return }
        for position in plan.changes.indices {
            let extra: [String]
            switch plan.changes[position].system.kind {
            case .host:
                guard !disk.isEmpty || !reservations.isEmpty, let vm = plan.changes[position].vm else { continue }
                switch plan.changes[position].action {
                case .create, .update, .migrate: extra = disk[vm] ?? []
                case .start, .restart: extra = (disk[vm] ?? []) + (reservations[vm] ?? [])
                default: continue
                }
            case .exportServer, .storagePool, .dhcpServer:
                guard !deletions.isEmpty, plan.changes[position].action == .delete, let vm = plan.changes[position].subjectVM else { continue }
                extra = deletions[vm] ?? []
            }
            for id in extra where !plan.changes[position].dependsOn.contains(id) { plan.changes[position].dependsOn.append(id) }
        }
    }

    private static func order(_ action: Change.Action) -> Int { Change.Action.allCases.firstIndex(of: action)! }

    /// By system, resource, action and id. Positions are sorted, reading the changes in place,
    /// then each change is moved once (a change is a large value; sorting the changes themselves,
    /// or keys holding copies of their strings, copied each many times).
    static func sort(_ changes: inout [Change]) {
        let order: [Int] = changes.withUnsafeBufferPointer { buffer in
            func before(_ i: Int, _ j: Int) -> Bool {
                let (a, b) = (buffer.baseAddress! + i, buffer.baseAddress! + j)
                if a.pointee.system != b.pointee.system { return a.pointee.system < b.pointee.system }
                if a.pointee.resource != b.pointee.resource { return a.pointee.resource < b.pointee.resource }
                if a.pointee.action != b.pointee.action { return Self.order(a.pointee.action) < Self.order(b.pointee.action) }
                return a.pointee.id < b.pointee.id
            }
            var order = Array(buffer.indices)
            // Planners mostly append in order already: check before sorting.
            if zip(order, order.dropFirst()).allSatisfy({ !before($1, $0) }) { return order }
            order.sort(by: before)
            return order
        }
        guard order != Array(changes.indices) else { return }
        var sorted: [Change] = []
        sorted.reserveCapacity(changes.count)
        for i in order { sorted.append(changes[i]) }
        changes = sorted
    }
}
