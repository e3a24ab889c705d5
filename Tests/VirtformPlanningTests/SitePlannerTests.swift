import Foundation
import Testing
import VirtformModel
import VirtformPlanning

/// The rules across systems, on the reference site with every system simulated (`World`).
@Suite("Site planner")
struct SitePlannerTests {
    static func without(_ vm: String, from site: Site = referenceSite) -> Site {
        var site = site
        let id = VMID(parsing: vm)!
        site.virtualMachines.removeAll { $0.id == id }
        site.bindings.removeAll { $0.vm == id }
        return site
    }

    static func protecting(_ vm: String, in site: Site = referenceSite) -> Site {
        var site = site
        let i = site.virtualMachines.firstIndex { $0.id.description == vm }!
        site.virtualMachines[i].deletionProtection = true
        return site
    }

    @Test func fromScratchEverySystemIsPlannedInOrder() throws {
        let plan = World().plan()
        #expect(plan.errors.isEmpty && plan.unknown.isEmpty && plan.unreachable.isEmpty)
        let kinds = Set(plan.changes.map { $0.resource.split(separator: "/")[0] })
        #expect(kinds == ["VirtualMachine", "StorageProject", "Image", "Snapshot", "StorageVolume", "ISCSITarget", "NetworkBinding"])
        let start = try #require(plan.change("start VirtualMachine/appl-1/vm-1"))
        #expect(Set(start.dependsOn).isSuperset(of: ["create VirtualMachine/appl-1/vm-1", "create StorageVolume/appl-1/vm-1",
                                                    "create ISCSITarget/appl-1/vm-1", "create NetworkBinding/appl-1-vm-1-public"]))
        #expect(plan.change("create StorageVolume/appl-1/vm-1")?.dependsOn.sorted()
            == ["create Image/masters/osol-0811", "create Snapshot/masters/osol-0811@version-01", "create StorageProject/appl-1"])
        #expect(plan.change("create ISCSITarget/appl-1/vm-1")?.system == .exportServer("lab-pool"))
        // Every dependency names a change of the plan.
        let ids = Set(plan.changes.map(\.id))
        #expect(plan.changes.allSatisfy { Set($0.dependsOn).isSubset(of: ids) })
        #expect(plan.summary.create == plan.count(.create) && plan.summary.blocked == 0)
    }

    @Test func anAppliedSiteIsClean() {
        let plan = World.applied().plan()
        #expect(plan.isClean, "\(plan.changes.map(\.id))")
    }

    @Test func unreachableHostKeepsEverythingARemovedVMUses() throws {
        var world = World.applied()
        let domain = try #require(world.domain("appl-1/vm-1"))
        world.hosts.hosts[domain.host] = .unreachable(reason: "connection refused")
        let plan = world.plan(Self.without("appl-1/vm-1"), .init(allowDestroy: true))
        let deletes = plan.changes.filter { $0.action == .delete }
        #expect(Set(deletes.map(\.resource)) == ["StorageVolume/appl-1/vm-1", "ISCSITarget/appl-1/vm-1",
                                                 "NetworkBinding/appl-1-vm-1-public", "NetworkBinding/appl-1-vm-1-backend"])
        for delete in deletes {
            #expect(delete.blocked?.contains("host \(domain.host) could not be read and may hold the domain of appl-1/vm-1") == true,
                    "\(delete.id): \(delete.blocked ?? "runnable")")
        }
        #expect(plan.runnable.filter { $0.action == .delete }.isEmpty)
    }

    @Test func deletionProtectionCoversTheWholeVM() {
        let site = Self.protecting("appl-1/vm-1")
        let world = World.applied(site)
        let plan = world.plan(Self.without("appl-1/vm-1", from: site), .init(allowDestroy: true))
        let deletes = plan.changes.filter { $0.action == .delete }
        #expect(deletes.count == 5, "\(deletes.map(\.id))")
        #expect(deletes.allSatisfy { $0.blocked != nil }, "\(deletes.filter { $0.blocked == nil }.map(\.id))")
        #expect(plan.change("delete NetworkBinding/appl-1-vm-1-public")?.blocked?.contains("deletion protection") == true)
    }

    @Test func aRemovedVMGoesWithItsDiskTargetAndReservationsInOrder() throws {
        let plan = World.applied().plan(Self.without("appl-1/vm-1"), .init(allowDestroy: true))
        #expect(plan.blocked.isEmpty, "\(plan.blocked.map { "\($0.id): \($0.reason)" })")
        let domain = "delete VirtualMachine/appl-1/vm-1"
        #expect(plan.change("delete ISCSITarget/appl-1/vm-1")?.dependsOn == [domain])
        #expect(Set(try #require(plan.change("delete StorageVolume/appl-1/vm-1")).dependsOn) == ["delete ISCSITarget/appl-1/vm-1", domain])
        #expect(plan.change("delete NetworkBinding/appl-1-vm-1-public")?.dependsOn == [domain])
        var world = World.applied()
        world.apply(plan)
        #expect(world.plan(Self.without("appl-1/vm-1")).isClean)
    }

    @Test func unreadablePoolMakesVMsWithDisksUnknown() {
        var world = World()
        world.poolUnreachable = "pool not mounted"
        let plan = world.plan()
        #expect(plan.unreachable.map(\.system) == [.pool("lab-pool")])
        #expect(!plan.changes.contains { $0.resource.hasPrefix("VirtualMachine/") || $0.resource.hasPrefix("NetworkBinding/") },
                "\(plan.changes.map(\.id))")
        let withDisks = referenceSite.virtualMachines.filter { $0.disk != nil }.map { "VirtualMachine/\($0.id)" }
        #expect(Set(plan.unknown.map(\.resource)).isSuperset(of: withDisks))
        #expect(plan.unknown.allSatisfy { $0.reason.contains("StoragePool/lab-pool could not be read") })
        #expect(PlanRenderer.text(plan).contains("the plan is incomplete") || !plan.isEmpty)
    }

    @Test func unreadableDHCPServerMakesItsVMsUnknown() {
        var world = World.applied()
        world.dhcpUnreachable = "socket gone"
        // Lower every VM's memory: nothing may be changed for a VM whose DHCP server is unknown.
        var site = referenceSite
        for i in site.virtualMachines.indices { site.virtualMachines[i].memory = .mebibytes(32) }
        let plan = world.plan(site)
        #expect(plan.changes.isEmpty, "\(plan.changes.map(\.id))")
        #expect(plan.unknown.count == site.virtualMachines.filter { !$0.interfaces.isEmpty }.count)
        #expect(!plan.isClean)
        #expect(PlanRenderer.headline(plan).hasPrefix("No changes planned, but the plan is incomplete"))
    }

    @Test func aLostLUNOfAnExistingVMIsRecreatedOnlyWhenAllowed() throws {
        var world = World.applied()
        world.projects["appl-1"]?.volumes.removeAll { $0.name == "vm-1" }
        let plan = world.plan()
        let clone = try #require(plan.change("create StorageVolume/appl-1/vm-1"))
        #expect(clone.reason.hasPrefix("recreate disk from master: its data is lost"))
        #expect(clone.blocked?.contains("--recreate-lost-disks") == true)
        let allowed = world.plan(referenceSite, .init(recreateLostDisks: true))
        #expect(allowed.change("create StorageVolume/appl-1/vm-1")?.blocked == nil)
    }

    @Test func aStartWaitsForTheExportOfItsDiskEvenWhenTheDomainIsDefined() throws {
        var world = World.applied()
        let domain = try #require(world.domain("appl-1/vm-1"))
        world.apply(Change(action: .stop, resource: "VirtualMachine/appl-1/vm-1", system: .host(domain.host),
                           operation: .stopDomain(name: domain.name), reason: "test"))
        world.targets.removeAll { $0.iqn.hasSuffix(":appl-1.vm-1") }
        let plan = world.plan()
        let start = try #require(plan.change("start VirtualMachine/appl-1/vm-1"))
        #expect(start.dependsOn == ["create ISCSITarget/appl-1/vm-1"])
    }

    @Test func imagesAndSnapshotsThatLeaveTheManifestsAreDeletedLastAndOnlyWhenUnused() throws {
        var world = World.applied()
        world.apply(Change(action: .create, resource: "Image/masters/old", system: .pool("lab-pool"),
                           operation: .createImage(project: "masters", name: "old", size: 1 << 20, source: nil), reason: "test"))
        let old = SnapshotReference(project: "masters", image: "old", snapshot: "v1")
        world.apply(Change(action: .create, resource: "Snapshot/\(old)", system: .pool("lab-pool"),
                           operation: .createSnapshot(reference: old), reason: "test"))
        let gated = world.plan()
        #expect(gated.change("delete Image/masters/old")?.blocked == "deleting an image needs --allow-destroy")
        let plan = world.plan(referenceSite, .init(allowDestroy: true))
        #expect(plan.change("delete Snapshot/masters/old@v1")?.blocked == nil)
        #expect(plan.change("delete Image/masters/old")?.dependsOn == ["delete Snapshot/masters/old@v1"])

        // The reference master's snapshot stays while LUNs cloned from it stay.
        var site = referenceSite
        site.images.removeAll { $0.meta.name == "osol-0811" }
        let inUse = world.plan(site, .init(allowDestroy: true))
        #expect(inUse.change("delete Snapshot/masters/osol-0811@version-01")?.blocked?.hasPrefix("LUNs cloned from it remain") == true)
        #expect(inUse.change("delete Image/masters/osol-0811")?.blocked != nil)
    }

    @Test func aChangeWaitingForABlockedOneIsBlocked() throws {
        var world = World.applied()
        // A snapshot that cannot be taken (its image is in use by a running guest) holds back the clone made from it.
        var site = referenceSite
        let i = try #require(site.images.firstIndex { $0.meta.name == "osol-0811" })
        site.images[i].snapshots.append("version-02")
        let vm = try #require(site.virtualMachines.firstIndex { $0.id.description == "appl-1/vm-1" })
        site.virtualMachines[vm].disk?.source = SnapshotReference(project: "masters", image: "osol-0811", snapshot: "version-02")
        world.projects["appl-1"]?.volumes.removeAll { $0.name == "vm-1" }
        world.served[World.iqnPrefix + ":masters.osol-0811"] = .size(0)
        let masterTarget = World.iqnPrefix + ":masters.osol-0811"
        // Pretend a running domain uses the master itself.
        var domain = try #require(world.domain("appl-2/db-1"))
        domain.spec.disks.append(DomainSpec.DiskSpec(target: masterTarget, lun: 1, portalHost: "127.0.0.1", portalPort: 3260))
        domain.state = .running
        world.hosts.hosts[domain.host] = .reachable(world.domains(on: domain.host).map { $0.name == domain.name ? domain : $0 })
        let plan = world.plan(site, .init(recreateLostDisks: true))
        #expect(plan.change("create Snapshot/masters/osol-0811@version-02")?.blocked?.contains("a running guest uses") == true)
        #expect(plan.change("create StorageVolume/appl-1/vm-1")?.blocked == "waits for create Snapshot/masters/osol-0811@version-02, which is not applied")
    }

    @Test func aRunningGuestsChangesAreLabelledByHowTheyTakeEffect() throws {
        let world = World.applied()
        var site = referenceSite
        let i = try #require(site.virtualMachines.firstIndex { $0.id.description == "appl-1/vm-1" })
        site.virtualMachines[i].memory = .mebibytes(32)
        site.virtualMachines[i].vcpus += 1
        let update = try #require(world.plan(site).change("update VirtualMachine/appl-1/vm-1"))
        #expect(update.fields.map(\.effect) == [.live, .restart])
        guard case .defineDomain(_, _, true, let live) = update.operation else { Issue.record("\(update.operation)"); return }
        #expect(live == LiveUpdate(memoryKiB: 32 << 10))
    }

    @Test func aMoveShowsTheVMsOtherChanges() throws {
        let world = World.applied()
        var site = referenceSite
        let i = try #require(site.virtualMachines.firstIndex { $0.name == "db-1" })
        site.virtualMachines[i].placement = .host("lab-h1")
        site.virtualMachines[i].memory = .mebibytes(32)
        let migrate = try #require(world.plan(site).changes.first { $0.action == .migrate })
        #expect(migrate.fields.map(\.field) == ["memory"])
    }

    @Test func aReservationLeftInASubnetNoNetworkNamesIsPlannedAway() throws {
        var world = World.applied()
        let stray = Reservation(subnet: IPv4Subnet(parsing: "10.9.0.0/24")!, mac: MACAddress(parsing: "02:00:00:00:99:01")!,
                                address: IPv4Address(parsing: "10.9.0.5")!, hostname: "old",
                                owner: OwnerMark(binding: "old-binding", vm: VMID(project: "appl-1", name: "old"), interface: "lan", site: "lab"))
        world.reservations.append(stray)
        let plan = world.plan(referenceSite, .init(allowDestroy: true))
        let delete = try #require(plan.change("delete NetworkBinding/old-binding"))
        #expect(delete.blocked == nil)
        #expect(delete.operation == .reservation(change: .remove(stray)))
    }

    @Test func whatThePoolsDriverCannotDoIsBlockedInThePlan() throws {
        var world = World()
        world.canImport = false
        var site = referenceSite
        let i = try #require(site.images.firstIndex { $0.meta.name == "osol-0811" })
        site.images[i].source = "/srv/images/osol-0811.raw"
        let plan = world.plan(site)
        let create = try #require(plan.change("create Image/masters/osol-0811"))
        #expect(create.blocked?.contains("cannot import images") == true)
        // And everything cloned from it waits with it, instead of failing at apply.
        #expect(plan.change("create StorageVolume/appl-1/vm-1")?.blocked?.hasPrefix("waits for") == true)
    }

    @Test func everyOperationSurvivesASavedPlan() throws {
        var world = World.applied()
        world.projects["appl-1"]?.volumes.removeAll { $0.name == "vm-2" }
        let plan = world.plan(Self.without("appl-1/vm-1"), .init(allowDestroy: true, recreateLostDisks: true))
        let decoded = try PlanRenderer.decode(Data(PlanRenderer.json(plan).utf8))
        #expect(decoded.changes == plan.changes)
        #expect(decoded.formatVersion == 2 && decoded.summary == plan.summary)
    }
}

extension Site {
    func withHosts(_ hosts: [VirtformModel.Host]) -> Site {
        var site = self
        site.hosts = hosts
        return site
    }
}

/// What a running guest runs against its definition: live changes, restart pending, opt-in restarts.
@Suite("Live and pending changes")
struct LiveChangeTests {
    static func with(_ vm: String, _ body: (inout VirtualMachine) -> Void) -> Site {
        var site = referenceSite
        let i = site.virtualMachines.firstIndex { $0.id.description == vm }!
        body(&site.virtualMachines[i])
        return site
    }

    @Test func aLoweredMemoryIsMadeLiveAndNothingIsPending() throws {
        var world = World.applied()
        let site = Self.with("appl-1/vm-1") { $0.memory = .mebibytes(32) }
        let plan = world.plan(site)
        let update = try #require(plan.change("update VirtualMachine/appl-1/vm-1"))
        #expect(update.fields.map(\.effect) == [.live])
        #expect(plan.change("restart VirtualMachine/appl-1/vm-1") == nil)
        world.apply(plan)
        #expect(world.domain("appl-1/vm-1")?.live?.currentMemoryKiB == 32 << 10)
        #expect(world.plan(site).isClean)
    }

    @Test func aChangeThatCannotBeLiveIsPendingUntilTheOptInRestart() throws {
        var world = World.applied()
        let site = Self.with("appl-1/vm-1") { $0.vcpus = 2 }
        let plan = world.plan(site)
        #expect(plan.change("update VirtualMachine/appl-1/vm-1")?.fields.map(\.effect) == [.restart])
        let restart = try #require(plan.change("restart VirtualMachine/appl-1/vm-1"))
        #expect(restart.blocked == "restarting a guest needs --allow-restart (or spec.allowRestart: true)")
        #expect(restart.dependsOn == ["update VirtualMachine/appl-1/vm-1"])
        world.apply(plan)

        // The definition is written; the running guest still has one vCPU, and says so.
        let pending = world.plan(site)
        #expect(pending.changes.map(\.id) == ["restart VirtualMachine/appl-1/vm-1"])
        #expect(pending.changes[0].fields == [FieldChange(field: "vcpus", before: "1", after: "2", effect: .restart)])
        #expect(!pending.isClean)

        let allowed = world.plan(site, .init(allowRestart: true))
        #expect(allowed.runnable.map(\.id) == ["restart VirtualMachine/appl-1/vm-1"])
        world.apply(allowed)
        #expect(world.plan(site).isClean)
    }

    @Test func aGuestThatDoesNotFollowTheBalloonIsPendingARestart() throws {
        var world = World.applied()
        let site = Self.with("appl-1/vm-1") { $0.memory = .mebibytes(32) }
        world.apply(world.plan(site))
        // The guest has no balloon driver: it keeps all of its memory.
        world.changeLive("appl-1/vm-1") { $0.currentMemoryKiB = 64 << 10 }
        let plan = world.plan(site)
        #expect(plan.change("update VirtualMachine/appl-1/vm-1")?.fields
            == [FieldChange(field: "memory", before: "64MiB in use", after: "32MiB", effect: .live)])
        let restart = try #require(plan.change("restart VirtualMachine/appl-1/vm-1"))
        #expect(restart.fields.map(\.field) == ["memory"] && restart.blocked != nil)
    }

    @Test func aDiskTheRunningGuestStillUsesIsNotDeleted() throws {
        var world = World.applied()
        let site = Self.with("appl-1/vm-1") { $0.disk = nil }
        world.apply(world.plan(site, .init(allowDestroy: true)))
        // The definition has no disk now; the running guest still has it until it restarts.
        let plan = world.plan(site, .init(allowDestroy: true))
        #expect(plan.change("delete StorageVolume/appl-1/vm-1")?.blocked == "a defined domain still uses it")
        #expect(plan.change("restart VirtualMachine/appl-1/vm-1")?.fields.map(\.field) == ["disks"])
        world.apply(world.plan(site, .init(allowDestroy: true, allowRestart: true)))
        let after = world.plan(site, .init(allowDestroy: true))
        #expect(after.change("delete StorageVolume/appl-1/vm-1")?.blocked == nil)
    }

    @Test func aVMThatAllowsRestartsIsRestartedWithoutTheFlag() throws {
        let world = World.applied()
        let site = Self.with("appl-1/vm-1") { $0.vcpus = 2; $0.allowRestart = true }
        let plan = world.plan(site)
        #expect(plan.change("restart VirtualMachine/appl-1/vm-1")?.blocked == nil)
        let other = Self.with("appl-1/vm-2") { $0.vcpus = 2 }
        #expect(world.plan(other).change("restart VirtualMachine/appl-1/vm-2")?.blocked != nil)
    }

    @Test func memoryAboveTheLiveMaximumWaitsForARestart() throws {
        let world = World.applied()
        let plan = world.plan(Self.with("appl-1/vm-1") { $0.memory = .mebibytes(128) })
        #expect(plan.change("update VirtualMachine/appl-1/vm-1")?.fields.map(\.effect) == [.restart])
        #expect(plan.change("restart VirtualMachine/appl-1/vm-1")?.fields.map(\.field) == ["memory"])
    }

    @Test func vCPUsRaisedWithinTheMaximumAreHotPlugged() throws {
        var world = World.applied(Self.with("appl-1/vm-1") { $0.maxVCPUs = 4 })
        let site = Self.with("appl-1/vm-1") { $0.vcpus = 3; $0.maxVCPUs = 4 }
        let plan = world.plan(site)
        let update = try #require(plan.change("update VirtualMachine/appl-1/vm-1"))
        #expect(update.fields == [FieldChange(field: "vcpus", before: "1 (max 4)", after: "3 (max 4)", effect: .live)])
        guard case .defineDomain(_, _, _, let live) = update.operation else { Issue.record("\(update.operation)"); return }
        #expect(live == LiveUpdate(vcpus: 3))
        #expect(plan.change("restart VirtualMachine/appl-1/vm-1") == nil)
        world.apply(plan)
        #expect(world.domain("appl-1/vm-1")?.live?.vcpus == 3)
        #expect(world.plan(site).isClean)
    }

    @Test func fewerVCPUsOrAHigherMaximumWaitForARestart() throws {
        let world = World.applied(Self.with("appl-1/vm-1") { $0.vcpus = 2; $0.maxVCPUs = 4 })
        // QEMU cannot unplug a CPU from a `pc` guest: lowering waits for the next start.
        var plan = world.plan(Self.with("appl-1/vm-1") { $0.vcpus = 1; $0.maxVCPUs = 4 })
        #expect(plan.change("update VirtualMachine/appl-1/vm-1")?.fields.map(\.effect) == [.restart])
        #expect(plan.change("restart VirtualMachine/appl-1/vm-1")?.fields
            == [FieldChange(field: "vcpus", before: "2 (max 4)", after: "1 (max 4)", effect: .restart)])
        // A maximum above what the guest started with cannot be had live either; the vCPUs
        // within the old maximum are still hot-plugged now.
        plan = world.plan(Self.with("appl-1/vm-1") { $0.vcpus = 4; $0.maxVCPUs = 8 })
        guard case .defineDomain(_, _, _, let live)? = plan.change("update VirtualMachine/appl-1/vm-1")?.operation else {
            Issue.record("no update"); return
        }
        #expect(live == LiveUpdate(vcpus: 4))
        #expect(plan.change("restart VirtualMachine/appl-1/vm-1")?.fields
            == [FieldChange(field: "vcpus", before: "4", after: "4 (max 8)", effect: .restart)])
        // A lower maximum, still above what the guest needs, is no difference to what runs.
        plan = world.plan(Self.with("appl-1/vm-1") { $0.vcpus = 2; $0.maxVCPUs = 3 })
        #expect(plan.change("update VirtualMachine/appl-1/vm-1")?.fields.map(\.effect) == [.applied])
        #expect(plan.change("restart VirtualMachine/appl-1/vm-1") == nil)
    }

    @Test func aNewMACIsHotPluggedIntoTheRunningGuest() throws {
        var world = World.applied()
        let old = try #require(world.domain("appl-1/vm-1")?.spec.interfaces.first)
        let mac = try #require(MACAddress(parsing: "52:54:00:12:34:56"))
        let site = Self.with("appl-1/vm-1") { $0.interfaces[0].mac = mac }
        let plan = world.plan(site)
        let update = try #require(plan.change("update VirtualMachine/appl-1/vm-1"))
        #expect(update.fields.map(\.field) == ["interfaces"] && update.fields.map(\.effect) == [.live])
        guard case .defineDomain(_, _, _, let live) = update.operation else { Issue.record("\(update.operation)"); return }
        #expect(live?.detach == [old])
        #expect(live?.attach == [DomainSpec.InterfaceSpec(mac: mac.description, bridge: old.bridge)])
        #expect(plan.change("restart VirtualMachine/appl-1/vm-1") == nil)
        world.apply(plan)
        // The new interface is last on the running guest's bus; the order is no difference.
        #expect(world.domain("appl-1/vm-1")?.live?.interfaces.last?.mac == mac.description)
        #expect(world.plan(site).isClean)
    }

    @Test func interfacesWaitForARestartWhereTheyCannotBeHotPlugged() throws {
        let mac = try #require(MACAddress(parsing: "52:54:00:12:34:56"))
        let site = Self.with("appl-1/vm-1") { $0.interfaces[0].mac = mac }
        // A guest that started without ACPI (defined by an earlier virtform) has no PCI hot-plug.
        var world = World.applied()
        world.changeObserved("appl-1/vm-1") { $0.hotplug = false }
        var plan = world.plan(site)
        #expect(plan.change("update VirtualMachine/appl-1/vm-1")?.fields.map(\.effect) == [.restart])
        #expect(plan.change("restart VirtualMachine/appl-1/vm-1")?.fields.map(\.field) == ["interfaces"])

        // libvirt's test driver cannot attach devices at all.
        var testDriver = site
        for i in testDriver.hosts.indices { testDriver.hosts[i].domainType = .test }
        world = World.applied(Self.with("appl-1/vm-1") { _ in } .withHosts(testDriver.hosts))
        plan = world.plan(testDriver)
        #expect(plan.change("restart VirtualMachine/appl-1/vm-1")?.fields.map(\.field) == ["interfaces"])

        // A guest that does not let go of a detached interface: the restart is what removes it.
        world = World.applied()
        world.stuckDetaching = true
        world.apply(world.plan(site))
        plan = world.plan(site)
        #expect(plan.change("update VirtualMachine/appl-1/vm-1") == nil)
        #expect(plan.change("restart VirtualMachine/appl-1/vm-1")?.fields.map(\.field) == ["interfaces"])
    }

    @Test func aBalloonOrADefinitionChangedByHandIsSeen() throws {
        var world = World.applied()
        // `virsh setmem --live`: the running guest has less than the manifest says.
        world.changeLive("appl-1/vm-1") { $0.currentMemoryKiB = 32 << 10 }
        let update = try #require(world.plan().change("update VirtualMachine/appl-1/vm-1"))
        #expect(update.fields == [FieldChange(field: "memory", before: "32MiB in use", after: "64MiB", effect: .live)])

        // `virsh setmem --config` and a CD-ROM attached with --config: the next start would differ.
        world = World.applied()
        world.changeDefinition("appl-1/vm-2") { spec in
            spec.currentMemoryKiB = 48 << 10
            spec.disks.append(DomainSpec.DiskSpec(target: "cdrom:/srv/iso/tools.iso", lun: 0, portalHost: "", portalPort: 0))
        }
        let drift = try #require(world.plan().change("update VirtualMachine/appl-1/vm-2"))
        #expect(drift.fields.map(\.field) == ["memory", "disks"])
        #expect(drift.fields.allSatisfy { $0.effect == .applied }, "the running guest already has what the manifest says")
    }
}
