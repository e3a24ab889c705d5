import VirtformModel

/// The hypervisor part of a plan: pairs owned domains with VMs by the mark (never by name
/// alone) and plans create/update/start/stop/delete/migrate. A VM not found while a host that
/// could hold it is unreadable is *unknown*. Pure.
struct HypervisorPlanner {
    let site: Site
    let index: SiteIndex
    let observed: ObservedSite
    let options: Planner.Options

    /// What it planned, for the site planner to merge and to apply its rules across systems.
    struct Result {
        var changes: [Change] = []
        var errors: [Plan.Problem] = []
        var unknown: [Plan.UnknownVM] = []
        var unmanaged: [Plan.UnmanagedDomain] = []
        var foreign: [Plan.ForeignObject] = []
        /// VMs whose domain carried a mark without a site and is now adopted by this site.
        var adopted: [VMID] = []
        var fingerprints: [String: String] = [:]
    }

    func plan() -> Result {
        var plan = Result()
        let unreachableHosts = observed.unreachableHosts
        let anyUnreachable = !unreachableHosts.isEmpty

        // Owned domains by the VM they belong to (further copies aside: a VM found on two hosts
        // is a problem to report, not to fix). Matched entries are taken out as the VMs are
        // walked; what is left belongs to VMs that left the manifests.
        var owned: [VMID: ObservedDomain] = [:]
        owned.reserveCapacity(observed.hosts.values.reduce(0) { count, host in
            if case .reachable(let domains) = host { return count + domains.count } else { return count }
        })
        var copies: [VMID: [ObservedDomain]] = [:]
        var unmanagedByName: [String: ObservedDomain] = [:]
        // Only asked for when a mark names no site (written before sites existed).
        var declared: Set<VMID>?
        // VMs `virtform import` wrote: the unmarked domain of their name on the host they were
        // found on is theirs, and the update planned below marks it. Only gathered when a domain
        // carries no mark (a site whose domains are all marked never walks its VMs for it).
        var importing: [String: (vm: VMID, host: String)]?
        func importedVM(named name: String) -> (vm: VMID, host: String)? {
            if importing == nil {
                var found: [String: (vm: VMID, host: String)] = [:]
                for i in site.virtualMachines.indices {
                    guard let host = site.virtualMachines[i].meta.importedFrom else { continue }
                    let id = site.virtualMachines[i].id
                    if found[id.domainName] == nil { found[id.domainName] = (id, host) }
                }
                importing = found
            }
            return importing![name]
        }
        for hostName in observed.hosts.keys.sorted() {
            guard case .reachable(let domains) = observed.hosts[hostName] else { continue }
            for domain in domains {
                if let owner = domain.ownership, owner.site != site.name {
                    if owner.site == nil {
                        if declared == nil { declared = Set(site.virtualMachines.map(\.id)) }
                        if declared!.contains(owner.vm) {
                            // Adopted: the update planned below writes this site's name into the mark.
                            if owned[owner.vm] == nil { owned[owner.vm] = domain } else { copies[owner.vm, default: []].append(domain) }
                            plan.adopted.append(owner.vm)
                            continue
                        }
                    }
                    plan.foreign.append(Plan.ForeignObject(resource: "VirtualMachine/\(owner.vm)", system: .host(domain.host), site: owner.site))
                    unmanagedByName[domain.name] = domain
                    continue
                }
                if let owner = domain.ownership {
                    if owned[owner.vm] == nil { owned[owner.vm] = domain } else { copies[owner.vm, default: []].append(domain) }
                } else if let imported = importedVM(named: domain.name), imported.host == domain.host, owned[imported.vm] == nil {
                    owned[imported.vm] = domain
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
            if countedLoad == nil { countedLoad = HostLoad(observed: observed, index: index, site: site) }
            return body(&countedLoad!)
        }
        // Rules between VMs are checked for VMs already placed only when a cluster has any.
        let hasRules = index.clusters.values.contains { !$0.rules.isEmpty }
        // Thousands of VMs share a handful of placements: work out each one's hosts once.
        var placements: [VirtualMachine.Placement: (hosts: [Host], names: Set<String>)] = [:]
        // For each placement, the slots (in the host load) of its hosts not in maintenance, once.
        var openSlots: [VirtualMachine.Placement: [Int]] = [:]
        // In VM order, without copying ten thousand VMs into a sorted array first.
        let order = site.virtualMachines.indices.sorted { site.virtualMachines[$0].id < site.virtualMachines[$1].id }
        for position in order {
            let vm = site.virtualMachines[position]
            var resource: String { "VirtualMachine/\(vm.id)" }
            let placement: (hosts: [Host], names: Set<String>)
            if let known = placements[vm.placement] {
                placement = known
            } else {
                // By name, as `HostLoad.choose` wants them.
                let hosts = index.candidateHosts(for: vm).sorted { $0.name < $1.name }
                placement = (hosts, Set(hosts.map(\.name)))
                placements[vm.placement] = placement
            }
            let (candidates, candidateNames) = placement
            var first = owned.removeValue(forKey: vm.id)
            var extra = copies.removeValue(forKey: vm.id) ?? []
            if let copy = first, !extra.isEmpty, let (arrived, behind, ha) = Self.supersededCopies([copy] + extra) {
                // The rest of a cold move that stopped after defining the domain on its destination,
                // or the copy a fenced host still holds of a guest HA restarted elsewhere.
                for stale in behind {
                    var change = Change(action: .delete, resource: resource, system: .host(stale.host), operation: .deleteDomain(name: stale.name),
                                        before: .domain(stale.spec),
                                        reason: ha ? "the copy host \(stale.host) kept while it was down: the guest was restarted on \(arrived.host) (HA)"
                                            : "the rest of an interrupted cold move: the domain was defined on \(arrived.host), this copy stayed")
                    change.id += " on \(stale.host)"
                    // An HA copy's removal finishes undoing the host's failure (as its restart did).
                    change.cause = ha ? .outside : .unapplied
                    plan.changes.append(change)
                }
                first = arrived
                extra = []
            }

            if let first, !extra.isEmpty {
                plan.errors.append(.init(resource: resource,
                    message: "defined on several hosts (\(([first] + extra).map(\.host).sorted().joined(separator: ", "))); undefine the stale copy, then plan again"))
                continue
            }
            if let domain = first {
                guard let host = index.hosts[domain.host] else { continue }
                let running = domain.state == .running || domain.state == .paused
                if case .none = domain.ownership {
                    // Imported, not marked yet: marking it is all a plan does until an apply has;
                    // nothing else is done to a domain virtform does not own.
                    let desired = DomainSpec.desired(for: vm, on: host, index: index)
                    let difference = DomainDifference(persistent: domain.spec, live: domain.live, running: running, desired: desired,
                                                      capabilities: capabilities(of: host), hotplug: domain.hotplug)
                    let powerDiffers = (vm.power == .running) != running
                    guard difference.fields.isEmpty, difference.pending.isEmpty, domain.persistent, !powerDiffers else {
                        let what = difference.fields.map { "\($0.field) is \($0.before), the manifest says \($0.after)" }
                            + difference.pending.map { "the running guest's \($0.field) is \($0.before)" }
                            + (powerDiffers ? ["it is \(running ? "running" : "stopped"), the manifest says \(vm.power.rawValue)"] : [])
                            + (domain.persistent ? [] : ["it is not defined persistently"])
                        plan.errors.append(.init(resource: resource, message: "the domain \(domain.name) on host \(domain.host) is not virtform's yet and differs from the manifest, so it is not imported: \(what.joined(separator: "; "))"))
                        continue
                    }
                    var update = Change(action: .update, resource: resource, system: .host(domain.host),
                                        operation: .importDomain(spec: desired, ownership: ownership(vm, desired, on: domain.host)),
                                        before: .domain(domain.spec), after: .domain(desired),
                                        reason: "import: the domain is marked as site \(site.name)'s")
                    update.cause = .unapplied
                    update.changeClass = .inPlaceLive
                    plan.changes.append(update)
                    plan.fingerprints[resource] = domain.fingerprint
                    continue
                }
                // It stays where it is unless its placement, its host's maintenance or a rule sends it away.
                let why: String? = !candidateNames.contains(domain.host) ? "its placement no longer allows host \(domain.host)"
                    : host.maintenance ? "host \(domain.host) is in maintenance"
                    : hasRules ? withLoad { $0.ruleConflict(vm.id, on: domain.host, before: vm.id) } : nil
                if let why {
                    plan.fingerprints[resource] = domain.fingerprint
                    plan.changes.append(withLoad { move(domain, of: vm, from: host, why: why, candidates: candidates, running: running, load: &$0) })
                    continue
                }
                let desired = DomainSpec.desired(for: vm, on: host, index: index)
                let difference = DomainDifference(persistent: domain.spec, live: domain.live, running: running, desired: desired,
                                                  capabilities: capabilities(of: host), hotplug: domain.hotplug)
                let fields = difference.fields
                let markChanged = domain.ownership?.deletionProtection != vm.deletionProtection || domain.ownership?.site != site.name
                // The definition is as virtform wrote it when its managed fields still hash to the mark's
                // digest; hashed only for a domain with changes (a no-change plan of thousands skips it).
                var untouched: Bool { domain.persistent && domain.ownership?.digest == domain.spec.digest }
                if !fields.isEmpty || markChanged || !domain.persistent {
                    var update = Change(action: .update, resource: resource, system: .host(domain.host),
                                        operation: .defineDomain(spec: desired, ownership: ownership(vm, desired, on: domain.host), replacing: true,
                                                                 live: difference.live),
                                        before: .domain(domain.spec), after: .domain(desired), fields: fields,
                                        reason: fields.isEmpty
                                            ? (domain.ownership?.site == nil ? "adopt: its mark names no site; it is marked as site \(site.name)'s"
                                                : domain.persistent ? "refresh virtform's mark on the domain" : "it is no longer defined persistently")
                                            : "differs from the manifest")
                    // Outside: the definition no longer matches the mark, or only the running guest differs
                    // from a definition that matches the manifest (a live change made by hand).
                    update.cause = fields.isEmpty ? (domain.persistent ? .unapplied : .outside)
                        : untouched && domain.spec != desired ? .unapplied : .outside
                    update.changeClass = fields.contains { $0.effect == .restart } ? .inPlaceRestart : .inPlaceLive
                    plan.changes.append(update)
                }
                defer {
                    // Saved plans check what their changes were made against; a resource
                    // without changes that moves on shows up as a new change instead.
                    if plan.changes.last?.resource == resource { plan.fingerprints[resource] = domain.fingerprint }
                }
                if !difference.pending.isEmpty && vm.power == .running {
                    // What runs still has the old definition: a restart makes it take effect.
                    var restart = Change(action: .restart, resource: resource, system: .host(domain.host),
                                         operation: .restartDomain(name: domain.name), fields: difference.pending,
                                         reason: "restart pending: the running guest keeps its old \(difference.pending.map(\.field).joined(separator: ", ")) until it restarts",
                                         blocked: options.allowRestart || vm.allowRestart
                                             ? nil : "restarting a guest needs --allow-restart (or spec.allowRestart: true)")
                    // A definition virtform wrote that waits for the next start is virtform's own unfinished change.
                    restart.cause = untouched ? .unapplied : .outside
                    restart.changeClass = .inPlaceRestart
                    plan.changes.append(restart)
                }
                // The mark says which power state virtform last gave the guest; a define in this plan
                // writes the new one, otherwise the start or stop does.
                let defines = plan.changes.last?.resource == resource && plan.changes.last?.action == .update
                func mark(_ power: VirtualMachine.PowerState) -> Ownership? {
                    guard !defines, var mark = domain.ownership else { return nil }
                    mark.power = power
                    return mark
                }
                if vm.power == .running && !running {
                    var start = Change(action: .start, resource: resource, system: .host(domain.host),
                                       operation: .startDomain(name: domain.name, mark: mark(.running)),
                                       reason: "power: running, but it is \(domain.state.rawValue)")
                    start.cause = Self.cause(domain.ownership?.power.map { $0 == .stopped })
                    plan.changes.append(start)
                } else if vm.power == .stopped && running {
                    var stop = Change(action: .stop, resource: resource, system: .host(domain.host),
                                      operation: .stopDomain(name: domain.name, mark: mark(.stopped)),
                                      reason: "power: stopped; shut down gracefully, forced after the timeout")
                    stop.cause = Self.cause(domain.ownership?.power.map { $0 == .running })
                    plan.changes.append(stop)
                }
                continue
            }

            // Not found. If a host that could hold it was not read, it may well exist there: an HA
            // guest is restarted elsewhere only once every such host is fenced or confirmed down.
            let unreadable = candidates.filter { !isReachable($0.name) }.map(\.name)
            var haRestart: (reason: String, fences: [String], replaces: [String])?
            if anyUnreachable && vm.ha == .restart {
                switch haCondition(unreachableHosts.map(\.host)) {
                case .met(let how, let fences):
                    haRestart = ("HA restart: host \(unreachableHosts.map(\.host).joined(separator: ", ")) could not be read; \(how)",
                                 fences, unreachableHosts.map(\.host))
                case .unmet(let why):
                    plan.unknown.append(.init(resource: resource, reason: why))
                    continue
                }
            }
            if haRestart == nil && (!unreadable.isEmpty || (anyUnreachable && candidates.isEmpty)) {
                plan.unknown.append(.init(resource: resource,
                    reason: "not found on the hosts that answered, and host \(unreadable.joined(separator: ", ")) could not be read"))
                continue
            }
            if anyUnreachable && haRestart == nil {
                // It could have been moved to an unreadable host outside its placement by hand; creating it
                // here would make a second copy. Be safe.
                plan.unknown.append(.init(resource: resource,
                    reason: "not found, but host \(unreachableHosts.map(\.host).joined(separator: ", ")) could not be read and may hold it"))
                continue
            }
            let chosen: String? = withLoad { load in
                // An HA restart goes to a host that answered; otherwise every host answered.
                if haRestart != nil {
                    return load.choose(for: vm, amongSlots: load.slots(of: candidates.filter { !$0.maintenance && isReachable($0.name) }))
                        .map { load.name(ofSlot: $0) }
                }
                let slots = openSlots[vm.placement] ?? load.slots(of: candidates.filter { !$0.maintenance })
                openSlots[vm.placement] = slots
                return load.choose(for: vm, amongSlots: slots).map { load.name(ofSlot: $0) }
            }
            guard let chosen, let host = index.hosts[chosen] else {
                plan.errors.append(.init(resource: resource, message: "fits on no host: \(withLoad { $0.explainNoFit(for: vm, among: candidates) })"))
                continue
            }
            if let clash = unmanagedByName[vm.id.domainName] {
                let owner = clash.ownership.map { $0.site.map { "that site \($0) owns" } ?? "that an earlier virtform marked without a site" }
                    ?? "that virtform does not own"
                plan.errors.append(.init(resource: resource,
                    message: "a domain named \(clash.name) \(owner) exists on host \(clash.host); rename or remove it"))
                continue
            }
            withLoad { $0.place(vm, on: host.name) }
            let desired = DomainSpec.desired(for: vm, on: host, index: index)
            plan.fingerprints[resource] = Plan.absent
            // Unapplied: the site planner tells a domain removed by hand from one never made, by its disk.
            var mark = ownership(vm, desired, on: host.name)
            mark.replaces = haRestart?.replaces
            var create = Change(action: .create, resource: resource, system: .host(host.name),
                                operation: .defineDomain(spec: desired, ownership: mark, replacing: false, live: nil),
                                after: .domain(desired), reason: haRestart?.reason ?? "declared in \(vm.provenance.document.file)")
            create.cause = haRestart == nil ? .unapplied : .outside
            if let haRestart {
                for fenced in haRestart.fences {
                    let id = "fence Host/\(fenced)"
                    if !plan.changes.contains(where: { $0.id == id }), let target = index.hosts[fenced], let command = target.fenceCommand {
                        var fence = Change(action: .fence, resource: "Host/\(fenced)", system: .host(fenced),
                                           operation: .fenceHost(command: command, uri: target.connectionURI),
                                           reason: "it could not be read, and its guests with ha: restart are started elsewhere once it is off",
                                           summary: "power it off: \(command.joined(separator: " "))")
                        fence.cause = .outside
                        plan.changes.append(fence)
                    }
                    create.dependsOn.append(id)
                }
            }
            plan.changes.append(create)
            if vm.power == .running {
                var start = Change(action: .start, resource: resource, system: .host(host.name),
                                   operation: .startDomain(name: desired.name), reason: "power: running")
                // Part of an HA restart: it undoes the host's failure, as its define does.
                start.cause = haRestart == nil ? .unapplied : .outside
                plan.changes.append(start)
            }
        }

        // Rebalancing, last: what the changes above place and move is counted already.
        if index.clusters.values.contains(where: { $0.rebalance.mode != .off }) {
            withLoad { load in rebalance(&plan, load: &load) }
        }

        // A VM's start or restart waits for its definition.
        var definitions: [String: String] = [:]
        for change in plan.changes where change.action == .create || change.action == .update { definitions[change.resource] = change.id }
        for i in plan.changes.indices where plan.changes[i].action == .start || plan.changes[i].action == .restart {
            if let id = definitions[plan.changes[i].resource] { plan.changes[i].dependsOn.append(id) }
        }

        // Managed domains whose VM left the manifests.
        var leftovers: [VMID: [ObservedDomain]] = copies
        for (id, domain) in owned { leftovers[id, default: []].insert(domain, at: 0) }
        for (id, domains) in leftovers.sorted(by: { $0.key < $1.key }) {
            for (position, domain) in domains.enumerated() {
                let resource = "VirtualMachine/\(id)"
                plan.fingerprints[resource] = domain.fingerprint
                var blocked: String?
                if domain.ownership?.deletionProtection == true {
                    blocked = "deletion protection is on; set deletionProtection: false and apply before removing it"
                } else if !options.allowDestroy {
                    blocked = "deletions need --allow-destroy"
                }
                var change = Change(action: .delete, resource: resource, system: .host(domain.host), operation: .deleteDomain(name: domain.name),
                                    before: .domain(domain.spec), reason: "no longer in the manifests", blocked: blocked)
                change.cause = .unapplied
                if position > 0 { change.id += " on \(domain.host)" }
                plan.changes.append(change)
            }
        }
        return plan
    }

    /// The move of a VM's domain off `source` (`why`: its placement no longer allows it, its
    /// host is in maintenance, a rule, rebalancing): live when it runs, cold when it does not,
    /// to the candidate the placement policy picks among those that pass the preflight —
    /// reachable, not in maintenance, every bridge the VM uses, a hypervisor that can migrate a
    /// running guest, no disk on the host itself, room and the rules. The move carries the VM's other changes (they are
    /// shown as its fields). With no host to go to, the move is shown blocked, naming why each
    /// host was refused; the VM's other moves still go.
    func move(_ domain: ObservedDomain, of vm: VirtualMachine, from source: Host, why: String, candidates: [Host], running: Bool,
              load: inout HostLoad) -> Change {
        let resource = "VirtualMachine/\(vm.id)"
        var refusals: [String] = []
        var eligible: [Host] = []
        let bridges = vm.interfaces.map { index.networks[$0.network]?.bridge ?? $0.network }
        let localDisks = domain.spec.disks.filter { $0.portalHost.isEmpty }.map(\.target)
        for candidate in candidates where candidate.name != source.name {
            if candidate.maintenance { refusals.append("\(candidate.name) is in maintenance"); continue }
            if !isReachable(candidate.name) { refusals.append("\(candidate.name) could not be read"); continue }
            let missing = bridges.filter { !candidate.bridges.contains($0) }
            if !missing.isEmpty { refusals.append("\(candidate.name) has no bridge \(missing.joined(separator: ", "))"); continue }
            if running, !capabilities(of: candidate).migration || !capabilities(of: source).migration {
                refusals.append("\(candidate.name): its hypervisor driver (\(candidate.domainType.rawValue)) cannot migrate a running guest")
                continue
            }
            eligible.append(candidate)
        }
        var destination: Host?
        if localDisks.isEmpty, let chosen = load.choose(for: vm, among: eligible) {
            load.move(domain, of: vm, to: chosen.name)
            destination = chosen
        }
        let desired = destination.map { DomainSpec.desired(for: vm, on: $0, index: index) }
        var blocked: String?
        if !localDisks.isEmpty {
            blocked = "it has disks on the host itself (\(localDisks.joined(separator: ", "))), not on shared iSCSI storage"
        } else if destination == nil {
            if !eligible.isEmpty { refusals.append(load.explainNoFit(for: vm, among: eligible)) }
            blocked = "no host can take it: " + (refusals.isEmpty ? "its placement allows no other host" : refusals.joined(separator: "; "))
        }
        let request = destination.map { target in
            let cluster = index.clusters.values.sorted { $0.meta.name < $1.meta.name }.first { index.members(of: $0).contains { $0.name == source.name } }
            let policy = cluster?.migration ?? MigrationPolicy()
            var mark = ownership(vm, desired!, on: target.name)
            mark.movedAt = options.now > 0 ? options.now : nil
            return MigrationRequest(
                destination: target.name, uuid: domain.uuid, spec: desired!, ownership: mark, live: running,
                uri: target.migrationAddress.map { "tcp://\($0)" },
                completionSeconds: policy.completionTimeout(memoryKiB: domain.spec.memoryKiB), noProgressSeconds: policy.noProgressSeconds,
                bandwidthMiBps: policy.bandwidthMiBps,
                maxPerHost: policy.maxPerHost, maxInGroup: policy.maxInCluster, limitGroup: cluster?.meta.name ?? "site \(site.name)")
        }
        var change = Change(
            action: .migrate, resource: resource, system: .host(domain.host),
            operation: .migrateDomain(name: domain.name, request: request ?? MigrationRequest(
                destination: "", uuid: domain.uuid, spec: domain.spec, ownership: domain.ownership ?? ownership(vm, domain.spec, on: source.name),
                live: running, uri: nil, completionSeconds: 0, noProgressSeconds: 0, maxPerHost: 1, maxInGroup: 1, limitGroup: "")),
            before: .domain(domain.spec), after: desired.map(ResourceState.domain),
            fields: desired.map { DomainDifference(persistent: domain.spec, live: nil, running: false, desired: $0).fields } ?? [],
            reason: why, blocked: blocked, destination: destination?.name)
        change.changeClass = running ? .liveMigration : .coldMove
        // The mark names the host virtform defined it on: elsewhere, it was moved by hand.
        change.cause = Self.cause(domain.ownership?.host.map { $0 == domain.host })
        return change
    }

    enum HACondition {
        /// Every host that may hold the guest is certain to be off: how, and which need fencing first.
        case met(String, fences: [String])
        case unmet(String)
    }

    /// Whether the guests that may be on `hosts` (which could not be read) may start elsewhere:
    /// each is confirmed down by the operator, or has a fencing command (run first). Never on a
    /// failed connection alone: the same disk started on two hosts is corrupted.
    func haCondition(_ hosts: [String]) -> HACondition {
        var fences: [String] = []
        var confirmed: [String] = []
        for host in hosts.sorted() {
            if options.confirmedDown.contains(host) {
                confirmed.append(host)
            } else if index.hosts[host]?.fenceCommand != nil {
                fences.append(host)
            } else {
                return .unmet("not found on the hosts that answered; host \(host) could not be read and may still run it: with ha: restart it is started elsewhere only after \(host) is fenced (spec.fence) or confirmed down (--confirm-host-down \(host))")
            }
        }
        var how: [String] = []
        if !fences.isEmpty { how.append("fenced first by \(fences.count == 1 ? "its" : "their") fencing command (\(fences.joined(separator: ", ")))") }
        if !confirmed.isEmpty { how.append("confirmed down by the operator (--confirm-host-down \(confirmed.joined(separator: ", ")))") }
        return .met(how.joined(separator: "; "), fences: fences)
    }

    /// Copies of one VM of which all but one are left over, and which one stays: a copy whose
    /// mark says it was HA restarted in place of hosts that hold the other (stopped) copies; or
    /// copies left by a cold move that stopped between defining the domain on its destination
    /// and undefining it on its source — one copy whose mark names the host it is on, and
    /// stopped copies (same UUID) whose marks name that host instead of theirs. nil for anything
    /// else (a VM defined twice by hand stays an error).
    static func supersededCopies(_ copies: [ObservedDomain]) -> (arrived: ObservedDomain, behind: [ObservedDomain], ha: Bool)? {
        // An HA restart: one copy's mark names the hosts it replaces, and every other copy is
        // stopped on one of them.
        let restarted = copies.filter { !($0.ownership?.replaces ?? []).isEmpty }
        if restarted.count == 1, let target = restarted.first {
            let behind = copies.filter { $0.host != target.host }
            if behind.count == copies.count - 1,
                behind.allSatisfy({ target.ownership?.replaces?.contains($0.host) == true && $0.state == .shutoff }) {
                return (target, behind, true)
            }
        }
        let arrived = copies.filter { $0.ownership?.host == $0.host }
        guard arrived.count == 1, let target = arrived.first else { return nil }
        let behind = copies.filter { $0.host != target.host }
        guard behind.count == copies.count - 1,
            behind.allSatisfy({ $0.ownership?.host == target.host && $0.uuid == target.uuid && $0.state == .shutoff })
        else { return nil }
        return (target, behind, false)
    }

    private func ownership(_ vm: VirtualMachine, _ spec: DomainSpec, on host: String) -> Ownership {
        Ownership(vm: vm.id, digest: spec.digest, deletionProtection: vm.deletionProtection, site: site.name, power: vm.power, host: host)
    }

    /// `asVirtformLeftIt`: whether the mark shows the object as virtform left it (nil: the mark
    /// does not say, as in marks of an earlier virtform).
    static func cause(_ asVirtformLeftIt: Bool?) -> ChangeCause {
        asVirtformLeftIt.map { $0 ? .unapplied : .outside } ?? .unknown
    }

    /// What the host's hypervisor driver changes on a running guest (its descriptor in `Drivers`).
    func capabilities(of host: Host) -> HypervisorCapabilities {
        Drivers.descriptor(.hypervisor, host.domainType.rawValue)?.hypervisor ?? .none
    }

    func isReachable(_ host: String) -> Bool {
        if case .reachable = observed.hosts[host] { return true }
        return false
    }
}

/// How a domain differs from what the manifests want: in its definition, and — for a running
/// guest — in what runs now.
struct DomainDifference {
    /// What the update shows: each field of the definition (or of the running guest) that
    /// changes, with how it takes effect.
    var fields: [FieldChange] = []
    /// What apply changes on the running guest itself.
    var live: LiveUpdate?
    /// Whether the definition must be written (or the running guest changed).
    var needsUpdate: Bool { !fields.isEmpty }
    /// What the running guest keeps until it restarts, after the update (before: what runs
    /// once the live changes are made).
    var pending: [FieldChange] = []

    /// On a running guest, what the hypervisor's `capabilities` allow is changed live: memory
    /// within the live maximum (the balloon), vCPUs raised within the live maximum, interfaces
    /// attached and detached (when the guest can take devices: `hotplug`). Everything else is
    /// written to the definition and waits for the next start, shown as pending until then.
    /// `live` is what a running guest runs (nil: the same as `persistent`, as for a transient
    /// domain, which is read from its live definition).
    init(persistent: DomainSpec, live liveSpec: DomainSpec?, running: Bool, desired: DomainSpec,
         capabilities: HypervisorCapabilities = .none, hotplug: Bool = true) {
        // The common case of a large plan: nothing differs.
        if persistent == desired && (!running || liveSpec == nil || liveSpec == desired) { return }
        let running = running ? liveSpec ?? persistent : nil
        let definition = persistent.differences(to: desired)
        guard let running else {
            fields = definition.map { FieldChange(field: $0.field, before: $0.before, after: $0.after, effect: .applied) }
            return
        }
        var update = LiveUpdate()
        // What runs once the live changes are made, and what of the desired definition the
        // guest would not notice (a higher maximum than it needs).
        var afterLive = running
        var runningDesired = desired

        // Memory: the balloon reaches anything up to the live maximum.
        let memoryLive = capabilities.liveMemory && desired.currentMemoryKiB <= running.memoryKiB
        if memoryLive && running.currentMemoryKiB != desired.currentMemoryKiB {
            update.memoryKiB = desired.currentMemoryKiB
        }
        // Asked for already (the definition says so) while the guest still holds all of its
        // maximum: it does not follow the balloon (no driver), so only a restart brings the
        // memory down. The live request is made again, and the restart is pending.
        let ignoresBalloon = update.memoryKiB != nil && persistent.memoryKiB == desired.memoryKiB
            && persistent.currentMemoryKiB == desired.currentMemoryKiB && running.currentMemoryKiB == running.memoryKiB
            && desired.currentMemoryKiB < running.currentMemoryKiB
        if memoryLive && !ignoresBalloon {
            afterLive.currentMemoryKiB = desired.currentMemoryKiB
            runningDesired.memoryKiB = running.memoryKiB
        }

        // vCPUs: raised up to the live maximum, never lowered live (QEMU's `pc` machine cannot
        // unplug a CPU). A lower maximum than the guest started with is no difference to it.
        if capabilities.liveVCPUs && desired.vcpus > running.vcpus && desired.vcpus <= running.maxVCPUs {
            update.vcpus = desired.vcpus
            afterLive.vcpus = desired.vcpus
        }
        if capabilities.liveVCPUs && desired.maxVCPUs <= running.maxVCPUs && desired.vcpus <= running.maxVCPUs {
            runningDesired.maxVCPUs = running.maxVCPUs
        }

        // Interfaces: attached and detached on the running guest. In another order only, they
        // are no difference to it.
        if running.interfaces != desired.interfaces {
            let detach = running.interfaces.filter { !desired.interfaces.contains($0) }
            let attach = desired.interfaces.filter { !running.interfaces.contains($0) }
            // Detached before (the definition already says so) and still there: the guest has not
            // let go of it (or it was attached by hand); a restart is what removes it.
            let stuck = !detach.isEmpty && persistent.interfaces == desired.interfaces
            if detach.isEmpty && attach.isEmpty {
                afterLive.interfaces = desired.interfaces
            } else if capabilities.interfaceHotplug && hotplug && !stuck {
                update.attach = attach
                update.detach = detach
                afterLive.interfaces = desired.interfaces
            }
        }

        live = update.isEmpty ? nil : update
        pending = afterLive.differences(to: runningDesired).map {
            FieldChange(field: $0.field, before: $0.before, after: $0.after, effect: .restart)
        }
        let pendingFields = Set(pending.map(\.field))
        func changedLive(_ field: String) -> Bool {
            switch field {
            case "memory": update.memoryKiB != nil
            case "vcpus": update.vcpus != nil
            case "interfaces": !update.attach.isEmpty || !update.detach.isEmpty
            default: false
            }
        }
        fields = definition.map { field in
            let effect: FieldChange.Effect = pendingFields.contains(field.field) ? .restart
                : changedLive(field.field) ? .live
                : .applied  // the running guest already has it; the next start will too
            return FieldChange(field: field.field, before: field.before, after: field.after, effect: effect)
        }
        // The definition already says so; only the running guest lags behind.
        let defined = Set(definition.map(\.field))
        if let memory = update.memoryKiB, !defined.contains("memory") {
            fields.append(FieldChange(field: "memory", before: "\(ByteSize(bytes: running.currentMemoryKiB << 10)) in use",
                                      after: "\(ByteSize(bytes: memory << 10))", effect: .live))
        }
        if let vcpus = update.vcpus, !defined.contains("vcpus") {
            fields.append(FieldChange(field: "vcpus", before: "\(running.vcpus) online", after: String(vcpus), effect: .live))
        }
        if changedLive("interfaces"), !defined.contains("interfaces") {
            fields.append(FieldChange(field: "interfaces", before: DomainSpec.describe(running.interfaces) + " running",
                                      after: DomainSpec.describe(desired.interfaces), effect: .live))
        }
    }
}

extension DomainSpec {
    /// The managed fields that differ from `desired`, described for people.
    func differences(to desired: DomainSpec) -> [(field: String, before: String, after: String)] {
        var result: [(field: String, before: String, after: String)] = []
        if domainType != desired.domainType { result.append(("domainType", domainType, desired.domainType)) }
        if osType != desired.osType { result.append(("type", osType, desired.osType)) }
        if memoryKiB != desired.memoryKiB || currentMemoryKiB != desired.currentMemoryKiB {
            result.append(("memory", Self.describeMemory(memoryKiB, currentMemoryKiB), Self.describeMemory(desired.memoryKiB, desired.currentMemoryKiB)))
        }
        if vcpus != desired.vcpus || maxVCPUs != desired.maxVCPUs {
            result.append(("vcpus", Self.describeVCPUs(vcpus, maxVCPUs), Self.describeVCPUs(desired.vcpus, desired.maxVCPUs)))
        }
        if interfaces != desired.interfaces { result.append(("interfaces", Self.describe(interfaces), Self.describe(desired.interfaces))) }
        if disks != desired.disks { result.append(("disks", Self.describe(disks), Self.describe(desired.disks))) }
        return result
    }

    /// `64MiB`, or `64MiB (32MiB in use)` when the balloon holds less than the maximum.
    static func describeMemory(_ maximum: UInt64, _ current: UInt64) -> String {
        let text = ByteSize(bytes: maximum << 10).description
        return current == maximum ? text : "\(text) (\(ByteSize(bytes: current << 10)) in use)"
    }

    /// `2`, or `2 (max 4)` when more can be hot-plugged.
    static func describeVCPUs(_ online: Int, _ maximum: Int) -> String {
        maximum == online ? String(online) : "\(online) (max \(maximum))"
    }

    public static func describe(_ interfaces: [InterfaceSpec]) -> String {
        interfaces.isEmpty ? "none" : interfaces.map { "\($0.bridge)/\($0.mac)" }.joined(separator: ", ")
    }

    public static func describe(_ disks: [DiskSpec]) -> String {
        disks.isEmpty ? "none" : disks.map { disk in
            "\(disk.target)/\(disk.lun)@\(disk.portalHost):\(disk.portalPort)"
                + (disk.chapUsername.map { " CHAP \($0)" } ?? "") + (disk.initiator.map { " as \($0)" } ?? "")
        }.joined(separator: ", ")
    }
}
