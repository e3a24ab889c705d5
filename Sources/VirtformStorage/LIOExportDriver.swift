import Foundation
import VirtformModel
import VirtformSystem

/// The `lio` export driver (Linux kernel target through `targetcli`). **A stand-in:** LIO needs
/// kernel modules this machine cannot load, so it is tested only against a recording
/// `CommandRunner` that checks the exact command lines (see README.md). It can export and
/// unexport; it cannot observe (that needs `targetcli`'s saved JSON configuration, not done).
///
/// Per volume: a fileio backstore named `<project>.<volume>`, a target `<prefix>:<project>.<volume>`
/// on tpg1 with the volume as LUN 1 (targetcli numbers LUNs from 0, so LUN 1 is asked for
/// explicitly), the portal of the pool only, ACLs for the pool's initiators (or demo mode for
/// all when the list is empty), then `saveconfig`. Ownership: the backstore and the IQN prefix.
public struct LIOExportDriver: ExportDriver {
    public let export: ISCSIExport
    private let runner: any CommandRunner

    public init(export: ISCSIExport, runner: any CommandRunner) {
        self.export = export
        self.runner = runner
    }

    public var iqnPrefix: String { export.iqnPrefix }

    public func probe() async throws {
        let result = try await runner.run(["targetcli", "version"])
        guard result.status == 0 else {
            throw StorageError(.unusable, "iSCSI export via lio is unusable: `targetcli version` failed: \(result.standardError)")
        }
    }

    public func observe() async throws -> [ObservedTarget] {
        throw StorageError(.unsupported, "failed to observe the lio targets: the lio driver is a stand-in that cannot observe")
    }

    public func export(_ requests: [ExportRequest]) async throws {
        for request in requests {
            let iqn = iqn(project: request.project, volume: request.volume)
            let backstore = "\(request.project).\(request.volume)"
            let what = "export \(request.project)/\(request.volume) as \(iqn)"
            let tpg = "/iscsi/\(iqn)/tpg1"
            var steps: [[String]] = [
                ["/backstores/fileio", "create", "name=\(backstore)", "file_or_dev=\(request.backingPath)"],
                ["/iscsi", "create", iqn],
                ["\(tpg)/luns", "create", "/backstores/fileio/\(backstore)", "lun=1"],
                ["\(tpg)/portals", "delete", "0.0.0.0", "3260"],
                ["\(tpg)/portals", "create", export.portal.host, String(export.portal.port)],
            ]
            if export.initiators.isEmpty {
                steps.append([tpg, "set", "attribute", "generate_node_acls=1", "demo_mode_write_protect=0"])
            } else {
                steps += export.initiators.map { ["\(tpg)/acls", "create", $0] }
            }
            do {
                for step in steps { try await targetcli(step, what) }
            } catch {
                _ = try? await runner.run(["targetcli", "/iscsi", "delete", iqn])
                _ = try? await runner.run(["targetcli", "/backstores/fileio", "delete", backstore])
                throw error
            }
        }
        try await targetcli(["saveconfig"], "save the lio configuration")
    }

    public func unexport(iqn: String, force: Bool) async throws {
        guard let (project, volume) = ObservedTarget(tid: 0, iqn: iqn, luns: [], boundInitiators: [], connectedInitiators: [], isOwned: false)
            .volume(prefix: iqnPrefix)
        else {
            throw StorageError(.unowned, "refusing to unexport \(iqn): its IQN lacks the prefix \(iqnPrefix):")
        }
        try await targetcli(["/iscsi", "delete", iqn], "unexport \(iqn)")
        try await targetcli(["/backstores/fileio", "delete", "\(project).\(volume)"], "unexport \(iqn)")
        try await targetcli(["saveconfig"], "save the lio configuration")
    }

    private func targetcli(_ arguments: [String], _ what: String) async throws {
        let full = ["targetcli"] + arguments
        let result = try await runner.run(full)
        guard result.status == 0 else {
            throw StorageError.failed(what, "`\(full.joined(separator: " "))` exited with \(result.status): "
                                      + (result.standardError.isEmpty ? result.standardOutput : result.standardError)
                                      .trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }
}
