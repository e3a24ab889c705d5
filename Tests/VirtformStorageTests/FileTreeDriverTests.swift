import Foundation
import ISCSI
import Testing
import VirtformLab
import VirtformModel
import VirtformStorage
import VirtformSystem

#if canImport(Glibc)
    import Glibc
#endif

@Suite(.disabled(if: storageUnavailable != nil, Comment(rawValue: storageUnavailable ?? "")))
struct BtrfsPoolTests {
    let master = SnapshotReference(project: "masters", image: "osol", snapshot: "v1")

    /// A 1 GiB master with data at both ends, snapshotted as masters/osol@v1.
    func makeMaster(_ pool: FileTreeDriver, size: UInt64 = gib) async throws {
        try await pool.probe()
        try await pool.createProject("masters")
        try await pool.createImage(project: "masters", name: "osol", size: size)
        let file = pool.backingPath(project: "masters", volume: "osol")
        try writePattern(file, offset: 0, count: 4 << 20)
        try writePattern(file, offset: size - mib, count: 1 << 20)
        try await pool.createSnapshot(master)
    }

    /// Marks an earlier virtform wrote without a site are rewritten once with the adopting
    /// site's name: on projects, images, LUNs and (immutable) snapshots, which stay immutable.
    @Test func marksWithoutASiteAreAdoptedOnce() async throws {
        try await StorageFixture.with { env in
            let legacy = env.pool  // a driver without a site: what an earlier virtform wrote
            try await makeMaster(legacy, size: 64 * mib)
            try await legacy.createProject("appl-1")
            try await legacy.clone(from: master, project: "appl-1", name: "vm-1", size: nil)
            let before = try await legacy.observe()
            let marks = before.projects.flatMap { project in
                [project.ownership.mark] + project.volumes.map(\.ownership.mark) + project.snapshots.map(\.ownership.mark)
            }.compactMap { $0 }
            #expect(marks.count == 5 && marks.allSatisfy { $0.site == nil })

            let site = FileTreeDriver(flavor: .btrfs, poolName: "test-pool", path: env.lab.mountPoint, site: "lab")
            try await site.adopt(marks)
            let after = try await site.observe()
            let adopted = after.projects.flatMap { project in
                [project.ownership.mark] + project.volumes.map(\.ownership.mark) + project.snapshots.map(\.ownership.mark)
            }.compactMap { $0 }
            #expect(adopted.count == 5 && adopted.allSatisfy { $0.site == "lab" }, "\(adopted)")
            #expect(after.volume(project: "appl-1", name: "vm-1")?.origin == master)
            let snapshot = "\(env.lab.mountPoint)/masters/.snapshots/osol@v1.img"
            let attributes = try await sh(["lsattr", snapshot]).standardOutput
            #expect(attributes.prefix(while: { $0 != " " }).contains("i"), "the snapshot stays immutable: \(attributes)")

            // Again: no change. A mark that is not the one the plan saw is refused.
            try await site.adopt(marks)
            var other = marks[0]
            other.name = "elsewhere"
            await #expect(throws: StorageError.self) { try await site.adopt([other]) }
            let stale = OwnershipMark(kind: .lun, name: "appl-1/vm-1", origin: SnapshotReference(project: "masters", image: "osol", snapshot: "v0"))
            await #expect(throws: StorageError.self) { try await site.adopt([stale]) }
        }
    }

    /// A snapshot an apply put in place but did not seal (killed before `chattr +i`) is seen
    /// as writable and sealed again.
    @Test func aSnapshotLeftWritableIsSeenAndSealed() async throws {
        try await StorageFixture.with { env in
            try await makeMaster(env.pool, size: 16 * mib)
            #expect(try await env.pool.observe().snapshot(master)?.sealed == true)
            let file = "\(env.lab.mountPoint)/masters/.snapshots/osol@v1.img"
            try await sh(["chattr", "-i", file])
            #expect(try await env.pool.observe().snapshot(master)?.sealed == false)
            try await env.pool.sealSnapshot(master)
            #expect(try await env.pool.observe().snapshot(master)?.sealed == true)
            let attributes = try await sh(["lsattr", file]).standardOutput
            #expect(attributes.prefix(while: { $0 != " " }).contains("i"), "\(attributes)")
        }
    }

    @Test func cloneOfAOneGiBMasterSharesEveryByte() async throws {
        try await StorageFixture.with { env in
            let pool = env.pool
            try await makeMaster(pool)
            try await pool.createProject("appl-1")
            let method = try await pool.clone(from: master, project: "appl-1", name: "vm-1", size: nil)
            #expect(method == .reflink)
            try await pool.clone(from: master, project: "appl-1", name: "vm-2", size: 2 * gib)

            let observed = try await pool.observe()
            #expect(observed.cloneMethod == .reflink)
            #expect(observed.projects.map(\.name) == ["appl-1", "masters"])
            let vm1 = try #require(observed.volume(project: "appl-1", name: "vm-1"))
            #expect(vm1.size == gib)
            #expect(vm1.exclusiveBytes == 0)
            #expect(vm1.origin == master)
            #expect(vm1.ownership.mark?.kind == .lun)
            let vm2 = try #require(observed.volume(project: "appl-1", name: "vm-2"))
            #expect(vm2.size == 2 * gib)
            #expect(vm2.exclusiveBytes == 0)
            let snapshot = try #require(observed.snapshot(master))
            #expect(snapshot.size == gib)
            #expect(snapshot.ownership.mark?.kind == .snapshot)
            #expect(observed.project("masters")?.ownership.mark == OwnershipMark(kind: .project, name: "masters"))

            // The tool agrees: 0 bytes exclusive.
            let du = try await sh(["btrfs", "filesystem", "du", "-s", "--raw", vm1.backingPath]).standardOutput
            let fields = try #require(du.split(separator: "\n").last?.split(separator: " "))
            #expect(fields[1] == "0")
            // Writing to the clone makes exactly that much its own.
            try writePattern(vm1.backingPath, offset: 0, count: 1 << 20, byte: 0x11)
            let after = try await pool.observe().volume(project: "appl-1", name: "vm-1")
            #expect(after?.exclusiveBytes == mib)
        }
    }

    @Test func snapshotsAreReadOnly() async throws {
        try await StorageFixture.with { env in
            try await makeMaster(env.pool, size: 64 * mib)
            let file = "\(env.lab.mountPoint)/masters/.snapshots/osol@v1.img"
            #expect(open(file, O_WRONLY) == -1)
            #expect(errno == EPERM)
            #expect(unlink(file) == -1)
            await #expect(throws: StorageError.self) { try await env.pool.createSnapshot(master) }
            try await env.pool.deleteSnapshot(master)
            #expect(!FileManager.default.fileExists(atPath: file))
            // Emptied, the project can go (a btrfs subvolume: `btrfs subvolume delete`).
            try await env.pool.deleteVolume(project: "masters", name: "osol")
            try await env.pool.deleteProject("masters")
            #expect(try await env.pool.observe().projects.isEmpty)
            #expect(!FileManager.default.fileExists(atPath: "\(env.lab.mountPoint)/masters"))
        }
    }

    @Test func exportIsVisibleThroughISCSIWithTheRightSize() async throws {
        try await StorageFixture.with { env in
            try await makeMaster(env.pool, size: 64 * mib)
            try await env.pool.createProject("appl-1")
            try await env.pool.clone(from: master, project: "appl-1", name: "vm-1", size: 96 * mib)
            let request = ExportRequest(project: "appl-1", volume: "vm-1", backingPath: env.pool.backingPath(project: "appl-1", volume: "vm-1"))
            try await env.export.probe()
            try await env.export.export([request])
            try await env.export.export([request])  // idempotent

            let iqn = "\(env.iqnPrefix):appl-1.vm-1"
            let targets = try await env.export.observe()
            #expect(targets.map(\.iqn) == [iqn])
            let target = try #require(targets.first)
            #expect(target.tid == 1)
            #expect(target.isOwned)
            #expect(target.boundInitiators == ["ALL"])
            #expect(target.connectedInitiators.isEmpty)
            #expect(target.luns.map(\.lun) == [1])
            #expect(target.luns.first?.backingPath == request.backingPath)
            #expect(target.luns.first?.reportedSize == 101_000_000)  // 100.66 decimal MB: tgt says "101 MB"

            let initiator = Initiator()
            let discovered = try await initiator.discoverTargets(portal: env.lab.portal)
            #expect(discovered.map(\.name) == [iqn])
            #expect(discovered.first?.portals.first?.hasPrefix(env.lab.portal) == true)
            let capacity = try await initiator.capacity(portal: env.lab.portal, target: iqn, lun: 1)
            #expect(capacity.bytes == 96 * mib)
        }
    }

    @Test func driftIsVisible() async throws {
        try await StorageFixture.with { env in
            try await makeMaster(env.pool, size: 64 * mib)
            try await env.pool.createProject("appl-1")
            for name in ["vm-1", "vm-2", "vm-3"] {
                try await env.pool.clone(from: master, project: "appl-1", name: name, size: nil)
            }
            try await env.export.export(["vm-1", "vm-2", "vm-3"].map {
                ExportRequest(project: "appl-1", volume: $0, backingPath: env.pool.backingPath(project: "appl-1", volume: $0))
            })
            #expect(try await env.export.observe().map(\.tid) == [1, 2, 3])

            // Outside virtform: vm-1's file deleted, vm-2's target removed, vm-3 grown.
            unlink(env.pool.backingPath(project: "appl-1", volume: "vm-1"))
            try await sh(["tgtadm", "-C", String(env.lab.controlPort), "--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "2"])
            try await sh(["truncate", "-s", "128M", env.pool.backingPath(project: "appl-1", volume: "vm-3")])

            let pool = try await env.pool.observe()
            #expect(pool.project("appl-1")?.volumes.map(\.name) == ["vm-2", "vm-3"])
            #expect(pool.volume(project: "appl-1", name: "vm-3")?.size == 128 * mib)
            let targets = try await env.export.observe()
            #expect(targets.map(\.iqn) == ["\(env.iqnPrefix):appl-1.vm-1", "\(env.iqnPrefix):appl-1.vm-3"])
            // A target whose LUN is gone is still ours (so it can be cleaned up) and says so.
            #expect(targets[0].isOwned)
            #expect(targets[0].luns.first?.backingExists == false)
            // tgt still serves the size it had when exported: the plan can see the difference.
            #expect(targets[1].luns.first?.reportedSize == 67_000_000)
            let served = try await Initiator().capacity(portal: env.lab.portal, target: targets[1].iqn, lun: 1)
            #expect(served.bytes == 64 * mib)

            try await env.export.unexport(iqn: targets[0].iqn, force: false)
            #expect(try await env.export.observe().count == 1)
            // A new export takes the first free tid.
            try await env.export.export([ExportRequest(project: "appl-1", volume: "vm-2", backingPath: env.pool.backingPath(project: "appl-1", volume: "vm-2"))])
            #expect(try await env.export.observe().map(\.tid) == [1, 3])
        }
    }

    @Test func unownedObjectsAreReportedAndRefused() async throws {
        try await StorageFixture.with { env in
            let pool = env.pool
            let root = env.lab.mountPoint
            try await makeMaster(pool, size: 64 * mib)
            try await pool.createProject("appl-1")
            // Made by hand: a project, and a file inside an owned project.
            try await sh(["btrfs", "subvolume", "create", "\(root)/legacy"])
            try await sh(["truncate", "-s", "64M", "\(root)/appl-1/hand.img"])

            let observed = try await pool.observe()
            #expect(observed.project("legacy")?.ownership == .unowned)
            #expect(observed.volume(project: "appl-1", name: "hand")?.ownership == .unowned)

            await #expect(throws: StorageError.self) { try await pool.deleteVolume(project: "appl-1", name: "hand") }
            await #expect(throws: StorageError.self) { try await pool.grow(project: "appl-1", name: "hand", to: 128 * mib) }
            await #expect(throws: StorageError.self) { try await pool.deleteProject("legacy") }
            await #expect(throws: StorageError.self) { try await pool.createImage(project: "legacy", name: "x", size: mib) }
            do {
                try await pool.deleteVolume(project: "appl-1", name: "hand")
            } catch let error as StorageError {
                #expect(error.code == .unowned)
                #expect(error.message.contains("hand.img carries no virtform ownership mark"))
            }
            #expect(FileManager.default.fileExists(atPath: "\(root)/appl-1/hand.img"))

            // A target with our prefix but an unmarked backing file is not ours either.
            let iqn = "\(env.iqnPrefix):appl-1.hand"
            let base = ["tgtadm", "-C", String(env.lab.controlPort), "--lld", "iscsi"]
            try await sh(base + ["--op", "new", "--mode", "target", "--tid", "7", "-T", iqn])
            try await sh(base + ["--op", "new", "--mode", "logicalunit", "--tid", "7", "--lun", "1", "-b", "\(root)/appl-1/hand.img"])
            let target = try #require(try await env.export.observe().first { $0.iqn == iqn })
            #expect(!target.isOwned)
            await #expect(throws: StorageError.self) { try await env.export.unexport(iqn: iqn, force: true) }
            await #expect(throws: StorageError.self) {
                try await env.export.export([ExportRequest(project: "appl-1", volume: "other", backingPath: "\(root)/appl-1/hand.img")])
            }

            // Ours: shrinking is refused, growing works, deleting works, a non-empty project stays.
            try await pool.clone(from: master, project: "appl-1", name: "vm-1", size: nil)
            await #expect(throws: StorageError.self) { try await pool.grow(project: "appl-1", name: "vm-1", to: mib) }
            try await pool.grow(project: "appl-1", name: "vm-1", to: 80 * mib)
            #expect(try await pool.observe().volume(project: "appl-1", name: "vm-1")?.size == 80 * mib)
            await #expect(throws: StorageError.self) { try await pool.deleteProject("appl-1") }
            try await pool.deleteVolume(project: "appl-1", name: "vm-1")
            #expect(try await pool.observe().volume(project: "appl-1", name: "vm-1") == nil)
        }
    }

    @Test func unexportIsRefusedWhileAnInitiatorIsConnected() async throws {
        try await StorageFixture.with { env in
            try await makeMaster(env.pool, size: 64 * mib)
            try await env.pool.createProject("appl-1")
            try await env.pool.clone(from: master, project: "appl-1", name: "vm-1", size: nil)
            try await env.export.export([ExportRequest(project: "appl-1", volume: "vm-1", backingPath: env.pool.backingPath(project: "appl-1", volume: "vm-1"))])
            let iqn = "\(env.iqnPrefix):appl-1.vm-1"
            let session = try await Initiator(name: "iqn.2026-11.io.virtform:test-host").login(portal: env.lab.portal, target: iqn, lun: 1)
            #expect(try await session.reportLUNs() == [0, 1])
            let target = try #require(try await env.export.observe().first)
            #expect(target.connectedInitiators == ["iqn.2026-11.io.virtform:test-host"])
            do {
                try await env.export.unexport(iqn: iqn, force: false)
                Issue.record("unexport with a connected initiator succeeded")
            } catch let error as StorageError {
                #expect(error.code == .refused)
            }
            try await env.export.unexport(iqn: iqn, force: true)
            #expect(try await env.export.observe().isEmpty)
            await session.logout()
        }
    }

    @Test func exportsAreBoundToThePoolsInitiators() async throws {
        try await StorageFixture.with(initiators: ["iqn.2026-11.io.virtform:allowed"]) { env in
            try await env.pool.probe()
            try await env.pool.createProject("appl-1")
            try await env.pool.createImage(project: "appl-1", name: "vm-1", size: 64 * mib)
            try await env.export.export([ExportRequest(project: "appl-1", volume: "vm-1", backingPath: env.pool.backingPath(project: "appl-1", volume: "vm-1"))])
            let iqn = "\(env.iqnPrefix):appl-1.vm-1"
            #expect(try await env.export.observe().first?.boundInitiators == ["iqn.2026-11.io.virtform:allowed"])
            let allowed = try await Initiator(name: "iqn.2026-11.io.virtform:allowed").capacity(portal: env.lab.portal, target: iqn, lun: 1)
            #expect(allowed.bytes == 64 * mib)
            await #expect(throws: ISCSIError.self) {
                _ = try await Initiator(name: "iqn.2026-11.io.virtform:stranger").capacity(portal: env.lab.portal, target: iqn, lun: 1)
            }
        }
    }

    @Test func importFailingForLackOfSpaceLeavesNothing() async throws {
        try await StorageFixture.with(poolSize: 256 * mib) { env in
            try await env.pool.probe()
            try await env.pool.createProject("masters")
            // A source on another filesystem must be copied; 320 MiB of data cannot fit a 256 MiB pool.
            let source = "\(env.lab.root)/big.raw"
            try await sh(["truncate", "-s", "320M", source])
            for offset in stride(from: UInt64(0), to: 320 * mib, by: Int(4 * mib)) {
                try writePattern(source, offset: offset, count: 4 << 20)
            }
            do {
                try await env.pool.importImage(project: "masters", name: "big", source: source, size: nil)
                Issue.record("import did not fail")
            } catch let error as StorageError {
                #expect(error.code == .noSpace, "\(error)")
            }
            let entries = try FileManager.default.contentsOfDirectory(atPath: "\(env.lab.mountPoint)/masters")
            #expect(entries.isEmpty, "left behind: \(entries)")
        }
    }

    @Test func importCopiesASourceAndDirPoolsOnBtrfsUseReflinks() async throws {
        try await StorageFixture.with { env in
            try await env.pool.probe()
            try await env.pool.createProject("masters")
            let source = "\(env.lab.root)/source.raw"  // outside the pool: cannot be reflinked
            try await sh(["truncate", "-s", "32M", source])
            try writePattern(source, offset: 8 * mib, count: 1 << 20)
            try await env.pool.importImage(project: "masters", name: "imported", source: source, size: 48 * mib)
            let imported = try #require(try await env.pool.observe().volume(project: "masters", name: "imported"))
            #expect(imported.size == 48 * mib)
            #expect(imported.ownership.mark == OwnershipMark(kind: .image, name: "masters/imported"))
            await #expect(throws: StorageError.self) {
                try await env.pool.importImage(project: "masters", name: "smaller", source: source, size: mib)
            }
            await #expect(throws: StorageError.self) {
                try await env.pool.importImage(project: "masters", name: "imported", source: source, size: nil)
            }

            // The same folder as a `dir` pool finds that reflinks work there.
            let dir = try StorageDrivers.driver(named: "dir", poolName: "d", path: env.lab.mountPoint, dataset: nil)
            try await dir.probe()
            #expect(dir.capabilities.cloneMethod == .reflink)
            try await dir.createSnapshot(SnapshotReference(project: "masters", image: "imported", snapshot: "v1"))
            let method = try await dir.clone(from: SnapshotReference(project: "masters", image: "imported", snapshot: "v1"),
                                             project: "masters", name: "copy", size: nil)
            #expect(method == .reflink)
            #expect(try await env.pool.observe().volume(project: "masters", name: "copy")?.exclusiveBytes == 0)
        }
    }

    @Test func probeExplainsAnUnmountedPool() async throws {
        let pool = FileTreeDriver(flavor: .btrfs, poolName: "p", path: "/tmp")
        do {
            try await pool.probe()
            Issue.record("probe of /tmp as btrfs succeeded")
        } catch let error as StorageError {
            #expect(error.code == .unusable)
            #expect(error.message.contains("not on a btrfs filesystem"))
        }
        // Observing an unmounted pool is an error, never an empty pool.
        await #expect(throws: StorageError.self) { try await pool.observe() }
        let missing = FileTreeDriver(flavor: .dir, poolName: "p", path: "/tmp/does-not-exist-virtform")
        await #expect(throws: StorageError.self) { try await missing.probe() }
        await #expect(throws: StorageError.self) { try await missing.observe() }

        // No tgtd on this control port: the probe says how to start one.
        let export = ISCSIExport(driver: .tgt, portal: HostPort(host: "127.0.0.1", port: 3299), iqnPrefix: "iqn.2026-11.io.virtform.test")
        let tgt = TgtExportDriver(export: export, controlPort: 119)
        do {
            try await tgt.probe()
            Issue.record("probe without a tgtd succeeded")
        } catch let error as StorageError {
            #expect(error.code == .unusable)
            #expect(error.message.contains("tgtd -C 119 --iscsi portal=127.0.0.1:3299"), "\(error)")
        }
        await #expect(throws: StorageError.self) { try await tgt.observe() }
    }
}
