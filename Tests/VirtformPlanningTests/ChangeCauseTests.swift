import Testing
import VirtformModel
import VirtformPlanning

/// Telling "changed outside virtform since it was applied" from "manifest edited, not applied
/// yet", from the marks alone, on the simulated site.
@Suite("Change causes")
struct ChangeCauseTests {
    static func editing(_ vm: String, in site: Site = referenceSite, _ body: (inout VirtualMachine) -> Void) -> Site {
        var site = site
        let i = site.virtualMachines.firstIndex { $0.id.description == vm }!
        body(&site.virtualMachines[i])
        return site
    }

    @Test func aNewSiteIsAllUnapplied() {
        let plan = World().plan()
        #expect(!plan.changes.isEmpty && plan.changes.allSatisfy { $0.cause == .unapplied },
                "\(plan.changes.filter { $0.cause != .unapplied }.map(\.id))")
        #expect(plan.summary.outside == 0 && plan.summary.unapplied == plan.changes.count)
    }

    @Test func aDefinitionEditedByHandIsOutsideAndAManifestEditIsUnapplied() throws {
        var world = World.applied()
        world.changeDefinition("appl-1/vm-1") { $0.memoryKiB += 1024 }
        let outside = try #require(world.plan().change("update VirtualMachine/appl-1/vm-1"))
        #expect(outside.cause == .outside)

        let edited = Self.editing("appl-1/vm-2") { $0.memory = ByteSize(bytes: $0.memory.bytes * 2) }
        let fresh = World.applied()
        let unapplied = try #require(fresh.plan(edited).change("update VirtualMachine/appl-1/vm-2"))
        #expect(unapplied.cause == .unapplied)
        // Both at once: the hand edit wins, so a drift check still fires.
        #expect(world.plan(edited).change("update VirtualMachine/appl-1/vm-2")?.cause == .unapplied)
        #expect(world.plan(edited).change("update VirtualMachine/appl-1/vm-1")?.cause == .outside)
    }

    @Test func aLiveChangeByHandIsOutside() throws {
        var world = World.applied()
        world.changeLive("appl-1/vm-1") { $0.currentMemoryKiB /= 2 }
        let update = try #require(world.plan().change("update VirtualMachine/appl-1/vm-1"))
        #expect(update.cause == .outside)
    }

    @Test func powerChangesAreToldByTheMarksPowerState() throws {
        // A guest shut down by hand: the mark says virtform left it running.
        var world = World.applied()
        world.changeObserved("appl-1/vm-1") { domain in
            domain.state = .shutoff
            domain.live = nil
        }
        let start = try #require(world.plan().change("start VirtualMachine/appl-1/vm-1"))
        #expect(start.cause == .outside)
        if case .startDomain(_, let mark) = start.operation { #expect(mark?.power == .running) } else { Issue.record("not a start") }

        // Stopped through the manifest, then started again by editing it back.
        let stopped = Self.editing("appl-1/vm-1") { $0.power = .stopped }
        var applied = World.applied()
        let stop = try #require(applied.plan(stopped).change("stop VirtualMachine/appl-1/vm-1"))
        #expect(stop.cause == .unapplied)
        applied.apply(applied.plan(stopped))
        #expect(applied.domain("appl-1/vm-1")?.ownership?.power == .stopped, "the stop writes the mark")
        #expect(applied.plan(stopped).isClean)
        #expect(applied.plan().change("start VirtualMachine/appl-1/vm-1")?.cause == .unapplied)
        // Started by hand while the manifest says stopped.
        applied.changeObserved("appl-1/vm-1") { domain in
            domain.state = .running
            domain.live = domain.spec
        }
        #expect(applied.plan(stopped).change("stop VirtualMachine/appl-1/vm-1")?.cause == .outside)
    }

    @Test func aMarkWithoutPowerCannotTell() throws {
        var world = World.applied()
        world.changeObserved("appl-1/vm-1") { domain in
            domain.state = .shutoff
            domain.live = nil
            domain.ownership?.power = nil
        }
        #expect(world.plan().change("start VirtualMachine/appl-1/vm-1")?.cause == .unknown)
    }

    @Test func aLUNRemovedByHandIsOutsideAndSoIsItsTarget() throws {
        var world = World.applied()
        world.projects["appl-1"]?.volumes.removeAll { $0.name == "vm-1" }
        let plan = world.plan(referenceSite, .init(recreateLostDisks: true))
        #expect(plan.change("create StorageVolume/appl-1/vm-1")?.cause == .outside)
        #expect(plan.change("update ISCSITarget/appl-1/vm-1")?.cause == .outside)
    }

    @Test func aTargetRemovedByHandIsOutside() throws {
        var world = World.applied()
        world.targets.removeAll { $0.iqn.hasSuffix("appl-1.vm-1") }
        #expect(world.plan().change("create ISCSITarget/appl-1/vm-1")?.cause == .outside)
    }

    @Test func aReservationEditedByHandIsOutsideAndABindingEditIsUnapplied() throws {
        var world = World.applied()
        let i = try #require(world.reservations.firstIndex { $0.owner?.binding == "appl-1-vm-1-public" })
        world.reservations[i].address = IPv4Address(parsing: "192.0.2.250")!
        #expect(world.plan().change("update NetworkBinding/appl-1-vm-1-public")?.cause == .outside)

        var site = referenceSite
        let b = try #require(site.bindings.firstIndex { $0.meta.name == "appl-1-vm-1-public" })
        site.bindings[b].hostname = "renamed"
        #expect(World.applied().plan(site).change("update NetworkBinding/appl-1-vm-1-public")?.cause == .unapplied)

        // A reservation removed by hand leaves no trace: it cannot be told from a new binding.
        var removed = World.applied()
        removed.reservations.removeAll { $0.owner?.binding == "appl-1-vm-1-public" }
        #expect(removed.plan().change("create NetworkBinding/appl-1-vm-1-public")?.cause == .unknown)
    }

    @Test func aRemovedVMIsUnapplied() {
        let plan = World.applied().plan(SitePlannerTests.without("appl-1/vm-1"), .init(allowDestroy: true))
        let deletes = plan.changes.filter { $0.action == .delete }
        #expect(!deletes.isEmpty && deletes.allSatisfy { $0.cause == .unapplied })
    }

    @Test func aDomainUndefinedByHandWhileItsDiskIsThereCannotBeTold() throws {
        var world = World.applied()
        let domain = try #require(world.domain("appl-1/vm-1"))
        world.hosts.hosts[domain.host] = .reachable(world.domains(on: domain.host).filter { $0.name != domain.name })
        #expect(world.plan().change("create VirtualMachine/appl-1/vm-1")?.cause == .unknown)
    }
}
