import Foundation
import VirtformModel
import VirtformSystem

/// A storage pool's driver: projects (folders of volumes), master images, read-only snapshots,
/// clones. Every object it creates carries an `OwnershipMark`; objects without one are reported
/// as unowned and every modifying operation on them throws `StorageError.Code.unowned`.
/// Creating operations are atomic: on failure nothing stays behind.
public protocol StorageDriver: Sendable {
    /// The pool's name (the manifest's).
    var poolName: String { get }
    var capabilities: StorageCapabilities { get }

    /// Checks that the pool can be used now (mounted btrfs, existing folder, reachable
    /// dataset, programs installed); throws `.unusable` with what to fix otherwise.
    func probe() async throws
    func observe() async throws -> PoolObservation

    func createProject(_ name: String) async throws
    /// Refuses a project that still holds volumes or snapshots.
    func deleteProject(_ name: String) async throws
    /// A blank, sparse image of `size` bytes.
    func createImage(project: String, name: String, size: UInt64) async throws
    /// An image with the content of the raw file `source`, grown to `size` if given.
    func importImage(project: String, name: String, source: String, size: UInt64?) async throws
    /// A read-only snapshot of an image.
    func createSnapshot(_ reference: SnapshotReference) async throws
    func deleteSnapshot(_ reference: SnapshotReference) async throws
    /// Makes a snapshot read-only again (one an interrupted apply left writable); no change
    /// for one that is.
    func sealSnapshot(_ reference: SnapshotReference) async throws
    /// A LUN `project/name` cloned from `source`, grown to `size` if given (never smaller than
    /// the snapshot). Returns how the clone was made.
    @discardableResult
    func clone(from source: SnapshotReference, project: String, name: String, size: UInt64?) async throws -> CloneMethod
    /// Grows a volume; refuses to shrink.
    func grow(project: String, name: String, to size: UInt64) async throws
    func deleteVolume(project: String, name: String) async throws
    /// Where an export finds the volume (a file or a device).
    func backingPath(project: String, volume: String) -> String
    /// Rewrites the marks of objects an earlier virtform made without a site — `marks`, as
    /// they are now — with this driver's site. An object whose mark is not that one (gone,
    /// changed, another site's) is refused; one already marked with this site is no change.
    /// With `unmarked` (`virtform import`), the objects must carry no mark at all, and get
    /// `marks` with this driver's site.
    func adopt(_ marks: [OwnershipMark], unmarked: Bool) async throws
    /// Removes what an interrupted apply of this driver's site left under temporary names
    /// (`PoolObservation.halfMade`, paths relative to the pool); refuses anything else. One
    /// already gone is no change.
    func removeHalfMade(_ paths: [String]) async throws
}

extension StorageDriver {
    /// Drivers whose snapshots cannot be written (zfs) have nothing to seal.
    public func sealSnapshot(_ reference: SnapshotReference) async throws {}

    /// Drivers that build nothing under temporary names (zfs creates each object with its mark
    /// in one command) have nothing to remove.
    public func removeHalfMade(_ paths: [String]) async throws {
        guard paths.isEmpty else {
            throw StorageError(.unsupported, "pool \(poolName) makes no temporaries; nothing of \(paths.joined(separator: ", ")) is its to remove")
        }
    }
}

/// What `mark` becomes when the driver's site adopts it.
func adoptionTarget(_ mark: OwnershipMark, site: String?) throws -> OwnershipMark {
    guard let site else {
        throw StorageError(.invalid, "failed to adopt \(mark.name): the driver has no site to mark it with")
    }
    var adopted = mark
    adopted.site = site
    adopted.run = OwnershipMark.writingRun ?? mark.run
    return adopted
}

/// Checks the mark found on an object before adopting it: the one the plan saw, without a
/// site. Returns false when it already carries the new mark.
func checkAdoption(found: OwnershipMark?, expected: OwnershipMark?, adopted: OwnershipMark, at object: String) throws -> Bool {
    // Which run wrote a mark is not part of what it says.
    func meaning(_ mark: OwnershipMark?) -> OwnershipMark? { mark.map { var m = $0; m.run = nil; return m } }
    if meaning(found) == meaning(adopted) { return false }
    guard found == expected else {
        throw StorageError(.unowned, "refusing to adopt \(object): its mark is \(found.map { "\"\($0)\"" } ?? "gone"), not \(expected.map { "\"\($0)\"" } ?? "none")")
    }
    return true
}

extension StorageDriver {
    /// Adopts marks an earlier virtform wrote without a site.
    public func adopt(_ marks: [OwnershipMark]) async throws { try await adopt(marks, unmarked: false) }

    public func importImage(project: String, name: String, source: String, size: UInt64?) async throws {
        throw StorageError(.unsupported, "failed to import \(project)/\(name): the pool \(poolName) cannot import images")
    }
}

/// Finds storage drivers by the manifest's driver name.
public enum StorageDrivers {
    public static let names = StoragePool.Driver.allCases.map(\.rawValue)

    /// The driver for `pool` on this machine. `runner` runs the driver's programs (btrfs, zfs).
    /// `site` is named in the marks of what the driver creates. (A pool with `ssh` is driven on
    /// its machine: `RemoteDrivers` in VirtformRemote.)
    public static func driver(for pool: StoragePool, site: String? = nil, runner: any CommandRunner = LocalCommandRunner()) throws -> any StorageDriver {
        try driver(named: pool.driver.rawValue, poolName: pool.meta.name, path: pool.path, dataset: pool.dataset, site: site, runner: runner)
    }

    public static func driver(
        named name: String, poolName: String, path: String?, dataset: String?, site: String? = nil,
        runner: any CommandRunner = LocalCommandRunner()
    ) throws -> any StorageDriver {
        switch name {
        case "btrfs", "dir":
            guard let path, path.hasPrefix("/") else {
                throw StorageError(.invalid, "failed to load the \(name) driver for pool \(poolName): it needs an absolute `path`")
            }
            return FileTreeDriver(flavor: name == "btrfs" ? .btrfs : .dir, poolName: poolName, path: path, site: site, runner: runner)
        case "zfs":
            guard let dataset, !dataset.isEmpty else {
                throw StorageError(.invalid, "failed to load the zfs driver for pool \(poolName): it needs a `dataset`")
            }
            return ZFSDriver(poolName: poolName, dataset: dataset, site: site, runner: runner)
        default:
            throw StorageError(.invalid, "unknown storage driver '\(name)' for pool \(poolName); known drivers: \(names.joined(separator: ", "))")
        }
    }
}

func validateName(_ name: String, _ what: String) throws {
    guard Names.isName(name) else {
        throw StorageError(.invalid, "failed to use \(what) '\(name)': names are 1-63 lower-case letters, digits and '-'")
    }
}
