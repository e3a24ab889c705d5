import Testing
import VirtformModel
import VirtformPlanning

/// Moves: live migrations of running guests, cold moves of stopped ones, maintenance
/// evacuations, and the preflight that refuses a destination (bridges, disks on the host,
/// hypervisors that cannot migrate, room), on the simulated site.
@Suite("Moves between hosts")
struct MovePlannerTests {
    static func site(_ edit: (inout Site) -> Void) -> Site {
        var site = referenceSite
        edit(&site)
        return site
    }

    static func pin(_ vm: String, to host: String, in site: inout Site) {
        let i = site.virtualMachines.firstIndex { $0.id.description == vm }!
        site.virtualMachines[i].placement = .host(host)
    }

    static func maintenance(_ host: String, in site: inout Site) {
        let i = site.hosts.firstIndex { $0.name == host }!
        site.hosts[i].maintenance = true
    }

    @Test func aStoppedGuestMovesColdAndTheNextPlanIsEmpty() throws {
        var world = World.applied()
        let spare = try #require(world.domain("appl-2/spare-1"))
        let target = spare.host == "lab-h2" ? "lab-h1" : "lab-h2"
        let site = Self.site { Self.pin("appl-2/spare-1", to: target, in: &$0) }
        let plan = world.plan(site)
        let move = try #require(plan.change("migrate VirtualMachine/appl-2/spare-1"))
        #expect(move.changeClass == .coldMove && move.blocked == nil && move.destination == target)
        guard case .migrateDomain(_, let request) = move.operation else { Issue.record("not a move"); return }
        #expect(!request.live && request.uuid == spare.uuid)
        world.apply(plan)
        #expect(world.domain("appl-2/spare-1")?.host == target)
        #expect(world.plan(site).isClean, "\(world.plan(site).changes.map(\.id))")
    }

    /// A cold move killed after the domain was defined on its destination: the copy left on
    /// the source (its mark already names the destination) is removed; a VM defined twice by
    /// hand stays an error.
    @Test func theRestOfAnInterruptedColdMoveIsFinished() throws {
        var world = World.applied()
        let spare = try #require(world.domain("appl-2/spare-1"))
        let target = spare.host == "lab-h2" ? "lab-h1" : "lab-h2"
        let site = Self.site { Self.pin("appl-2/spare-1", to: target, in: &$0) }
        let move = try #require(world.plan(site).change("migrate VirtualMachine/appl-2/spare-1"))
        guard case .migrateDomain(_, let request) = move.operation else { Issue.record("not a move"); return }
        // What the move did before it was killed: the mark here names the destination, the domain is defined there.
        world.changeObserved("appl-2/spare-1") { $0.ownership = request.ownership }
        var arrived = spare
        arrived.host = target
        arrived.spec = request.spec
        arrived.ownership = request.ownership
        world.hosts.hosts[target] = .reachable(world.domains(on: target) + [arrived])
        let plan = world.plan(site)
        #expect(plan.errors.isEmpty, "\(plan.errors)")
        let delete = try #require(plan.change("delete VirtualMachine/appl-2/spare-1 on \(spare.host)"))
        #expect(delete.blocked == nil && delete.reason.contains("interrupted cold move"))
        #expect(!plan.changes.contains { $0.action == .migrate })
        world.apply(plan)
        #expect(world.plan(site).isClean, "\(world.plan(site).changes.map(\.id))")

        // Two copies whose marks each name their own host: nobody can tell which is right.
        var twice = World.applied()
        var copy = try #require(twice.domain("appl-2/spare-1"))
        copy.host = target
        copy.ownership?.host = target
        twice.hosts.hosts[target] = .reachable(twice.domains(on: target) + [copy])
        #expect(twice.plan(site).errors.contains { $0.message.contains("defined on several hosts") })
    }

    @Test func maintenanceEvacuatesAHostAndNamesWhatCannotLeave() throws {
        var world = World.applied()
        let host = try #require(world.domain("appl-1/vm-1")?.host)
        let leaving = world.domains(on: host).compactMap { $0.ownership?.vm.description }.sorted()
        #expect(leaving.count >= 2, "\(leaving)")
        // One of them is pinned to the host: it cannot leave, the others still go.
        let pinned = leaving.first { $0 != "appl-1/vm-1" }!
        let site = Self.site { site in
            Self.maintenance(host, in: &site)
            Self.pin(pinned, to: host, in: &site)
        }
        let plan = world.plan(site)
        let moves = plan.changes.filter { $0.action == .migrate }
        #expect(Set(moves.map(\.resource)) == Set(leaving.map { "VirtualMachine/\($0)" }))
        let stuck = try #require(moves.first { $0.resource == "VirtualMachine/\(pinned)" })
        #expect(stuck.blocked?.contains("no host can take it: its placement allows no other host") == true, "\(stuck.blocked ?? "runnable")")
        #expect(stuck.reason == "host \(host) is in maintenance")
        let going = moves.filter { $0.blocked == nil }
        #expect(going.count == leaving.count - 1 && going.allSatisfy { $0.destination != host && $0.destination != nil })
        world.apply(plan)
        #expect(world.domains(on: host).compactMap { $0.ownership?.vm.description } == [pinned])
        // Nothing new is placed on a host in maintenance.
        #expect(!world.plan(site).changes.contains { $0.action == .create && $0.host == host })
    }

    @Test func aDestinationWithoutTheVMsBridgesIsRefused() throws {
        let world = World.applied()
        let site = Self.site { site in
            Self.pin("appl-2/db-1", to: "lab-h2", in: &site)
            let i = site.hosts.firstIndex { $0.name == "lab-h2" }!
            site.hosts[i].bridges = ["fe0"]
        }
        let move = try #require(world.plan(site).change("migrate VirtualMachine/appl-2/db-1"))
        #expect(move.blocked == "no host can take it: lab-h2 has no bridge be0", "\(move.blocked ?? "runnable")")
        #expect(move.destination == nil)
    }

    @Test func aHypervisorThatCannotMigrateKeepsARunningGuestButMovesAStoppedOne() throws {
        let world = World.applied()
        let site = Self.site { site in
            for i in site.hosts.indices { site.hosts[i].domainType = .test }
            Self.pin("appl-2/db-1", to: "lab-h1", in: &site)
        }
        let move = try #require(world.plan(site).change("migrate VirtualMachine/appl-2/db-1"))
        #expect(move.blocked?.contains("its hypervisor driver (test) cannot migrate a running guest") == true, "\(move.blocked ?? "runnable")")
    }

    @Test func aDiskOnTheHostItselfIsNotMoved() throws {
        var world = World.applied()
        world.changeDefinition("appl-2/db-1") { $0.disks.append(.init(target: "file:/var/lib/local.img", lun: 0, portalHost: "", portalPort: 0)) }
        let site = Self.site { Self.pin("appl-2/db-1", to: "lab-h1", in: &$0) }
        let move = try #require(world.plan(site).change("migrate VirtualMachine/appl-2/db-1"))
        #expect(move.blocked?.contains("disks on the host itself (file:/var/lib/local.img)") == true, "\(move.blocked ?? "runnable")")
    }

    @Test func loadLeavesTheSourceAsItArrivesAtTheDestination() throws {
        // Two hosts of room for one guest each: a swap works only if what leaves is taken off.
        let world = World.applied()
        let host = try #require(world.domain("appl-1/vm-1")?.host)
        let site = Self.site { site in
            Self.maintenance(host, in: &site)
        }
        let first = world.plan(site), second = world.plan(site)
        #expect(first.changes.map(\.id) == second.changes.map(\.id), "deterministic")
        #expect(first.changes.filter { $0.action == .migrate }.map(\.destination) == second.changes.filter { $0.action == .migrate }.map(\.destination))
    }
}
