import Foundation
import VirtformModel
import VirtformPlanning

/// Placement of many VMs on many hosts with the clusters' rules: the whole site planned from
/// nothing (every VM placed), with and without 30 rules (20 anti-affinity groups, 10 affinity
/// pairs), and the evacuation of ten hosts of the placed site. Pure planning, no daemons.
enum PlacementBenchmark {
    static func run(hosts hostCount: Int, vms vmCount: Int, runs: Int) throws {
        let provenance = Provenance(document: SourceLocation(file: "generated", line: 1, column: 1))
        var state: UInt64 = 42
        func random() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        func site(rules: Bool, maintenance: Int = 0) -> Site {
            state = 42
            var site = Site()
            site.hosts = (0..<hostCount).map { i in
                Host(meta: ObjectMeta(name: String(format: "h%04d", i)), uri: "test:///h\(i)",
                     capacity: .init(memory: .mebibytes(UInt64(16384 + Int(random() % 4) * 8192)), vcpus: 64, maxGuests: 40),
                     bridges: [], maintenance: i < maintenance, domainType: .test, provenance: provenance)
            }
            let placementRules = rules
                ? (0..<20).map { PlacementRule(name: "apart-\($0)", kind: .antiAffinity, selector: ["group": "g\($0)"]) }
                    + (0..<10).map { PlacementRule(name: "together-\($0)", kind: .affinity, selector: ["pair": "p\($0)"]) }
                : []
            site.clusters = [Cluster(meta: ObjectMeta(name: "big"), members: .hosts(site.hosts.map(\.name)), placement: .spread,
                                     rules: placementRules, provenance: provenance)]
            site.virtualMachines = (0..<vmCount).map { i in
                var labels: [String: String] = [:]
                if i % 50 == 0 { labels["group"] = "g\(i % 20)" }
                if i % 997 == 0 && i % 50 != 0 { labels["pair"] = "p\(i % 10)" }
                return VirtualMachine(meta: ObjectMeta(name: "vm-\(i)", labels: labels), project: "p",
                                      memory: .mebibytes(UInt64(256 << (random() % 3))), vcpus: 1 + Int(random() % 2),
                                      placement: .cluster("big", hostSelector: [:]), provenance: provenance)
            }
            return site
        }
        let empty = ObservedSite(hosts: Dictionary(uniqueKeysWithValues: (0..<hostCount).map { (String(format: "h%04d", $0), HostObservation.reachable([])) }))
        func measure(_ site: Site, on observed: ObservedSite, check: (Plan) throws -> Void) rethrows -> [Double] {
            var times: [Double] = []
            for _ in 0..<runs {
                let start = ContinuousClock.now
                let plan = Planner(site: site, observed: observed).plan()
                times.append(inSeconds(start.duration(to: .now)))
                try check(plan)
            }
            return times
        }
        let plain = site(rules: false), ruled = site(rules: true)
        let without = try measure(plain, on: empty) { plan in
            guard plan.errors.isEmpty, plan.count(.create) == vmCount else { throw BenchmarkError("placement without rules failed: \(plan.errors.prefix(2))") }
        }
        let with = try measure(ruled, on: empty) { plan in
            guard plan.errors.isEmpty, plan.count(.create) == vmCount else { throw BenchmarkError("placement with rules failed: \(plan.errors.prefix(2))") }
        }
        print(String(format: "placement of %d VMs on %d hosts: without rules median %.3f s, with 30 rules median %.3f s (%.2fx) over %d runs",
                     vmCount, hostCount, median(without), median(with), median(with) / max(median(without), 1e-9), runs))

        // The placed site, ten hosts then going into maintenance: the moves off them are planned.
        var domains: [String: [ObservedDomain]] = [:]
        for change in Planner(site: ruled, observed: empty).plan().changes where change.action == .create {
            guard let (spec, ownership) = change.definition else { continue }
            domains[change.host, default: []].append(ObservedDomain(
                host: change.host, name: spec.name, uuid: spec.name, state: .running, persistent: true, spec: spec, ownership: ownership))
        }
        let placed = ObservedSite(hosts: Dictionary(uniqueKeysWithValues: (0..<hostCount).map {
            let name = String(format: "h%04d", $0)
            return (name, HostObservation.reachable(domains[name] ?? []))
        }))
        let evacuating = site(rules: true, maintenance: 10)
        let leaving = (0..<10).map { domains[String(format: "h%04d", $0)]?.count ?? 0 }.reduce(0, +)
        let evacuation = try measure(evacuating, on: placed) { plan in
            guard plan.count(.migrate) == leaving else { throw BenchmarkError("expected \(leaving) moves, got \(plan.count(.migrate))") }
        }
        print(String(format: "evacuation of 10 hosts (%d guests) among %d VMs with 30 rules: median %.3f s over %d runs",
                     leaving, vmCount, median(evacuation), runs))
    }
}
