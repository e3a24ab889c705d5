import Foundation
import Testing
import VirtformModel
import VirtformPlanning

/// Placement rules of a cluster: anti-affinity keeps VMs apart, affinity together; placement
/// is deterministic and stable (a VM that is fine where it stays), and when no host fits the
/// plan says which rule failed on which host.
@Suite("Placement rules")
struct RulePlannerTests {
    /// The reference site plus `count` running guests labelled `labels` in cluster `lab` (pack,
    /// 4 per host), and the cluster's `rules`.
    static func site(guests names: [String], labels: [String: String], rules: [PlacementRule]) -> Site {
        var site = referenceSite
        let template = site.virtualMachines.first { $0.name == "spare-1" }!
        for name in names {
            var guest = template
            guest.meta = ObjectMeta(name: name, labels: labels)
            guest.power = .running
            guest.interfaces = []
            guest.memory = .mebibytes(32)
            site.virtualMachines.append(guest)
        }
        let c = site.clusters.firstIndex { $0.meta.name == "lab" }!
        site.clusters[c].rules = rules
        return site
    }

    static let apart = PlacementRule(name: "web-apart", kind: .antiAffinity, selector: ["tier": "web"])
    static let together = PlacementRule(name: "shop-together", kind: .affinity, selector: ["app": "shop"])

    static func host(of vm: String, in plan: Plan) -> String? {
        plan.change("create VirtualMachine/\(vm)")?.host ?? plan.change("migrate VirtualMachine/\(vm)")?.destination
    }

    @Test func antiAffinitySpreadsWhatPackWouldPutTogether() throws {
        let packed = World.applied().plan(Self.site(guests: ["web-1", "web-2"], labels: ["tier": "web"], rules: []))
        #expect(Self.host(of: "appl-2/web-1", in: packed) == Self.host(of: "appl-2/web-2", in: packed), "pack puts them together")
        let apart = World.applied().plan(Self.site(guests: ["web-1", "web-2"], labels: ["tier": "web"], rules: [Self.apart]))
        let (a, b) = (try #require(Self.host(of: "appl-2/web-1", in: apart)), try #require(Self.host(of: "appl-2/web-2", in: apart)))
        #expect(a != b, "the anti-affinity rule keeps them apart")
    }

    @Test func affinityKeepsVMsTogether() throws {
        let site = Self.site(guests: ["shop-a", "shop-b"], labels: ["app": "shop"], rules: [Self.together])
        var world = World.applied()
        let plan = world.plan(site)
        let hosts = ["shop-a", "shop-b"].map { Self.host(of: "appl-2/\($0)", in: plan) }
        #expect(hosts[0] != nil && hosts[0] == hosts[1], "\(hosts)")
        world.apply(plan)
        #expect(world.plan(site).isClean, "\(world.plan(site).changes.map(\.id))")
    }

    @Test func aRuleAddedLaterMovesTheSecondVMAndKeepsTheFirst() throws {
        var world = World.applied()
        let together = Self.site(guests: ["web-1", "web-2"], labels: ["tier": "web"], rules: [])
        world.apply(world.plan(together))
        let first = try #require(world.domain("appl-2/web-1")?.host)
        #expect(world.domain("appl-2/web-2")?.host == first)
        let ruled = Self.site(guests: ["web-1", "web-2"], labels: ["tier": "web"], rules: [Self.apart])
        let plan = world.plan(ruled)
        let move = try #require(plan.change("migrate VirtualMachine/appl-2/web-2"))
        #expect(move.reason == "anti-affinity rule web-apart: appl-2/web-1 is on \(first)")
        #expect(move.changeClass == .liveMigration && move.destination != first && move.blocked == nil)
        #expect(plan.change("migrate VirtualMachine/appl-2/web-1") == nil, "the first stays where it is")
        world.apply(plan)
        #expect(world.plan(ruled).isClean, "stable: \(world.plan(ruled).changes.map(\.id))")
    }

    @Test func whenNoHostFitsThePlanNamesTheRuleOnEachHost() throws {
        // Four web VMs kept apart on three hosts: the fourth fits nowhere.
        let plan = World.applied().plan(Self.site(guests: ["web-1", "web-2", "web-3", "web-4"], labels: ["tier": "web"], rules: [Self.apart]))
        let problem = try #require(plan.errors.first { $0.resource == "VirtualMachine/appl-2/web-4" })
        for host in ["lab-h1", "lab-h2", "lab-h3"] {
            #expect(problem.message.contains("\(host): anti-affinity rule web-apart:"), "\(problem.message)")
        }
    }

    @Test func theReasonsForManyHostsAreSummed() {
        let hosts = (0..<50).map { i in
            Host(meta: ObjectMeta(name: String(format: "h%02d", i)), uri: "test:///", capacity: .init(memory: .mebibytes(64), vcpus: 1),
                 bridges: [], maintenance: i < 10, domainType: .test, provenance: Provenance(document: SourceLocation(file: "t", line: 1, column: 1)))
        }
        var site = Site()
        site.hosts = hosts
        site.clusters = [Cluster(meta: ObjectMeta(name: "c"), members: .hosts(hosts.map(\.name)), placement: .spread,
                                 provenance: Provenance(document: SourceLocation(file: "t", line: 1, column: 1)))]
        site.virtualMachines = [VirtualMachine(meta: ObjectMeta(name: "big"), project: "p", memory: .mebibytes(128), vcpus: 1,
                                               placement: .cluster("c", hostSelector: [:]),
                                               provenance: Provenance(document: SourceLocation(file: "t", line: 1, column: 1)))]
        let empty = ObservedSite(hosts: Dictionary(uniqueKeysWithValues: hosts.map { ($0.name, HostObservation.reachable([])) }))
        let message = Planner(site: site, observed: empty).plan().errors.first?.message ?? ""
        #expect(message.hasPrefix("fits on no host: h00 is in maintenance;"), "\(message)")
        #expect(message.hasSuffix("… and 45 more (5 in maintenance, 40 without room)"), "\(message)")
        #expect(message.count < 600, "\(message.count) characters")
    }

    /// Generated clusters of hundreds of hosts: every VM placed fits its host's capacity, no
    /// rule is broken, the same inputs give the same plan, and an applied plan plans clean.
    @Test(arguments: [(hosts: 200, vms: 1000, seed: 1), (hosts: 400, vms: 2000, seed: 7)])
    func generatedClustersRespectCapacityAndRulesDeterministicallyAndStably(_ shape: (hosts: Int, vms: Int, seed: UInt64)) async throws {
        // Seconds of planning in a debug build: on a thread of its own, not one of the two the
        // whole test run's tasks share (a deadline test beside it would wait for it).
        try await offThePool { try Self.checkGenerated(shape) }
    }

    static func checkGenerated(_ shape: (hosts: Int, vms: Int, seed: UInt64)) throws {
        var random = SplitMix(seed: shape.seed)
        let provenance = Provenance(document: SourceLocation(file: "generated", line: 1, column: 1))
        var site = Site()
        site.hosts = (0..<shape.hosts).map { i in
            Host(meta: ObjectMeta(name: String(format: "h%03d", i)), uri: "test:///h\(i)",
                 capacity: .init(memory: .mebibytes(UInt64(2048 + Int(random.next() % 4) * 1024)), vcpus: 16, maxGuests: 12),
                 bridges: [], domainType: .test, provenance: provenance)
        }
        let rules = (0..<20).map { PlacementRule(name: "apart-\($0)", kind: .antiAffinity, selector: ["group": "g\($0)"]) }
            + (0..<10).map { PlacementRule(name: "together-\($0)", kind: .affinity, selector: ["pair": "p\($0)"]) }
        site.clusters = [Cluster(meta: ObjectMeta(name: "big"), members: .hosts(site.hosts.map(\.name)), placement: .spread,
                                 rules: rules, provenance: provenance)]
        site.virtualMachines = (0..<shape.vms).map { i in
            var labels: [String: String] = [:]
            if i % 10 == 0 { labels["group"] = "g\(i % 20)" }
            if i % 97 == 0 && i % 10 != 0 { labels["pair"] = "p\(i % 10)" }
            return VirtualMachine(meta: ObjectMeta(name: "vm-\(i)", labels: labels), project: "p", memory: .mebibytes(UInt64(128 << (random.next() % 3))),
                                  vcpus: 1 + Int(random.next() % 2), placement: .cluster("big", hostSelector: [:]), provenance: provenance)
        }
        let empty = ObservedSite(hosts: Dictionary(uniqueKeysWithValues: site.hosts.map { ($0.name, HostObservation.reachable([])) }))
        let plan = Planner(site: site, observed: empty).plan()
        #expect(plan.changes.map(\.id) == Planner(site: site, observed: empty).plan().changes.map(\.id), "deterministic")
        #expect(plan.errors.isEmpty, "\(plan.errors.prefix(3))")
        // Capacity and rules, from where each VM landed.
        var placed: [String: [VirtualMachine]] = [:]
        let byName = Dictionary(uniqueKeysWithValues: site.virtualMachines.map { ($0.id.domainName, $0) })
        for change in plan.changes where change.action == .create { placed[change.host, default: []].append(byName[change.definition!.spec.name]!) }
        for host in site.hosts {
            let guests = placed[host.name] ?? []
            #expect(guests.map(\.memory.bytes).reduce(0, +) <= host.capacity.memory.bytes && guests.count <= 12, "\(host.name) is over capacity")
            for rule in rules where rule.kind == .antiAffinity {
                #expect(guests.filter { rule.applies(to: $0.meta.labels) }.count <= 1, "\(rule.name) broken on \(host.name)")
            }
        }
        for rule in rules where rule.kind == .affinity {
            let hosts = Set(placed.filter { $0.value.contains { rule.applies(to: $0.meta.labels) } }.keys)
            #expect(hosts.count <= 1, "\(rule.name) spans \(hosts.sorted())")
        }
        // Applied, it plans clean: nothing moves.
        let after = applied(plan, to: site, on: empty)
        #expect(Planner(site: site, observed: after).plan().changes.filter { $0.action != .start }.isEmpty)
    }
}

/// Runs CPU-heavy test work on a thread of its own, off Swift's cooperative pool.
func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// A small deterministic generator (SplitMix64), so generated sites are the same every run.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
