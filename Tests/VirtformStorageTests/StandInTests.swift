import Foundation
import Testing
import VirtformModel
@testable import VirtformStorage
import VirtformSystem

/// The zfs and lio drivers cannot meet their real programs here: these tests check the exact
/// command lines they run, against a recording stand-in fed with canned output.
struct ZFSStandInTests {
    let list = "zfs list -H -p -t filesystem,volume,snapshot -o name,type,volsize,used,origin,io.virtform:owner"

    func reply(_ lines: [String]) -> CommandResult {
        CommandResult(status: 0, standardOutput: lines.map { $0 + "\n" }.joined())
    }

    @Test func createsWithTheMarkInTheSameCommand() async throws {
        let runner = RecordingRunner([
            "\(list) tank/vf/masters": reply(["tank/vf/masters\tfilesystem\t-\t24576\t-\tkind=project,name=masters"]),
            "\(list) tank/vf/masters/osol": reply(["tank/vf/masters/osol\tvolume\t67108864\t1024\t-\tkind=image,name=masters/osol"]),
        ])
        let zfs = try StorageDrivers.driver(named: "zfs", poolName: "p", path: nil, dataset: "tank/vf", runner: runner)
        try await zfs.probe()
        try await zfs.createProject("masters")
        try await zfs.createImage(project: "masters", name: "osol", size: 64 * mib)
        try await zfs.createSnapshot(SnapshotReference(project: "masters", image: "osol", snapshot: "v1"))
        #expect(runner.commands == [
            "zfs list -H -p -o name tank/vf",
            "zfs create -o io.virtform:owner=kind=project,name=masters tank/vf/masters",
            "\(list) tank/vf/masters",
            "zfs create -s -V 67108864 -o io.virtform:owner=kind=image,name=masters/osol tank/vf/masters/osol",
            "\(list) tank/vf/masters/osol",
            "zfs snapshot -o io.virtform:owner=kind=snapshot,name=masters/osol@v1 tank/vf/masters/osol@v1",
        ])
    }

    @Test func adoptsAMarkWithoutASiteByRewritingItsProperty() async throws {
        let runner = RecordingRunner([
            "\(list) tank/vf/appl-1/vm-1": reply([
                "tank/vf/appl-1/vm-1\tvolume\t134217728\t8192\ttank/vf/masters/osol@v1\tkind=lun,name=appl-1/vm-1,origin=masters/osol@v1",
            ]),
        ])
        let zfs = try StorageDrivers.driver(named: "zfs", poolName: "p", path: nil, dataset: "tank/vf", site: "lab", runner: runner)
        let mark = OwnershipMark(kind: .lun, name: "appl-1/vm-1", origin: SnapshotReference(project: "masters", image: "osol", snapshot: "v1"))
        try await zfs.adopt([mark])
        #expect(runner.commands == [
            "\(list) tank/vf/appl-1/vm-1",
            "zfs set io.virtform:owner=kind=lun,name=appl-1/vm-1,origin=masters/osol@v1,site=lab tank/vf/appl-1/vm-1",
        ])
    }

    @Test func clonesGrowsAndDeletes() async throws {
        let runner = RecordingRunner([
            "\(list) tank/vf/masters/osol@v1": reply(["tank/vf/masters/osol@v1\tsnapshot\t67108864\t0\t-\tkind=snapshot,name=masters/osol@v1"]),
            "\(list) tank/vf/appl-1/vm-1": reply([
                "tank/vf/appl-1/vm-1\tvolume\t134217728\t8192\ttank/vf/masters/osol@v1\tkind=lun,name=appl-1/vm-1,origin=masters/osol@v1",
            ]),
        ])
        let zfs = ZFSDriver(poolName: "p", dataset: "tank/vf", runner: runner)
        let method = try await zfs.clone(from: SnapshotReference(project: "masters", image: "osol", snapshot: "v1"),
                                         project: "appl-1", name: "vm-1", size: 128 * mib)
        #expect(method == .zfsClone)
        try await zfs.grow(project: "appl-1", name: "vm-1", to: 256 * mib)
        await #expect(throws: StorageError.self) { try await zfs.grow(project: "appl-1", name: "vm-1", to: 64 * mib) }
        try await zfs.deleteVolume(project: "appl-1", name: "vm-1")
        #expect(runner.commands == [
            "\(list) tank/vf/masters/osol@v1",
            "zfs clone -o io.virtform:owner=kind=lun,name=appl-1/vm-1,origin=masters/osol@v1 tank/vf/masters/osol@v1 tank/vf/appl-1/vm-1",
            "zfs set volsize=134217728 tank/vf/appl-1/vm-1",
            "\(list) tank/vf/appl-1/vm-1",
            "zfs set volsize=268435456 tank/vf/appl-1/vm-1",
            "\(list) tank/vf/appl-1/vm-1",
            "\(list) tank/vf/appl-1/vm-1",
            "zfs destroy tank/vf/appl-1/vm-1",
        ])
        #expect(zfs.backingPath(project: "appl-1", volume: "vm-1") == "/dev/zvol/tank/vf/appl-1/vm-1")
    }

    @Test func aFailedResizeDestroysTheFreshClone() async throws {
        let runner = RecordingRunner([
            "\(list) tank/vf/masters/osol@v1": reply(["tank/vf/masters/osol@v1\tsnapshot\t67108864\t0\t-\tkind=snapshot,name=masters/osol@v1"]),
            "zfs set volsize=134217728 tank/vf/appl-1/vm-1": CommandResult(status: 1, standardError: "cannot set property: out of space"),
        ])
        let zfs = ZFSDriver(poolName: "p", dataset: "tank/vf", runner: runner)
        do {
            try await zfs.clone(from: SnapshotReference(project: "masters", image: "osol", snapshot: "v1"), project: "appl-1", name: "vm-1", size: 128 * mib)
            Issue.record("clone succeeded")
        } catch let error as StorageError {
            #expect(error.message.contains("out of space"))
        }
        #expect(runner.commands.last == "zfs destroy tank/vf/appl-1/vm-1")
    }

    @Test func unownedDatasetsAreRefused() async throws {
        let runner = RecordingRunner([
            "\(list) tank/vf/appl-1/legacy": reply(["tank/vf/appl-1/legacy\tvolume\t1073741824\t5000\t-\t-"]),
        ])
        let zfs = ZFSDriver(poolName: "p", dataset: "tank/vf", runner: runner)
        do {
            try await zfs.deleteVolume(project: "appl-1", name: "legacy")
            Issue.record("deleted an unowned volume")
        } catch let error as StorageError {
            #expect(error.code == .unowned)
        }
        #expect(!runner.commands.contains { $0.hasPrefix("zfs destroy") })
    }

    @Test func observesProjectsVolumesAndSnapshots() async throws {
        let runner = RecordingRunner([
            "zfs list -H -p -r -t filesystem,volume,snapshot -o name,type,volsize,used,origin,io.virtform:owner tank/vf": reply([
                "tank/vf\tfilesystem\t-\t100\t-\t-",
                "tank/vf/appl-1\tfilesystem\t-\t100\t-\tkind=project,name=appl-1",
                "tank/vf/appl-1/vm-1\tvolume\t67108864\t8192\ttank/vf/masters/osol@v1\tkind=lun,name=appl-1/vm-1,origin=masters/osol@v1",
                "tank/vf/masters\tfilesystem\t-\t100\t-\tkind=project,name=masters",
                "tank/vf/masters/osol\tvolume\t67108864\t4000000\t-\tkind=image,name=masters/osol",
                "tank/vf/masters/osol@v1\tsnapshot\t67108864\t0\t-\tkind=snapshot,name=masters/osol@v1",
                "tank/vf/other\tfilesystem\t-\t100\t-\t-",
            ]),
        ])
        let observed = try await ZFSDriver(poolName: "p", dataset: "tank/vf", runner: runner).observe()
        #expect(observed.projects.map(\.name) == ["appl-1", "masters", "other"])
        #expect(observed.project("other")?.ownership == .unowned)
        let clone = try #require(observed.volume(project: "appl-1", name: "vm-1"))
        #expect(clone.size == 64 * mib)
        #expect(clone.exclusiveBytes == 8192)
        #expect(clone.origin == SnapshotReference(project: "masters", image: "osol", snapshot: "v1"))
        #expect(observed.snapshot(SnapshotReference(project: "masters", image: "osol", snapshot: "v1"))?.ownership.isOwned == true)
    }

    @Test func runsItsCommandsAsArgumentVectors() async throws {
        let runner = RecordingRunner()
        let pool = StoragePool(meta: ObjectMeta(name: "remote"), driver: .zfs, dataset: "tank/vf",
                               provenance: Provenance(document: SourceLocation(file: "test.yaml", line: 1, column: 1)))
        let zfs = try StorageDrivers.driver(for: pool, runner: runner)
        try await zfs.createProject("appl-1")
        #expect(runner.commands == ["zfs create -o io.virtform:owner=kind=project,name=appl-1 tank/vf/appl-1"])
    }
}

struct LIOStandInTests {
    @Test func exportsAndUnexportsWithTargetcli() async throws {
        let runner = RecordingRunner()
        let export = ISCSIExport(driver: .lio, portal: HostPort(host: "192.0.2.10", port: 3260), iqnPrefix: "iqn.2026-11.io.virtform",
                                 initiators: ["iqn.2026-11.io.virtform:h1"])
        let lio = try ExportDrivers.driver(for: export, runner: runner)
        try await lio.export([ExportRequest(project: "appl-1", volume: "vm-1", backingPath: "/dev/zvol/tank/vf/appl-1/vm-1")])
        try await lio.unexport(iqn: "iqn.2026-11.io.virtform:appl-1.vm-1", force: false)
        await #expect(throws: StorageError.self) { try await lio.unexport(iqn: "iqn.1999-01.com.example:other", force: true) }
        #expect(runner.commands == [
            "targetcli /backstores/fileio create name=appl-1.vm-1 file_or_dev=/dev/zvol/tank/vf/appl-1/vm-1",
            "targetcli /iscsi create iqn.2026-11.io.virtform:appl-1.vm-1",
            "targetcli /iscsi/iqn.2026-11.io.virtform:appl-1.vm-1/tpg1/luns create /backstores/fileio/appl-1.vm-1 lun=1",
            "targetcli /iscsi/iqn.2026-11.io.virtform:appl-1.vm-1/tpg1/portals delete 0.0.0.0 3260",
            "targetcli /iscsi/iqn.2026-11.io.virtform:appl-1.vm-1/tpg1/portals create 192.0.2.10 3260",
            "targetcli /iscsi/iqn.2026-11.io.virtform:appl-1.vm-1/tpg1/acls create iqn.2026-11.io.virtform:h1",
            "targetcli saveconfig",
            "targetcli /iscsi delete iqn.2026-11.io.virtform:appl-1.vm-1",
            "targetcli /backstores/fileio delete appl-1.vm-1",
            "targetcli saveconfig",
        ])
    }

    @Test func aFailedStepRemovesWhatWasMade() async throws {
        let runner = RecordingRunner([
            "targetcli /iscsi/iqn.2026-11.io.virtform:appl-1.vm-1/tpg1/luns create /backstores/fileio/appl-1.vm-1 lun=1":
                CommandResult(status: 1, standardError: "LUN 1 already exists"),
        ])
        let lio = LIOExportDriver(export: ISCSIExport(driver: .lio, portal: HostPort(host: "192.0.2.10", port: 3260), iqnPrefix: "iqn.2026-11.io.virtform"),
                                  runner: runner)
        await #expect(throws: StorageError.self) {
            try await lio.export([ExportRequest(project: "appl-1", volume: "vm-1", backingPath: "/x")])
        }
        #expect(runner.commands.suffix(2) == [
            "targetcli /iscsi delete iqn.2026-11.io.virtform:appl-1.vm-1",
            "targetcli /backstores/fileio delete appl-1.vm-1",
        ])
    }
}

struct TgtCommandTests {
    static let show = """
        Target 1: iqn.2026-11.io.virtform.lab:appl-1.vm-1
            System information:
                Driver: iscsi
                State: ready
            I_T nexus information:
                I_T nexus: 3
                    Initiator: iqn.2026-11.io.virtform:h1 alias: h1
                    Connection: 0
                        IP Address: 127.0.0.1
            LUN information:
                LUN: 0
                    Type: controller
                    Size: 0 MB, Block size: 1
                    Backing store type: null
                    Backing store path: None
                LUN: 1
                    Type: disk
                    Size: 67 MB, Block size: 512
                    Backing store type: rdwr
                    Backing store path: /nonexistent/appl-1/vm-1.img
            Account information:
            ACL information:
                iqn.2026-11.io.virtform:h1
                iqn.2026-11.io.virtform:h2
        Target 3: iqn.1999-01.com.example:other
            System information:
                Driver: iscsi
                State: ready
            I_T nexus information:
            LUN information:
                LUN: 0
                    Type: controller
                    Backing store path: None
            Account information:
            ACL information:
                ALL

        """

    @Test func parsesBtrfsDu() {
        let text = """
                 Total   Exclusive  Set shared  Filename
              67108864           0           -  /pool/appl-1/vm-1.img
               1048576     1048576           -  /pool/appl-1/with space.img
              68157440     1048576    67108864  /pool/appl-1

            """
        #expect(FileTreeDriver.parseDu(text) == [
            "/pool/appl-1/vm-1.img": 0, "/pool/appl-1/with space.img": 1_048_576, "/pool/appl-1": 1_048_576,
        ])
    }

    @Test func parsesTargetsLUNsAndInitiators() async throws {
        let runner = RecordingRunner(["tgtadm -C 5 --lld iscsi --op show --mode target": CommandResult(status: 0, standardOutput: Self.show)])
        let export = ISCSIExport(driver: .tgt, portal: HostPort(host: "127.0.0.1", port: 3260), iqnPrefix: "iqn.2026-11.io.virtform.lab")
        let tgt = TgtExportDriver(export: export, controlPort: 5, runner: runner, backingMark: { _ in nil })
        let targets = try await tgt.observe()
        #expect(targets.map(\.iqn) == ["iqn.1999-01.com.example:other", "iqn.2026-11.io.virtform.lab:appl-1.vm-1"])
        let ours = targets[1]
        #expect(ours.tid == 1)
        #expect(ours.connectedInitiators == ["iqn.2026-11.io.virtform:h1"])
        #expect(ours.boundInitiators == ["iqn.2026-11.io.virtform:h1", "iqn.2026-11.io.virtform:h2"])
        #expect(ours.luns == [ObservedTargetLUN(lun: 1, backingPath: "/nonexistent/appl-1/vm-1.img", reportedSize: 67_000_000, backingExists: false)])
        #expect(ours.isOwned)  // prefix matches and the backing file is gone
        #expect(ours.volume(prefix: export.iqnPrefix)! == ("appl-1", "vm-1"))
        #expect(!targets[0].isOwned)
        #expect(targets[0].tid == 3)
        #expect(targets[0].luns.isEmpty)
    }

    @Test func exportRunsThreeCommandsPerLUNAndFillsTidGaps() async throws {
        let runner = RecordingRunner(["tgtadm -C 5 --lld iscsi --op show --mode target": CommandResult(status: 0, standardOutput: Self.show)])
        let export = ISCSIExport(driver: .tgt, portal: HostPort(host: "127.0.0.1", port: 3260), iqnPrefix: "iqn.2026-11.io.virtform.lab")
        var tgt = TgtExportDriver(export: export, controlPort: 5, runner: runner, backingMark: { _ in OwnershipMark(kind: .lun, name: "x/y") })
        tgt.parallelism = 1  // one target after the other, so the order of the lines is fixed
        try await tgt.export([
            ExportRequest(project: "appl-1", volume: "vm-2", backingPath: "/p/appl-1/vm-2.img"),
            ExportRequest(project: "appl-1", volume: "vm-3", backingPath: "/p/appl-1/vm-3.img"),
        ])
        #expect(runner.commands == [
            "tgtadm -C 5 --lld iscsi --op show --mode target",
            "tgtadm -C 5 --lld iscsi --op new --mode target --tid 2 -T iqn.2026-11.io.virtform.lab:appl-1.vm-2",
            "tgtadm -C 5 --lld iscsi --op new --mode logicalunit --tid 2 --lun 1 -b /p/appl-1/vm-2.img",
            "tgtadm -C 5 --lld iscsi --op bind --mode target --tid 2 -I ALL",
            "tgtadm -C 5 --lld iscsi --op new --mode target --tid 4 -T iqn.2026-11.io.virtform.lab:appl-1.vm-3",
            "tgtadm -C 5 --lld iscsi --op new --mode logicalunit --tid 4 --lun 1 -b /p/appl-1/vm-3.img",
            "tgtadm -C 5 --lld iscsi --op bind --mode target --tid 4 -I ALL",
        ])
    }
}

struct ModelTests {
    @Test(arguments: [
        OwnershipMark(kind: .project, name: "masters"),
        OwnershipMark(kind: .lun, name: "appl-1/vm-1", origin: SnapshotReference(project: "masters", image: "osol-0811", snapshot: "version-01")),
        OwnershipMark(kind: .snapshot, name: "masters/osol-0811@version-01"),
    ])
    func marksRoundTrip(_ mark: OwnershipMark) {
        #expect(OwnershipMark(parsing: mark.description) == mark)
    }

    @Test(arguments: ["", "kind=lun", "kind=disk,name=a/b", "kind=lun,name=a/b,origin=nonsense", "garbage"])
    func malformedMarksAreNoMarks(_ text: String) {
        #expect(OwnershipMark(parsing: text) == nil)
    }

    @Test func registriesListTheKnownNames() {
        do {
            _ = try StorageDrivers.driver(named: "ceph", poolName: "p", path: "/x", dataset: nil)
            Issue.record("unknown driver accepted")
        } catch let error as StorageError {
            #expect(error.message == "unknown storage driver 'ceph' for pool p; known drivers: btrfs, dir, zfs")
        } catch {
            Issue.record("\(error)")
        }
        let export = ISCSIExport(driver: .tgt, portal: HostPort(host: "127.0.0.1", port: 3260), iqnPrefix: "iqn.x")
        #expect(throws: StorageError.self) { try ExportDrivers.driver(named: "iet", export: export) }
        #expect(throws: StorageError.self) { try StorageDrivers.driver(named: "btrfs", poolName: "p", path: "relative", dataset: nil) }
        #expect(throws: StorageError.self) { try StorageDrivers.driver(named: "zfs", poolName: "p", path: nil, dataset: nil) }
    }
}
