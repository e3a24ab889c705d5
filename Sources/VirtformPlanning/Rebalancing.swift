import VirtformModel

/// DRS-like rebalancing (a cluster's `rebalance`): when the most and least loaded hosts of a
/// cluster differ by more than its threshold of memory use, plan a bounded batch of live
/// migrations from the first to the second, each the move that narrows the gap most, with the
/// reason on each. Only running guests of this site placed on the cluster, untouched by the
/// plan so far, and not moved within the cooldown (their mark says when virtform moved them)
/// are moved; a move must fit the destination and keep the rules. `manual` rebalancing is
/// shown blocked until `--allow-rebalance`.
extension HypervisorPlanner {
    func rebalance(_ plan: inout Result, load: inout HostLoad) {
        let clusters = index.clusters.values.filter { $0.rebalance.mode != .off }.sorted { $0.meta.name < $1.meta.name }
        guard !clusters.isEmpty else { return }
        let positions = site.virtualMachineIndices
        for cluster in clusters {
            let policy = cluster.rebalance
            let hosts = index.members(of: cluster).filter { !$0.maintenance && isReachable($0.name) && capabilities(of: $0).migration }
                .sorted { $0.name < $1.name }
            guard hosts.count >= 2 else { continue }
            for _ in 0..<policy.maxMigrationsPerRun {
                let uses = hosts.map { (host: $0, use: load.memoryUse(of: $0.name)) }
                // Ties go to the first host by name, so the same site always gives the same plan.
                guard let most = uses.max(by: { $0.use < $1.use || ($0.use == $1.use && $0.host.name > $1.host.name) }),
                    let least = uses.min(by: { $0.use < $1.use || ($0.use == $1.use && $0.host.name > $1.host.name) }),
                    most.host.name != least.host.name
                else { break }
                let gap = (most.use - least.use) * 100
                guard gap > Double(policy.thresholdPercent) else { break }
                let touched = Set(plan.changes.filter { $0.action == .migrate || $0.action == .create || $0.action == .delete }.map(\.resource))
                var best: (domain: ObservedDomain, vm: VirtualMachine, gap: Double)?
                guard case .reachable(let domains) = observed.hosts[most.host.name] else { break }
                for domain in domains where domain.state == .running {
                    guard let owner = domain.ownership, owner.site == site.name, let position = positions[owner.vm] else { continue }
                    let vm = site.virtualMachines[position]
                    guard case .cluster(let name, _) = vm.placement, name == cluster.meta.name,
                        !touched.contains("VirtualMachine/\(vm.id)"), load.canTake(vm, on: least.host.name)
                    else { continue }
                    if let movedAt = owner.movedAt, options.now - movedAt < policy.cooldownSeconds { continue }
                    let bytes = Double(domain.spec.memoryKiB << 10)
                    let after = abs((most.use - bytes / Double(max(most.host.capacity.memory.bytes, 1)))
                        - (least.use + Double(vm.memory.bytes) / Double(max(least.host.capacity.memory.bytes, 1)))) * 100
                    guard after < gap else { continue }
                    if best == nil || after < best!.gap || (after == best!.gap && vm.id < best!.vm.id) { best = (domain, vm, after) }
                }
                guard let best else { break }
                let why = "rebalance: \(most.host.name) uses \(Self.percent(most.use)) of its memory and \(least.host.name) \(Self.percent(least.use)), "
                    + "\(Int(gap.rounded())) points apart (threshold \(policy.thresholdPercent)); this move narrows it to \(Int(best.gap.rounded()))"
                var change = move(best.domain, of: best.vm, from: most.host, why: why, candidates: [least.host], running: true, load: &load)
                if policy.mode == .manual && !options.allowRebalance {
                    change.block("rebalancing is manual in cluster \(cluster.meta.name): apply with --allow-rebalance to carry it out")
                }
                change.cause = .unapplied
                plan.fingerprints[change.resource] = best.domain.fingerprint
                plan.changes.append(change)
            }
        }
    }

    private static func percent(_ share: Double) -> String { "\(Int((share * 100).rounded()))%" }
}
