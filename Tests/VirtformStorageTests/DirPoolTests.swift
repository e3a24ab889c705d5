import Foundation
import Testing
import VirtformModel
@testable import VirtformStorage
import VirtformSystem

#if canImport(Glibc)
    import Glibc
#endif

let dirUnavailable: String? = {
    if geteuid() != 0 { return "the dir pool tests need root (loop mounts)" }
    let missing = ["mkfs.ext4", "mount", "umount"].filter { Executables.find($0) == nil }
    return missing.isEmpty ? nil : "the dir pool tests need \(missing.joined(separator: ", ")) (install e2fsprogs, util-linux)"
}()

/// A `dir` pool on a small ext4 filesystem (no reflinks), loop-mounted in a temporary root.
func withExt4Pool<T: Sendable>(size: String, _ body: @Sendable (FileTreeDriver, String) async throws -> T) async throws -> T {
    let root = try makeTemporaryRoot("vftest-dirpool")
    let image = "\(root)/pool.ext4", mountPoint = "\(root)/pool"
    let outcome: Result<T, any Error> = await Result {
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        try await sh(["truncate", "-s", size, image])
        try await sh(["mkfs.ext4", "-q", "-F", "-m", "0", image])
        try await sh(["mount", "-o", "loop", image, mountPoint])
        return try await body(FileTreeDriver(flavor: .dir, poolName: "small", path: mountPoint), mountPoint)
    }
    // `mount -o loop` sets autoclear: unmounting frees the loop device.
    _ = try? await LocalCommandRunner().run(["umount", mountPoint])
    try? FileManager.default.removeItem(atPath: root)
    return try outcome.get()
}

@Suite(.disabled(if: dirUnavailable != nil, Comment(rawValue: dirUnavailable ?? "")))
struct DirPoolTests {
    /// Clones started together on a nearly full `dir` pool (sparse copies) do not all fill it
    /// and all fail: the copies that fit are made, the others fail at once as out of space
    /// before they write anything, nothing half-made stays, and a re-run after space is freed
    /// makes the rest.
    @Test func parallelCopiesOnANearlyFullPoolMakeProgress() async throws {
        try await withExt4Pool(size: "96M") { pool, mountPoint in
            try await pool.probe()
            #expect(pool.capabilities.cloneMethod == .sparseCopy)
            try await pool.createProject("masters")
            try await pool.createImage(project: "masters", name: "osol", size: 64 * mib)
            try writePattern(pool.backingPath(project: "masters", volume: "osol"), offset: 0, count: 16 << 20)
            let reference = SnapshotReference(project: "masters", image: "osol", snapshot: "v1")
            try await pool.createSnapshot(reference)
            try await pool.createProject("appl-1")
            let free = try #require(FileOperations.freeBytes(mountPoint))
            let fits = Int(free / (16 << 20 + FileTreeDriver.copyMargin))
            #expect(fits >= 1 && fits < 6, "the pool fits \(fits) copies of 16 MiB")

            func cloneAll(_ names: [String]) async -> [String: (any Error)?] {
                await withTaskGroup(of: (String, (any Error)?).self) { group in
                    for name in names {
                        group.addTask {
                            do {
                                try await pool.clone(from: reference, project: "appl-1", name: name, size: nil)
                                return (name, nil)
                            } catch {
                                return (name, error)
                            }
                        }
                    }
                    return await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
                }
            }
            let names = (1...6).map { "vm-\($0)" }
            let first = await cloneAll(names)
            let made = first.filter { $0.value == nil }.keys.sorted()
            #expect(made.count == fits, "made \(made), errors \(first.compactMapValues { $0 })")
            #expect(first.values.compactMap { $0 }.allSatisfy { ($0 as? StorageError)?.code == .noSpace }, "\(first)")
            let entries = try FileManager.default.contentsOfDirectory(atPath: mountPoint + "/appl-1")
            #expect(!entries.contains { $0.hasPrefix(".virtform-tmp-") }, "nothing half-made: \(entries)")
            // Space freed (the made LUNs deleted; ext4 hands the blocks back once its journal
            // commits, so it is synced and measured again), a re-run makes the next ones.
            for name in made { try await pool.deleteVolume(project: "appl-1", name: name) }
            try await sh(["sync", "-f", mountPoint])
            let freed = try #require(FileOperations.freeBytes(mountPoint))
            let rest = names.filter { !made.contains($0) }
            let second = await cloneAll(rest)
            let expected = min(Int(freed / (16 << 20 + FileTreeDriver.copyMargin)), rest.count)
            #expect(expected >= 1 && second.values.filter { $0 == nil }.count == expected, "\(second)")
        }
    }

    /// Guests' disks are root's alone, and a link planted in the pool leads nowhere: a
    /// `.snapshots` pointing outside makes the snapshot fail with nothing written there.
    @Test func disksArePrivateAndNoLinkInsideThePoolIsFollowed() async throws {
        try await withExt4Pool(size: "64M") { pool, mountPoint in
            try await pool.probe()
            try await pool.createProject("masters")
            try await pool.createImage(project: "masters", name: "osol", size: 8 * mib)
            let image = pool.backingPath(project: "masters", volume: "osol")
            #expect((try FileManager.default.attributesOfItem(atPath: image)[.posixPermissions] as? Int) == 0o600)
            #expect((try FileManager.default.attributesOfItem(atPath: mountPoint + "/masters")[.posixPermissions] as? Int) == 0o700)

            let outside = try makeTemporaryRoot("vftest-outside")
            defer { try? FileManager.default.removeItem(atPath: outside) }
            try FileManager.default.createSymbolicLink(atPath: mountPoint + "/masters/.snapshots", withDestinationPath: outside)
            let reference = SnapshotReference(project: "masters", image: "osol", snapshot: "v1")
            await #expect(throws: StorageError.self) { try await pool.createSnapshot(reference) }
            #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty, "nothing was written outside the pool")

            // The same for a LUN whose name is a link to a file elsewhere.
            try "precious\n".write(toFile: outside + "/victim", atomically: false, encoding: .utf8)
            try FileManager.default.removeItem(atPath: mountPoint + "/masters/.snapshots")
            try await pool.createSnapshot(reference)
            #expect((try FileManager.default.attributesOfItem(atPath: mountPoint + "/masters/.snapshots/osol@v1.img")[.posixPermissions] as? Int) == 0o400)
            try await pool.createProject("appl-1")
            try FileManager.default.createSymbolicLink(atPath: mountPoint + "/appl-1/vm-1.img", withDestinationPath: outside + "/victim")
            await #expect(throws: StorageError.self) { try await pool.deleteVolume(project: "appl-1", name: "vm-1") }
            await #expect(throws: StorageError.self) { try await pool.grow(project: "appl-1", name: "vm-1", to: 16 * mib) }
            #expect(try String(contentsOfFile: outside + "/victim", encoding: .utf8) == "precious\n")
        }
    }

    @Test func clonesOnAFilesystemWithoutReflinksAreSparseCopies() async throws {
        try await withExt4Pool(size: "64M") { pool, _ in
            try await pool.probe()
            #expect(pool.capabilities.cloneMethod == .sparseCopy)
            try await pool.createProject("masters")
            try await pool.createImage(project: "masters", name: "osol", size: 512 * mib)
            try writePattern(pool.backingPath(project: "masters", volume: "osol"), offset: 100 * mib, count: 1 << 20)
            let reference = SnapshotReference(project: "masters", image: "osol", snapshot: "v1")
            try await pool.createSnapshot(reference)
            try await pool.createProject("appl-1")
            #expect(try await pool.clone(from: reference, project: "appl-1", name: "vm-1", size: nil) == .sparseCopy)
            let observed = try await pool.observe()
            #expect(observed.cloneMethod == .sparseCopy)
            let clone = try #require(observed.volume(project: "appl-1", name: "vm-1"))
            #expect(clone.size == 512 * mib)
            #expect(clone.exclusiveBytes == nil)
            #expect(clone.origin == reference)
            // Holes stayed holes: only the written MiB takes space.
            var info = stat()
            stat(clone.backingPath, &info)
            #expect(UInt64(info.st_blocks) * 512 <= 2 * mib)
        }
    }

    @Test func aCloneThatFillsThePoolLeavesNothingBehind() async throws {
        try await withExt4Pool(size: "48M") { pool, root in
            try await pool.probe()
            try await pool.createProject("masters")
            try await pool.createImage(project: "masters", name: "osol", size: 64 * mib)
            try writePattern(pool.backingPath(project: "masters", volume: "osol"), offset: 0, count: 18 << 20)
            let reference = SnapshotReference(project: "masters", image: "osol", snapshot: "v1")
            try await pool.createSnapshot(reference)  // 36 MiB used of about 44
            try await pool.createProject("appl-1")
            do {
                try await pool.clone(from: reference, project: "appl-1", name: "vm-1", size: nil)
                Issue.record("a clone larger than the free space succeeded")
            } catch let error as StorageError {
                // Refused before it writes (the pool's free space cannot hold it).
                #expect(error.code == .noSpace, "\(error)")
                #expect(error.message.contains("appl-1"), "\(error)")
            }
            let left = try FileManager.default.contentsOfDirectory(atPath: "\(root)/appl-1")
            #expect(left.isEmpty, "left behind: \(left)")
            #expect(try await pool.observe().project("appl-1")?.volumes.isEmpty == true)
        }
    }
}
