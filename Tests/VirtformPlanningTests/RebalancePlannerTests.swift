import Testing
import VirtformModel
import VirtformPlanning

/// Rebalancing (a cluster's `rebalance`): a bounded batch of live migrations from the most to
/// the least loaded host when their memory use is further apart than the threshold, each with
/// its reason, never moving a guest again within its cooldown.
@Suite("Rebalancing")
struct RebalancePlannerTests {
    static let provenance = Provenance(document: SourceLocation(file: "t", line: 1, column: 1))

    /// Two 1 GiB hosts, four 128 MiB guests; pinned to h1 (as applied), or in cluster `c`.
    static func site(mode: Rebalance.Mode, pinned: Bool, perRun: Int = 1, cooldown: Int = 3600) -> Site {
        var site = Site()
        site.hosts = ["h1", "h2"].map {
            Host(meta: ObjectMeta(name: $0), uri: "qemu:///\($0)", capacity: .init(memory: .gibibytes(1), vcpus: 16), bridges: [],
                 domainType: .qemu, provenance: provenance)
        }
        site.clusters = [Cluster(meta: ObjectMeta(name: "c"), members: .hosts(["h1", "h2"]), placement: .spread,
                                 rebalance: Rebalance(mode: mode, thresholdPercent: 20, maxMigrationsPerRun: perRun, cooldownSeconds: cooldown),
                                 provenance: provenance)]
        site.virtualMachines = (1...4).map {
            VirtualMachine(meta: ObjectMeta(name: "g\($0)"), project: "p", memory: .mebibytes(128), vcpus: 1,
                           placement: pinned ? .host("h1") : .cluster("c", hostSelector: [:]), provenance: provenance)
        }
        return site
    }

    /// All four guests running on h1, as an earlier apply left them.
    static func world() -> World {
        var world = World(hosts: ObservedSite(hosts: ["h1": .reachable([]), "h2": .reachable([])]))
        world.apply(world.plan(site(mode: .off, pinned: true), .init(now: 1_000)))
        return world
    }

    @Test func offMovesNothing() {
        #expect(Self.world().plan(Self.site(mode: .off, pinned: false), .init(now: 10_000)).isClean)
    }

    @Test func automaticMovesOneAtATimeUntilTheGapIsWithinTheThreshold() throws {
        var world = Self.world()
        let site = Self.site(mode: .automatic, pinned: false)
        var now = 10_000
        var moves: [String] = []
        for _ in 0..<5 {
            let plan = world.plan(site, .init(now: now))
            let batch = plan.changes.filter { $0.action == .migrate }
            #expect(batch.count <= 1, "one per run")
            guard let move = batch.first else { break }
            #expect(move.blocked == nil && move.host == "h1" && move.destination == "h2" && move.changeClass == .liveMigration)
            #expect(move.reason.hasPrefix("rebalance: h1 uses "), "\(move.reason)")
            moves.append(move.resource)
            world.apply(plan)
            now += 10
        }
        // 50% against 0%: two moves make it 25% each.
        #expect(moves == ["VirtualMachine/p/g1", "VirtualMachine/p/g2"], "\(moves)")
        #expect(world.domains(on: "h2").count == 2 && world.domains(on: "h1").count == 2)
    }

    @Test func aGuestMovedWithinItsCooldownIsNotMovedAgain() throws {
        var world = Self.world()
        // g1 moved to h2, then h2 got busy: moving it back would undo a move of a moment ago.
        world.apply(world.plan(Self.site(mode: .automatic, pinned: false), .init(now: 10_000)))
        #expect(world.domain("p/g1")?.host == "h2" && world.domain("p/g1")?.ownership?.movedAt == 10_000)
        var site = Self.site(mode: .automatic, pinned: false)
        site.hosts[1].capacity.memory = .mebibytes(256)  // h2 is now 50% used by g1 alone
        site.hosts[0].capacity.memory = .gibibytes(4)    // h1 about 9%
        let soon = world.plan(site, .init(now: 10_060))
        #expect(!soon.changes.contains { $0.action == .migrate }, "\(soon.changes.map(\.id))")
        let later = world.plan(site, .init(now: 10_000 + 3_601))
        #expect(later.change("migrate VirtualMachine/p/g1")?.destination == "h1", "\(later.changes.map(\.id))")
    }

    @Test func manualIsShownButCarriedOutOnlyWhenAllowed() throws {
        let world = Self.world()
        let site = Self.site(mode: .manual, pinned: false)
        let shown = try #require(world.plan(site, .init(now: 10_000)).changes.first { $0.action == .migrate })
        #expect(shown.blocked?.contains("--allow-rebalance") == true)
        let allowed = try #require(world.plan(site, .init(allowRebalance: true, now: 10_000)).changes.first { $0.action == .migrate })
        #expect(allowed.blocked == nil)
    }
}
