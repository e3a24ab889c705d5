import VirtformModel

/// What each host already runs, plus what this plan places on it and takes off it: memory,
/// vCPUs and guests for capacity, and which of the site's VMs are where for the clusters'
/// affinity and anti-affinity rules.
///
/// Kept by slot (a host's position in `names`): placing ten thousand VMs on five hundred hosts
/// walks these arrays millions of times, so nothing is hashed or copied there.
struct HostLoad {
    private var slotOf: [String: Int] = [:]
    private var names: [String] = []
    private var capacityMemory: [UInt64] = []
    private var capacityVCPUs: [Int] = []
    private var capacityGuests: [Int] = []
    private var memory: [UInt64] = []
    private var vcpus: [Int] = []
    private var guests: [Int] = []
    /// For each rule (by key), the VMs it is about, by the host they are on, sorted.
    private var ruleResidents: [String: [String: [VMID]]] = [:]
    /// The rules each VM is about (none for a VM without labels or rules).
    private var rulesOf: [VMID: [(key: String, rule: PlacementRule)]] = [:]
    private let index: SiteIndex

    init(observed: ObservedSite, index: SiteIndex, site: Site) {
        self.index = index
        for host in index.hosts.values.sorted(by: { $0.name < $1.name }) { addSlot(host.name, host) }
        let rules = index.clusters.values.sorted { $0.meta.name < $1.meta.name }.flatMap { cluster in
            cluster.rules.map { (key: "\(cluster.meta.name)/\($0.name)", cluster: cluster.meta.name, rule: $0) }
        }
        if !rules.isEmpty {
            for vm in site.virtualMachines where !vm.meta.labels.isEmpty {
                guard case .cluster(let name, _) = vm.placement else { continue }
                let about = rules.filter { $0.cluster == name && $0.rule.applies(to: vm.meta.labels) }.map { (key: $0.key, rule: $0.rule) }
                if !about.isEmpty { rulesOf[vm.id] = about }
            }
        }
        for case .reachable(let domains) in observed.hosts.values {
            for domain in domains where domain.state == .running || domain.state == .paused || domain.ownership != nil {
                let slot = slot(domain.host)
                memory[slot] += domain.spec.memoryKiB << 10
                vcpus[slot] += domain.spec.vcpus
                guests[slot] += 1
                if let vm = domain.ownership?.vm { arrive(vm, on: domain.host) }
            }
        }
    }

    private mutating func addSlot(_ name: String, _ host: Host?) {
        slotOf[name] = names.count
        names.append(name)
        capacityMemory.append(host?.capacity.memory.bytes ?? 0)
        capacityVCPUs.append(host?.capacity.vcpus ?? 0)
        capacityGuests.append(host?.capacity.maxGuests ?? Int.max)
        memory.append(0)
        vcpus.append(0)
        guests.append(0)
    }

    /// The slot of a host (one the manifests do not declare gets a slot without capacity).
    private mutating func slot(_ name: String) -> Int {
        if let slot = slotOf[name] { return slot }
        addSlot(name, nil)
        return names.count - 1
    }

    /// The slots of `hosts`, for `choose(for:amongSlots:)`.
    mutating func slots(of hosts: [Host]) -> [Int] { hosts.map { slot($0.name) } }

    /// The name of the host in `slot`.
    func name(ofSlot slot: Int) -> String { names[slot] }

    private mutating func arrive(_ vm: VMID, on host: String) {
        for (key, _) in rulesOf[vm] ?? [] {
            var list = ruleResidents[key, default: [:]][host, default: []]
            list.insert(vm, at: list.firstIndex { $0 > vm } ?? list.endIndex)
            ruleResidents[key, default: [:]][host] = list
        }
    }

    private mutating func leave(_ vm: VMID, from host: String) {
        for (key, _) in rulesOf[vm] ?? [] { ruleResidents[key]?[host]?.removeAll { $0 == vm } }
    }

    mutating func place(_ vm: VirtualMachine, on host: String) {
        let slot = slot(host)
        memory[slot] += vm.memory.bytes
        vcpus[slot] += vm.vcpus
        guests[slot] += 1
        arrive(vm.id, on: host)
    }

    /// A domain leaves its host for `host`: what it counted there is taken off, the VM's wants
    /// are added here.
    mutating func move(_ domain: ObservedDomain, of vm: VirtualMachine, to host: String) {
        let from = slot(domain.host)
        memory[from] -= min(memory[from], domain.spec.memoryKiB << 10)
        vcpus[from] -= min(vcpus[from], domain.spec.vcpus)
        guests[from] -= min(guests[from], 1)
        leave(vm.id, from: domain.host)
        place(vm, on: host)
    }

    private func fits(_ vm: VirtualMachine, slot: Int, perHost: Int?) -> Bool {
        let count = guests[slot]
        if count >= capacityGuests[slot] { return false }
        if let perHost, count >= perHost { return false }
        return memory[slot] + vm.memory.bytes <= capacityMemory[slot] && vcpus[slot] + vm.vcpus <= capacityVCPUs[slot]
    }

    /// The share of `host`'s memory its guests use (0 for a host without capacity).
    func memoryUse(of host: String) -> Double {
        guard let slot = slotOf[host], capacityMemory[slot] > 0 else { return 0 }
        return Double(memory[slot]) / Double(capacityMemory[slot])
    }

    /// Whether `vm` fits on `host` by capacity and rules (rebalancing's check of a destination).
    func canTake(_ vm: VirtualMachine, on host: String) -> Bool {
        guard let slot = slotOf[host] else { return false }
        return fits(vm, slot: slot, perHost: nil) && ruleConflict(vm.id, on: host) == nil
    }

    /// Which of the VM's rules keeps it off `host`, and why; nil when none does. `before`: only
    /// VMs that come before this id count (whether a VM already there may stay: of two web VMs
    /// on one host, the first by name stays and the second moves); nil: every VM counts.
    func ruleConflict(_ vm: VMID, on host: String, before: VMID? = nil) -> String? {
        for (key, rule) in rulesOf[vm] ?? [] {
            let byHost = ruleResidents[key] ?? [:]
            func counts(_ other: VMID) -> Bool { other != vm && (before.map { other < $0 } ?? true) }
            switch rule.kind {
            case .antiAffinity:
                if let other = byHost[host]?.first(where: counts) {
                    return "anti-affinity rule \(rule.name): \(other) is on \(host)"
                }
            case .affinity:
                let peers = byHost.filter { $0.value.contains(where: counts) }.keys.sorted()
                if !peers.isEmpty && !peers.contains(host) {
                    return "affinity rule \(rule.name): its peers are on \(peers.joined(separator: ", "))"
                }
            }
        }
        return nil
    }

    /// Pinned: the host if it fits. Pack: the first host by name with room below the per-host
    /// limit. Spread: the host with the lowest memory use after placing, then by name. Either
    /// way only hosts the VM's rules allow. `sorted` by name (the planner sorts each
    /// placement's hosts once, not once per VM).
    mutating func choose(for vm: VirtualMachine, among sorted: [Host]) -> Host? {
        let slots = slots(of: sorted)
        return choose(for: vm, amongSlots: slots).flatMap { slot in slots.firstIndex(of: slot).map { sorted[$0] } }
    }

    /// As `choose(for:among:)`, over hosts given by slot (in name order); returns the slot.
    func choose(for vm: VirtualMachine, amongSlots slots: [Int]) -> Int? {
        let ruled = rulesOf[vm.id] != nil
        func allowed(_ slot: Int) -> Bool { !ruled || ruleConflict(vm.id, on: names[slot]) == nil }
        switch vm.placement {
        case .host:
            return slots.first { fits(vm, slot: $0, perHost: nil) && allowed($0) }
        case .cluster(let name, _):
            switch index.clusters[name]?.placement {
            case .pack(let perHost):
                return slots.first { fits(vm, slot: $0, perHost: perHost) && allowed($0) }
            case .spread, nil:
                var best: Int?
                var bestUsage = Double.infinity
                for slot in slots where fits(vm, slot: slot, perHost: nil) && allowed(slot) {
                    let usage = Double(memory[slot] + vm.memory.bytes) / Double(max(capacityMemory[slot], 1))
                    if usage < bestUsage {
                        best = slot
                        bestUsage = usage
                    }
                }
                return best
            }
        }
    }

    /// For each host, what keeps the VM off it: maintenance, a rule, or its free capacity. With
    /// many hosts, the first few are named and the rest counted by reason.
    func explainNoFit(for vm: VirtualMachine, among hosts: [Host]) -> String {
        if hosts.isEmpty { return "its placement allows no host" }
        let named = 5
        var lines: [String] = []
        var rest: [String: Int] = [:]
        for (i, host) in hosts.sorted(by: { $0.name < $1.name }).enumerated() {
            let (kind, text): (String, String)
            if host.maintenance {
                (kind, text) = ("in maintenance", "\(host.name) is in maintenance")
            } else if let conflict = ruleConflict(vm.id, on: host.name) {
                (kind, text) = ("kept off by \(conflict.prefix { $0 != ":" })", "\(host.name): \(conflict)")
            } else {
                let slot = slotOf[host.name]
                let used = (memory: slot.map { memory[$0] } ?? 0, vcpus: slot.map { vcpus[$0] } ?? 0, guests: slot.map { guests[$0] } ?? 0)
                let freeMemory = host.capacity.memory.bytes - min(used.memory, host.capacity.memory.bytes)
                (kind, text) = ("without room",
                                "\(host.name) has \(ByteSize(bytes: freeMemory)) and \(host.capacity.vcpus - used.vcpus) vCPUs free, \(used.guests) guests")
            }
            if i < named || hosts.count <= named + 3 { lines.append(text) } else { rest[kind, default: 0] += 1 }
        }
        if !rest.isEmpty {
            let counted = rest.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            lines.append("… and \(rest.values.reduce(0, +)) more (\(counted))")
        }
        return lines.joined(separator: "; ")
    }
}
