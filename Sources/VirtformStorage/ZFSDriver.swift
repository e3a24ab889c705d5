import Foundation
import VirtformModel
import VirtformSystem

/// The `zfs` driver. **A stand-in:** ZFS cannot run on the development machine, so this
/// driver is tested only against a recording `CommandRunner` that checks the exact command
/// lines and feeds canned `zfs list` output (see README.md).
///
/// Layout under the pool's `dataset`: project = filesystem `<dataset>/<project>`, image or LUN =
/// sparse zvol `<dataset>/<project>/<name>`, snapshot = `<dataset>/<project>/<image>@<snap>`,
/// clone = `zfs clone`. The mark is the user property `io.virtform:owner`, set by the same
/// command that creates the object, so creation is atomic without a temporary name.
public struct ZFSDriver: StorageDriver {
    public let poolName: String
    public let dataset: String
    private let runner: any CommandRunner
    /// The site named in the marks of what it creates (nil: none, as before sites).
    public let site: String?

    /// `runner` runs `zfs` locally, or on the pool's machine through `virtform agent` (VirtformRemote).
    public init(poolName: String, dataset: String, site: String? = nil, runner: any CommandRunner) {
        self.site = site
        self.poolName = poolName
        self.dataset = dataset
        self.runner = runner
    }

    /// As its descriptor says (`Drivers`).
    public var capabilities: StorageCapabilities { Drivers.descriptor(.storagePool, "zfs")!.storage! }

    static let listColumns = "name,type,volsize,used,origin,\(OwnershipMark.zfsProperty)"

    public func backingPath(project: String, volume: String) -> String { "/dev/zvol/\(dataset)/\(project)/\(volume)" }

    public func probe() async throws {
        let arguments = ["zfs", "list", "-H", "-p", "-o", "name", dataset]
        let result: CommandResult
        do {
            result = try await runner.run(arguments)
        } catch {
            throw StorageError(.unusable, "storage pool \(poolName) is unusable: \(error)")
        }
        guard result.status == 0 else {
            throw StorageError(.unusable, "storage pool \(poolName) is unusable: dataset \(dataset) cannot be read: "
                               + result.standardError.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    struct Row: Equatable {
        var name: String
        var type: String
        var volsize: UInt64?
        var used: UInt64?
        var mark: OwnershipMark?
    }

    /// Parses `zfs list -H -p -o name,type,volsize,used,origin,io.virtform:owner` (tab-separated,
    /// `-` for an unset property).
    static func parseList(_ text: String) -> [Row] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard fields.count >= 6 else { return nil }
            return Row(name: fields[0], type: fields[1], volsize: UInt64(fields[2]), used: UInt64(fields[3]),
                       mark: fields[5] == "-" ? nil : OwnershipMark(parsing: fields[5]))
        }
    }

    public func observe() async throws -> PoolObservation {
        let rows = Self.parseList(try await zfs(["list", "-H", "-p", "-r", "-t", "filesystem,volume,snapshot", "-o", Self.listColumns, dataset],
                                                "observe storage pool \(poolName)").standardOutput)
        let prefix = dataset + "/"
        var projects: [String: ObservedProject] = [:]
        for row in rows where row.name.hasPrefix(prefix) && row.type == "filesystem" {
            let name = String(row.name.dropFirst(prefix.count))
            guard Names.isName(name) else { continue }
            projects[name] = ObservedProject(name: name, ownership: StorageOwnership(row.mark), volumes: [], snapshots: [])
        }
        for row in rows where row.name.hasPrefix(prefix) {
            let relative = row.name.dropFirst(prefix.count)
            if row.type == "volume" {
                let parts = relative.split(separator: "/")
                guard parts.count == 2, projects[String(parts[0])] != nil else { continue }
                let project = String(parts[0]), name = String(parts[1])
                projects[project]!.volumes.append(ObservedVolume(
                    project: project, name: name, size: row.volsize ?? 0, exclusiveBytes: row.used,
                    ownership: StorageOwnership(row.mark), backingPath: backingPath(project: project, volume: name)))
            } else if row.type == "snapshot", let reference = SnapshotReference(parsing: relative),
                projects[reference.project] != nil
            {
                projects[reference.project]!.snapshots.append(ObservedSnapshot(
                    reference: reference, size: row.volsize ?? 0, ownership: StorageOwnership(row.mark)))
            }
        }
        let sorted = projects.values.sorted { $0.name < $1.name }.map { project in
            var project = project
            project.volumes.sort { $0.name < $1.name }
            project.snapshots.sort { ($0.reference.image, $0.reference.snapshot) < ($1.reference.image, $1.reference.snapshot) }
            return project
        }
        return PoolObservation(pool: poolName, projects: sorted, cloneMethod: .zfsClone)
    }

    public func createProject(_ name: String) async throws {
        try validateName(name, "project")
        try await zfs(["create", "-o", "\(OwnershipMark.zfsProperty)=\(OwnershipMark(kind: .project, name: name, site: site, run: OwnershipMark.writingRun))", "\(dataset)/\(name)"],
                      "create project \(name) in pool \(poolName)")
    }

    public func deleteProject(_ name: String) async throws {
        try validateName(name, "project")
        try await requireMark("\(dataset)/\(name)", kind: .project, "delete project \(name)")
        // Not recursive: zfs refuses a dataset with children, which is the rule for projects too.
        try await zfs(["destroy", "\(dataset)/\(name)"], "delete project \(name) of pool \(poolName)")
    }

    public func createImage(project: String, name: String, size: UInt64) async throws {
        try validateName(name, "image")
        try await requireMark("\(dataset)/\(project)", kind: .project, "create image \(project)/\(name)")
        try await zfs(["create", "-s", "-V", String(size), "-o", "\(OwnershipMark.zfsProperty)=\(OwnershipMark(kind: .image, name: "\(project)/\(name)", site: site, run: OwnershipMark.writingRun))",
                       "\(dataset)/\(project)/\(name)"], "create image \(project)/\(name)")
    }

    public func createSnapshot(_ reference: SnapshotReference) async throws {
        try await requireMark("\(dataset)/\(reference.project)/\(reference.image)", kind: .image, "snapshot \(reference)")
        try await zfs(["snapshot", "-o", "\(OwnershipMark.zfsProperty)=\(OwnershipMark(kind: .snapshot, name: reference.description, site: site, run: OwnershipMark.writingRun))",
                       "\(dataset)/\(reference)"], "snapshot \(reference)")
    }

    public func deleteSnapshot(_ reference: SnapshotReference) async throws {
        try await requireMark("\(dataset)/\(reference)", kind: .snapshot, "delete snapshot \(reference)")
        try await zfs(["destroy", "\(dataset)/\(reference)"], "delete snapshot \(reference)")
    }

    @discardableResult
    public func clone(from source: SnapshotReference, project: String, name: String, size: UInt64?) async throws -> CloneMethod {
        try validateName(name, "LUN")
        let what = "clone \(source) to \(project)/\(name)"
        let snapshot = try await row("\(dataset)/\(source)", what)
        if let size, let volsize = snapshot.volsize, size < volsize {
            throw StorageError(.refused, "refusing to \(what): the size \(size) is smaller than the snapshot (\(volsize) bytes)")
        }
        let target = "\(dataset)/\(project)/\(name)"
        let mark = OwnershipMark(kind: .lun, name: "\(project)/\(name)", origin: source, site: site, run: OwnershipMark.writingRun)
        try await zfs(["clone", "-o", "\(OwnershipMark.zfsProperty)=\(mark)", "\(dataset)/\(source)", target], what)
        if let size, size != snapshot.volsize {
            do {
                try await zfs(["set", "volsize=\(size)", target], what)
            } catch {
                // Never leave a clone of the wrong size behind.
                _ = try? await runner.run(["zfs", "destroy", target])
                throw error
            }
        }
        return .zfsClone
    }

    public func grow(project: String, name: String, to size: UInt64) async throws {
        let target = "\(dataset)/\(project)/\(name)"
        let current = try await requireMark(target, kind: nil, "grow \(project)/\(name)")
        if let volsize = current.volsize, size < volsize {
            throw StorageError(.refused, "refusing to shrink \(project)/\(name) from \(volsize) to \(size) bytes")
        }
        if size != current.volsize { try await zfs(["set", "volsize=\(size)", target], "grow \(project)/\(name)") }
    }

    public func deleteVolume(project: String, name: String) async throws {
        let target = "\(dataset)/\(project)/\(name)"
        try await requireMark(target, kind: nil, "delete \(project)/\(name)")
        try await zfs(["destroy", target], "delete \(project)/\(name)")
    }

    public func adopt(_ marks: [OwnershipMark], unmarked: Bool) async throws {
        for mark in marks {
            let adopted = try adoptionTarget(mark, site: site)
            let name = "\(dataset)/\(mark.name)"  // project, project/volume, project/image@snapshot
            guard try checkAdoption(found: try await row(name, "adopt \(mark.name)").mark, expected: unmarked ? nil : mark, adopted: adopted, at: name) else { continue }
            try await zfs(["set", "\(OwnershipMark.zfsProperty)=\(adopted)", name], "adopt \(mark.name)")
        }
    }

    // MARK: Helpers

    private func row(_ name: String, _ what: String) async throws -> Row {
        let arguments = ["zfs", "list", "-H", "-p", "-t", "filesystem,volume,snapshot", "-o", Self.listColumns, name]
        let result = try await runner.run(arguments)
        guard result.status == 0 else {
            let said = result.standardError.trimmingCharacters(in: .whitespacesAndNewlines)
            throw StorageError(said.contains("does not exist") ? .notFound : .failed, "failed to \(what): \(name): \(said)")
        }
        guard let row = Self.parseList(result.standardOutput).first(where: { $0.name == name }) else {
            throw StorageError(.notFound, "failed to \(what): \(name) does not exist")
        }
        return row
    }

    @discardableResult
    private func requireMark(_ name: String, kind: OwnershipMark.Kind?, _ what: String) async throws -> Row {
        let row = try await row(name, what)
        guard let mark = row.mark else {
            throw StorageError(.unowned, "refusing to \(what): \(name) has no \(OwnershipMark.zfsProperty) property, so virtform did not make it")
        }
        if let kind, mark.kind != kind {
            throw StorageError(.unowned, "refusing to \(what): \(name) is marked as a \(mark.kind.rawValue), not a \(kind.rawValue)")
        }
        if let theirs = mark.site, let site, theirs != site {
            throw StorageError(.unowned, "refusing to \(what): \(name) belongs to site \(theirs), not \(site)")
        }
        return row
    }

    @discardableResult
    private func zfs(_ arguments: [String], _ what: String) async throws -> CommandResult {
        let full = ["zfs"] + arguments
        let result = try await runner.run(full)
        guard result.status == 0 else {
            throw StorageError.failed(what, "`\(full.joined(separator: " "))` exited with \(result.status): "
                                      + result.standardError.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return result
    }
}
