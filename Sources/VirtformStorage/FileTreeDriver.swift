import Foundation
import Synchronization
import VirtformModel
import VirtformSystem

#if canImport(Glibc)
    import Glibc
#endif

/// The `btrfs` and `dir` drivers: a pool is a folder, and everything in it is a plain file or
/// folder, so both share one implementation.
///
/// Layout under the pool's `path`:
///
///     <project>/                              btrfs: a subvolume; dir: a folder
///     <project>/<volume>.img                  a master image or a LUN (raw, sparse)
///     <project>/.snapshots/<image>@<snap>.img a read-only snapshot of <project>/<image>.img
///     <project>/.virtform-tmp-<name>-<random> an object being made (renamed into place last)
///
/// Each carries the xattr `user.virtform.owner` (`OwnershipMark`). A snapshot is a reflink copy
/// (btrfs) made read-only with mode 0400 and the immutable attribute (`chattr +i`): nothing, not
/// even root, can change it until virtform clears the attribute to delete it. On `dir`, where
/// reflinks are missing, snapshots and clones are sparse copies (`cloneMethod` says which).
public final class FileTreeDriver: StorageDriver {
    public enum Flavor: String, Sendable {
        /// The pool must be a btrfs filesystem; projects are subvolumes; clones must be reflinks.
        case btrfs
        /// Any filesystem; reflinks where it has them, sparse copies elsewhere.
        case dir
    }

    public let flavor: Flavor
    public let poolName: String
    /// The pool's folder (btrfs: the mount point or a folder inside it).
    public let path: String
    private let runner: any CommandRunner
    /// The site named in the marks of what it creates (nil: none, as before sites).
    public let site: String?
    /// `dir`: how clones are made, found by `probe()`.
    private let probedMethod = Mutex<CloneMethod?>(nil)
    /// Space for copies: copies that together do not fit fail at once, before they start,
    /// instead of all filling the pool and all failing (and again on every re-run).
    private let space = Mutex(CopySpace())

    /// What copies in flight were promised, out of what was free when the first of them began
    /// (measured once per burst: a copy half written would otherwise be counted twice, in the
    /// free space it used and in its promise).
    private struct CopySpace {
        var budget: UInt64 = 0
        var promised: UInt64 = 0
    }

    public init(flavor: Flavor, poolName: String, path: String, site: String? = nil, runner: any CommandRunner = LocalCommandRunner()) {
        self.site = site
        self.flavor = flavor
        self.poolName = poolName
        self.path = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        self.runner = runner
    }

    /// As its descriptor says (`Drivers`); a `dir` pool's clone method once `probe()` found it.
    public var capabilities: StorageCapabilities {
        var capabilities = Drivers.descriptor(.storagePool, flavor == .btrfs ? "btrfs" : "dir")!.storage!
        if flavor == .dir { capabilities.cloneMethod = probedMethod.withLock { $0 } }
        return capabilities
    }

    private var allowedMethods: Set<CloneMethod> { flavor == .btrfs ? [.reflink] : [.reflink, .sparseCopy] }

    // MARK: Paths

    func projectPath(_ project: String) -> String { "\(path)/\(project)" }
    func volumePath(_ project: String, _ volume: String) -> String { "\(path)/\(project)/\(volume).img" }
    func snapshotsPath(_ project: String) -> String { "\(path)/\(project)/.snapshots" }
    func snapshotPath(_ reference: SnapshotReference) -> String {
        "\(snapshotsPath(reference.project))/\(reference.image)@\(reference.snapshot).img"
    }

    public func backingPath(project: String, volume: String) -> String { volumePath(project, volume) }

    // MARK: Probe and observe

    public func probe() async throws {
        guard let info = FileOperations.info(path), info.isDirectory else {
            throw StorageError(.unusable, "storage pool \(poolName) is unusable: \(path) does not exist or is not a folder"
                               + (flavor == .btrfs ? " (is the btrfs filesystem mounted?)" : ""))
        }
        guard access(path, W_OK) == 0 else {
            throw StorageError(.unusable, "storage pool \(poolName) is unusable: \(path) is not writable")
        }
        switch flavor {
        case .btrfs:
            guard try FileOperations.isBtrfs(path) else {
                throw StorageError(.unusable, "storage pool \(poolName) is unusable: \(path) is not on a btrfs filesystem "
                                   + "(is the pool mounted? `virtform lab up` mounts the lab's)")
            }
            guard Executables.find("btrfs") != nil else {
                throw StorageError(.unusable, "storage pool \(poolName) is unusable: required tool 'btrfs' is missing (install btrfs-progs)")
            }
        case .dir:
            let method = try await Blocking.run { [path, site] in try Self.probeCloneMethod(in: path, site: site) }
            probedMethod.withLock { $0 = method }
        }
    }

    /// Tries a reflink between two small files in the pool's folder.
    private static func probeCloneMethod(in folder: String, site: String?) throws -> CloneMethod {
        let source = "\(folder)/\(FileOperations.temporaryName(for: "probe", site: site))"
        let copy = "\(folder)/\(FileOperations.temporaryName(for: "probe", site: site))"
        defer {
            unlink(source)
            unlink(copy)
        }
        guard FileManager.default.createFile(atPath: source, contents: Data(repeating: 1, count: 4096)) else {
            throw StorageError(.unusable, "failed to probe \(folder): cannot write a file there")
        }
        return try FileOperations.clone(source, to: copy, allowed: [.reflink, .sparseCopy])
    }

    public func observe() async throws -> PoolObservation {
        guard FileOperations.info(path)?.isDirectory == true else {
            throw StorageError(.unusable, "failed to observe storage pool \(poolName): \(path) does not exist or is not a folder")
        }
        // An unmounted pool's mount point is an empty folder: that must not read as "no projects".
        if flavor == .btrfs, try !FileOperations.isBtrfs(path) {
            throw StorageError(.unusable, "failed to observe storage pool \(poolName): \(path) is not on a btrfs filesystem (is the pool mounted?)")
        }
        var projects: [ObservedProject] = []
        var halfMade: [HalfMadeObject] = []
        func collect(_ entries: [String], in folder: String) {
            for entry in entries {
                let (isTemporary, site) = FileOperations.temporarySite(entry)
                if isTemporary { halfMade.append(HalfMadeObject(path: folder.isEmpty ? entry : "\(folder)/\(entry)", site: site)) }
            }
        }
        let entries = try FileOperations.directoryEntries(path)
        collect(entries, in: "")
        for name in entries where !name.hasPrefix(".") && Names.isName(name) {
            let folder = projectPath(name)
            guard FileOperations.info(folder)?.isDirectory == true else { continue }
            projects.append(try await observeProject(name))
            collect(try FileOperations.directoryEntries(folder), in: name)
            if FileOperations.info(snapshotsPath(name))?.isDirectory == true {
                collect(try FileOperations.directoryEntries(snapshotsPath(name)), in: "\(name)/.snapshots")
            }
        }
        return PoolObservation(pool: poolName, projects: projects, cloneMethod: capabilities.cloneMethod, halfMade: halfMade.sorted { $0.path < $1.path })
    }

    public func removeHalfMade(_ paths: [String]) async throws {
        for relative in paths {
            let full = "\(path)/\(relative)"
            let name = (relative as NSString).lastPathComponent
            let (isTemporary, owner) = FileOperations.temporarySite(name)
            guard isTemporary, let site, owner == site, !relative.split(separator: "/").contains("..") else {
                throw StorageError(.refused, "refusing to remove \(relative) from pool \(poolName): it is not a temporary of site \(site ?? "(none)")")
            }
            try requireNoLinks(full, "remove \(relative)")
            guard let info = FileOperations.info(full) else { continue }  // gone already
            if info.isDirectory && flavor == .btrfs {
                // A project's temporary is a subvolume; btrfs deletes it with what it holds.
                let result = try await runner.run(["btrfs", "subvolume", "delete", full])
                if result.status == 0 { continue }
            }
            if info.isRegular { _ = try? FileOperations.setImmutable(full, false) }
            do {
                try FileSystem.remove(full)
            } catch {
                throw StorageError.failed("remove \(relative) from pool \(poolName)", "\(error)")
            }
        }
    }

    private func observeProject(_ project: String) async throws -> ObservedProject {
        let folder = projectPath(project)
        let exclusive = flavor == .btrfs ? try await exclusiveBytes(in: folder) : [:]
        var volumes: [ObservedVolume] = []
        for entry in try FileOperations.directoryEntries(folder) where !entry.hasPrefix(".") && entry.hasSuffix(".img") {
            let name = String(entry.dropLast(4))
            let file = "\(folder)/\(entry)"
            guard Names.isName(name), let info = FileOperations.info(file), info.isRegular else { continue }
            volumes.append(ObservedVolume(project: project, name: name, size: info.size, exclusiveBytes: exclusive[file],
                                          ownership: StorageOwnership(try OwnershipMark.read(path: file)), backingPath: file))
        }
        var snapshots: [ObservedSnapshot] = []
        let snapshotFolder = snapshotsPath(project)
        if FileOperations.info(snapshotFolder)?.isDirectory == true {
            for entry in try FileOperations.directoryEntries(snapshotFolder) where !entry.hasPrefix(".") && entry.hasSuffix(".img") {
                let file = "\(snapshotFolder)/\(entry)"
                guard let reference = SnapshotReference(parsing: "\(project)/\(entry.dropLast(4))"),
                    let info = FileOperations.info(file), info.isRegular
                else { continue }
                snapshots.append(ObservedSnapshot(reference: reference, size: info.size,
                                                  ownership: StorageOwnership(try OwnershipMark.read(path: file)),
                                                  sealed: FileOperations.isSealed(file)))
            }
        }
        return ObservedProject(name: project, ownership: StorageOwnership(try OwnershipMark.read(path: folder)),
                               volumes: volumes, snapshots: snapshots)
    }

    /// Exclusive bytes of every file below `folder`, from one `btrfs filesystem du --raw`.
    private func exclusiveBytes(in folder: String) async throws -> [String: UInt64] {
        let arguments = ["btrfs", "filesystem", "du", "--raw", folder]
        let result = try await runner.run(arguments)
        guard result.status == 0 else {
            throw StorageError.failed("measure the space used in \(folder)", result.standardError.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return Self.parseDu(result.standardOutput)
    }

    /// Parses `btrfs filesystem du --raw` lines: `TOTAL EXCLUSIVE SET-SHARED|- PATH` (the path
    /// may contain spaces, so it is everything after the third column).
    static func parseDu(_ text: String) -> [String: UInt64] {
        var sizes: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            var rest = line[...]
            var columns: [Substring] = []
            while columns.count < 3 {
                rest = rest.drop { $0 == " " }
                let word = rest.prefix { $0 != " " }
                guard !word.isEmpty else { break }
                columns.append(word)
                rest = rest.dropFirst(word.count)
            }
            let path = rest.drop { $0 == " " }
            guard columns.count == 3, UInt64(columns[0]) != nil, let exclusive = UInt64(columns[1]), !path.isEmpty else { continue }
            sizes[String(path)] = exclusive
        }
        return sizes
    }

    // MARK: Projects

    public func createProject(_ name: String) async throws {
        let run = OwnershipMark.writingRun
        try validateName(name, "project")
        let final = projectPath(name)
        if FileOperations.info(final) != nil {
            throw StorageError(.alreadyExists, "failed to create project \(name) in pool \(poolName): \(final) already exists")
        }
        try requireNoLinks(final, "create project \(name)")
        let temporary = "\(path)/\(FileOperations.temporaryName(for: name, site: site))"
        var undo: [() async -> Void] = []
        do {
            switch flavor {
            case .btrfs:
                try await command(["btrfs", "subvolume", "create", temporary], "create project \(name) in pool \(poolName)")
                undo.append { [runner] in _ = try? await runner.run(["btrfs", "subvolume", "delete", temporary]) }
            case .dir:
                if mkdir(temporary, 0o700) != 0 {
                    throw StorageError.failed("create project \(name) in pool \(poolName)", FileOperations.errorText())
                }
                undo.append { _ = rmdir(temporary) }
            }
            // Only root reads a project: its LUNs are guests' disks.
            if chmod(temporary, 0o700) != 0 { throw StorageError.failed("create project \(name) in pool \(poolName)", FileOperations.errorText()) }
            try OwnershipMark(kind: .project, name: name, site: site, run: run).write(path: temporary)
            KillPoint.step("rename project \(name) into place")
            try FileOperations.renameNoReplace(temporary, final)
        } catch {
            for step in undo.reversed() { await step() }
            throw error
        }
    }

    public func deleteProject(_ name: String) async throws {
        try validateName(name, "project")
        let folder = projectPath(name)
        guard FileOperations.info(folder)?.isDirectory == true else {
            throw StorageError(.notFound, "failed to delete project \(name) of pool \(poolName): it does not exist")
        }
        try requireMark(folder, kind: .project, "delete project \(name)")
        let leftovers = try FileOperations.directoryEntries(folder).filter { !$0.hasPrefix(".virtform-tmp-") && $0 != ".snapshots" }
        let snapshots = FileOperations.info(snapshotsPath(name)) == nil ? [] : try FileOperations.directoryEntries(snapshotsPath(name))
        guard leftovers.isEmpty && snapshots.isEmpty else {
            throw StorageError(.refused, "refusing to delete project \(name) of pool \(poolName): it still holds "
                               + (leftovers + snapshots.map { ".snapshots/\($0)" }).joined(separator: ", "))
        }
        // Half-made objects of an interrupted run go with it.
        for entry in try FileOperations.directoryEntries(folder) where entry.hasPrefix(".virtform-tmp-") {
            try FileSystem.remove("\(folder)/\(entry)")
        }
        rmdir(snapshotsPath(name))
        switch flavor {
        case .btrfs:
            try await command(["btrfs", "subvolume", "delete", folder], "delete project \(name) of pool \(poolName)")
        case .dir:
            if rmdir(folder) != 0 { throw StorageError.failed("delete project \(name) of pool \(poolName)", FileOperations.errorText()) }
        }
    }

    // MARK: Volumes

    public func createImage(project: String, name: String, size: UInt64) async throws {
        let run = OwnershipMark.writingRun
        try validateName(name, "image")
        let final = try prepareVolume(project, name, "create image \(project)/\(name)")
        try await Blocking.run {
            try Self.atomically(final: final, site: self.site) { temporary in
                try FileOperations.createSparse(temporary, size: size)
                try OwnershipMark(kind: .image, name: "\(project)/\(name)", site: self.site, run: run).write(path: temporary)
            }
        }
    }

    public func importImage(project: String, name: String, source: String, size: UInt64?) async throws {
        let run = OwnershipMark.writingRun
        try validateName(name, "image")
        let final = try prepareVolume(project, name, "import image \(project)/\(name)")
        guard let info = FileOperations.info(source), info.isRegular else {
            throw StorageError(.notFound, "failed to import image \(project)/\(name): the source \(source) is not a file")
        }
        if let size, size < info.size {
            throw StorageError(.refused, "refusing to import image \(project)/\(name): the size \(size) is smaller than \(source) (\(info.size) bytes)")
        }
        // Counted as a copy: a source outside the pool cannot be reflinked.
        try await withSpace(info.allocated, "import image \(project)/\(name)") {
            try await Blocking.run {
                try Self.atomically(final: final, site: self.site) { temporary in
                    // A source on another filesystem cannot be reflinked: copy it, on any pool.
                    _ = try FileOperations.clone(source, to: temporary, allowed: [.reflink, .sparseCopy])
                    if let size, size > info.size { try FileOperations.grow(temporary, to: size) }
                    try OwnershipMark(kind: .image, name: "\(project)/\(name)", site: self.site, run: run).write(path: temporary)
                }
            }
        }
    }

    @discardableResult
    public func clone(from source: SnapshotReference, project: String, name: String, size: UInt64?) async throws -> CloneMethod {
        let run = OwnershipMark.writingRun
        try validateName(name, "LUN")
        let what = "clone \(source) to \(project)/\(name)"
        let snapshot = snapshotPath(source)
        guard let info = FileOperations.info(snapshot), info.isRegular else {
            throw StorageError(.notFound, "failed to \(what): the snapshot \(source) does not exist in pool \(poolName)")
        }
        if let size, size < info.size {
            throw StorageError(.refused, "refusing to \(what): the size \(size) is smaller than the snapshot (\(info.size) bytes)")
        }
        let final = try prepareVolume(project, name, what)
        let allowed = allowedMethods
        return try await withSpace(copyCost(snapshot, allowed: allowed), what) {
            try await Blocking.run {
                var method = CloneMethod.reflink
                try Self.atomically(final: final, site: self.site) { temporary in
                    method = try FileOperations.clone(snapshot, to: temporary, allowed: allowed)
                    if let size, size > info.size { try FileOperations.grow(temporary, to: size) }
                    try OwnershipMark(kind: .lun, name: "\(project)/\(name)", origin: source, site: self.site, run: run).write(path: temporary)
                }
                return method
            }
        }
    }

    public func grow(project: String, name: String, to size: UInt64) async throws {
        let file = volumePath(project, name)
        let what = "grow \(project)/\(name)"
        guard let info = FileOperations.info(file), info.isRegular else {
            throw StorageError(.notFound, "failed to \(what): it does not exist in pool \(poolName)")
        }
        try requireMark(file, kind: nil, what)
        guard size >= info.size else {
            throw StorageError(.refused, "refusing to shrink \(project)/\(name) from \(info.size) to \(size) bytes")
        }
        KillPoint.step("grow \(project)/\(name)")
        if size > info.size { try FileOperations.grow(file, to: size) }
    }

    public func deleteVolume(project: String, name: String) async throws {
        let file = volumePath(project, name)
        guard FileOperations.info(file) != nil else {
            throw StorageError(.notFound, "failed to delete \(project)/\(name): it does not exist in pool \(poolName)")
        }
        try requireMark(file, kind: nil, "delete \(project)/\(name)")
        KillPoint.step("delete \(project)/\(name)")
        if unlink(file) != 0 { throw StorageError.failed("delete \(project)/\(name)", FileOperations.errorText()) }
    }

    // MARK: Snapshots

    public func createSnapshot(_ reference: SnapshotReference) async throws {
        let run = OwnershipMark.writingRun
        let image = volumePath(reference.project, reference.image)
        let what = "snapshot \(reference)"
        guard FileOperations.info(image)?.isRegular == true else {
            throw StorageError(.notFound, "failed to \(what): image \(reference.project)/\(reference.image) does not exist in pool \(poolName)")
        }
        try requireMark(projectPath(reference.project), kind: .project, what)
        let folder = snapshotsPath(reference.project)
        if mkdir(folder, 0o700) != 0 && errno != EEXIST { throw StorageError.failed(what, FileOperations.errorText()) }
        let final = snapshotPath(reference)
        try requireNoLinks(final, what)
        guard FileOperations.info(folder)?.isDirectory == true else {
            throw StorageError(.refused, "refusing to \(what): \(folder) is not a folder")
        }
        if FileOperations.info(final) != nil {
            throw StorageError(.alreadyExists, "failed to \(what): it already exists")
        }
        let allowed = allowedMethods, isBtrfs = flavor == .btrfs
        try await Blocking.run {
            try Self.atomically(final: final, site: self.site) { temporary in
                _ = try FileOperations.clone(image, to: temporary, allowed: allowed)
                try OwnershipMark(kind: .snapshot, name: reference.description, site: self.site, run: run).write(path: temporary)
                if chmod(temporary, 0o400) != 0 { throw StorageError.failed(what, FileOperations.errorText()) }
            }
            KillPoint.step("seal \(reference)")
        // After the rename: an immutable file cannot be renamed. btrfs always has the
            // attribute; on dir a filesystem without it (tmpfs) leaves mode 0400 alone.
            let set = try FileOperations.setImmutable(final, true)
            if !set && isBtrfs {
                FileOperations.removeFile(final)
                throw StorageError.failed(what, "cannot make \(final) immutable")
            }
        }
    }

    public func sealSnapshot(_ reference: SnapshotReference) async throws {
        let file = snapshotPath(reference)
        let what = "seal snapshot \(reference)"
        guard FileOperations.info(file)?.isRegular == true else {
            throw StorageError(.notFound, "failed to \(what): it does not exist in pool \(poolName)")
        }
        try requireMark(file, kind: .snapshot, what)
        if chmod(file, 0o400) != 0 { throw StorageError.failed(what, FileOperations.errorText()) }
        let set = try FileOperations.setImmutable(file, true)
        if !set && flavor == .btrfs { throw StorageError.failed(what, "cannot make \(file) immutable") }
    }

    public func deleteSnapshot(_ reference: SnapshotReference) async throws {
        let file = snapshotPath(reference)
        guard FileOperations.info(file) != nil else {
            throw StorageError(.notFound, "failed to delete snapshot \(reference): it does not exist in pool \(poolName)")
        }
        try requireMark(file, kind: .snapshot, "delete snapshot \(reference)")
        try FileOperations.setImmutable(file, false)
        KillPoint.step("delete snapshot \(reference)")
        if unlink(file) != 0 { throw StorageError.failed("delete snapshot \(reference)", FileOperations.errorText()) }
    }

    public func adopt(_ marks: [OwnershipMark], unmarked: Bool) async throws {
        for mark in marks {
            let adopted = try adoptionTarget(mark, site: site)
            let path: String
            switch mark.kind {
            case .project:
                path = projectPath(mark.name)
            case .image, .lun:
                let parts = mark.name.split(separator: "/", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { throw StorageError(.invalid, "failed to adopt \(mark.name): not project/volume") }
                path = volumePath(parts[0], parts[1])
            case .snapshot:
                guard let reference = SnapshotReference(parsing: mark.name) else {
                    throw StorageError(.invalid, "failed to adopt \(mark.name): not a snapshot reference")
                }
                path = snapshotPath(reference)
            }
            try requireNoLinks(path, "adopt \(mark.name)")
            try await Blocking.run {
                guard try checkAdoption(found: try OwnershipMark.read(path: path), expected: unmarked ? nil : mark, adopted: adopted, at: path) else { return }
                // A snapshot is immutable: cleared for the mark, and set again whatever happens.
                let immutable = mark.kind == .snapshot && FileOperations.isImmutable(path)
                if immutable { try FileOperations.setImmutable(path, false) }
                defer { if immutable { _ = try? FileOperations.setImmutable(path, true) } }
                try adopted.write(path: path)
            }
        }
    }

    // MARK: Helpers

    /// What a copy is promised beyond its data: room for the filesystem's own metadata.
    static let copyMargin: UInt64 = 256 << 10

    /// Runs a copy of `bytes` with that much of the pool's free space promised to it, or fails
    /// at once with `.noSpace` when what is free, less what copies in flight were promised,
    /// cannot hold it. Reflinks (`bytes` 0) need no promise.
    private func withSpace<T: Sendable>(_ bytes: UInt64, _ what: String, _ body: () async throws -> T) async throws -> T {
        guard bytes > 0 else { return try await body() }
        let need = bytes + Self.copyMargin
        let free = FileOperations.freeBytes(path) ?? .max
        let (promised, left) = space.withLock { space -> (Bool, UInt64) in
            if space.promised == 0 { space.budget = free }  // a new burst: measured now
            let left = space.budget >= space.promised ? space.budget - space.promised : 0
            guard left >= need else { return (false, left) }
            space.promised += need
            return (true, left)
        }
        guard promised else {
            throw StorageError(.noSpace, "failed to \(what): pool \(poolName) has \(ByteSize(bytes: left)) free for it (after the copies in flight), it needs \(ByteSize(bytes: need))")
        }
        do {
            let result = try await body()
            // Made: its space is used for good, out of this burst's budget.
            space.withLock { space in
                space.promised -= need
                space.budget = space.budget >= need ? space.budget - need : 0
            }
            return result
        } catch {
            space.withLock { $0.promised -= need }  // its temporary is gone: the space is free again
            throw error
        }
    }

    /// What copying `source` into this pool writes: nothing for a reflink.
    private func copyCost(_ source: String, allowed: Set<CloneMethod>) -> UInt64 {
        let reflinks = allowed == [.reflink] || capabilities.cloneMethod == .reflink
        return reflinks ? 0 : FileOperations.allocatedBytes(source)
    }

    /// Checks that `project` exists and is ours and that `name` is free; returns the volume's path.
    private func prepareVolume(_ project: String, _ name: String, _ what: String) throws -> String {
        let folder = projectPath(project)
        guard FileOperations.info(folder)?.isDirectory == true else {
            throw StorageError(.notFound, "failed to \(what): project \(project) does not exist in pool \(poolName)")
        }
        try requireMark(folder, kind: .project, what)
        let final = volumePath(project, name)
        try requireNoLinks(final, what)
        if FileOperations.info(final) != nil {
            throw StorageError(.alreadyExists, "failed to \(what): \(final) already exists")
        }
        return final
    }

    /// Throws `.unowned` unless `path` carries a mark (of `kind`, when given); `.refused` when a
    /// symbolic link leads to it.
    private func requireMark(_ path: String, kind: OwnershipMark.Kind?, _ what: String) throws {
        try requireNoLinks(path, what)
        guard let mark = try OwnershipMark.read(path: path) else {
            throw StorageError(.unowned, "refusing to \(what): \(path) carries no virtform ownership mark "
                               + "(\(OwnershipMark.attributeName)), so virtform did not make it and will not change it")
        }
        if let kind, mark.kind != kind {
            throw StorageError(.unowned, "refusing to \(what): \(path) is marked as a \(mark.kind.rawValue), not a \(kind.rawValue)")
        }
        if let theirs = mark.site, let site, theirs != site {
            throw StorageError(.unowned, "refusing to \(what): \(path) belongs to site \(theirs), not \(site)")
        }
    }

    /// Refuses `target` when any part of it below the pool's folder is a symbolic link: a link
    /// planted in a pool would make virtform write (and make immutable) files outside it. The
    /// pool's own folder may be a link; nothing inside it is followed.
    private func requireNoLinks(_ target: String, _ what: String) throws {
        guard target.hasPrefix(path + "/") else { return }
        var current = path
        for component in target.dropFirst(path.count + 1).split(separator: "/") {
            current += "/" + component
            var info = stat()
            guard lstat(current, &info) == 0 else { return }  // what follows does not exist yet
            if info.st_mode & S_IFMT == S_IFLNK {
                throw StorageError(.refused, "refusing to \(what): \(current) is a symbolic link inside pool \(poolName)")
            }
        }
    }

    /// Builds an object under a temporary name next to `final`, then renames it into place;
    /// on any failure the temporary is removed, so nothing half-made stays behind.
    private static func atomically(final: String, site: String?, _ build: (String) throws -> Void) throws {
        let folder = (final as NSString).deletingLastPathComponent
        let name = (final as NSString).lastPathComponent
        let temporary = "\(folder)/\(FileOperations.temporaryName(for: name, site: site))"
        do {
            KillPoint.step("build \(name)")
            try build(temporary)
            KillPoint.step("rename \(name) into place")
            try FileOperations.renameNoReplace(temporary, final)
        } catch {
            FileOperations.removeFile(temporary)
            throw error
        }
    }

    @discardableResult
    private func command(_ arguments: [String], _ what: String) async throws -> CommandResult {
        let result = try await runner.run(arguments)
        guard result.status == 0 else {
            let said = (result.standardError.isEmpty ? result.standardOutput : result.standardError)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            throw StorageError.failed(what, "`\(arguments.joined(separator: " "))` exited with \(result.status): \(said)")
        }
        return result
    }
}
