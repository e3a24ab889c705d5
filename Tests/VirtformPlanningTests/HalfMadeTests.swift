import Testing
import VirtformModel
@testable import VirtformPlanning

/// What a killed apply leaves is recognised as the site's own unfinished work: finished or
/// removed by the next apply, never reported as a stranger's.
@Suite("Half-made work")
struct HalfMadeTests {
    @Test func aTargetWithoutItsLUNIsExportedAgainNotAnError() throws {
        var world = World.applied()
        // Killed between `tgtadm --op new --mode target` and adding LUN 1.
        let i = try #require(world.targets.firstIndex { $0.iqn.hasSuffix(":appl-1.vm-1") })
        world.targets[i] = ObservedTarget(tid: world.targets[i].tid, iqn: world.targets[i].iqn, luns: [], boundInitiators: [],
                                          connectedInitiators: [], isOwned: false, halfMade: true)
        let plan = world.plan()
        #expect(plan.errors.isEmpty, "\(plan.errors)")
        #expect(plan.foreign.isEmpty)
        let reexport = try #require(plan.change("update ISCSITarget/appl-1/vm-1"))
        #expect(reexport.fields.map(\.field) == ["LUN 1"] && reexport.blocked == nil)
        world.apply(plan)
        #expect(world.plan().isClean)
    }

    @Test func aHalfMadeTargetInAnotherSitesProjectIsNotThisSites() throws {
        var world = World.applied()
        world.targets.append(ObservedTarget(tid: 99, iqn: "\(World.iqnPrefix):b-apps.web-1", luns: [], boundInitiators: [],
                                            connectedInitiators: [], isOwned: false, halfMade: true))
        let plan = world.plan(referenceSite, .init(allowDestroy: true))
        #expect(!plan.changes.contains { $0.resource.contains("b-apps") })
        #expect(plan.isClean, "\(plan.changes.map(\.id)) \(plan.errors)")
    }

    @Test func temporariesOfThisSiteAreRemovedOthersAreLeft() throws {
        var world = World.applied()
        world.halfMade = [
            HalfMadeObject(path: ".virtform-tmp-@lab@appl-3-k2", site: "lab"),
            HalfMadeObject(path: "appl-1/.virtform-tmp-@lab@vm-9.img-x1", site: "lab"),
            HalfMadeObject(path: ".virtform-tmp-@other@apps-z9", site: "other"),
            HalfMadeObject(path: ".virtform-tmp-appl-1-old", site: nil),
        ]
        let plan = world.plan()
        let removal = try #require(plan.change("delete HalfMade/lab-pool"))
        #expect(removal.blocked == nil, "they never became objects: no --allow-destroy needed")
        guard case .removeHalfMade(let paths) = removal.operation else { Issue.record("\(removal.operation)"); return }
        #expect(paths == [".virtform-tmp-@lab@appl-3-k2", "appl-1/.virtform-tmp-@lab@vm-9.img-x1"])
        world.apply(plan)
        #expect(world.plan().isClean)
        #expect(world.halfMade.map(\.site) == ["other", nil])
    }
}

extension HalfMadeTests {
    @Test func aDHCPWriteAnApplyDidNotFinishIsFinished() throws {
        var world = World.applied()
        world.dhcpUnfinished = true
        let plan = world.plan()
        let finish = try #require(plan.change("update DHCPServer/\(World.dhcpServer)/\(World.endpoint)"))
        #expect(finish.operation == .finishDHCPWrite(endpoint: World.endpoint) && finish.blocked == nil)
        world.apply(plan)
        #expect(world.plan().isClean)
    }
}

extension HalfMadeTests {
    @Test func aSnapshotLeftWritableIsSealedAgain() throws {
        var world = World.applied()
        let project = try #require(world.projects.values.first { !$0.snapshots.isEmpty })
        world.projects[project.name]!.snapshots[0].sealed = false
        let reference = project.snapshots[0].reference
        let plan = world.plan()
        let seal = try #require(plan.change("update Snapshot/\(reference)"))
        #expect(seal.operation == .sealSnapshot(reference: reference) && seal.blocked == nil)
        world.apply(plan)
        #expect(world.plan().isClean)
    }
}
