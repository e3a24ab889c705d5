import Foundation
import VirtformModel

#if canImport(Glibc)
    import Glibc
#endif

/// Runs blocking file work (a sparse copy of gigabytes, an fsync) on a thread of its own, never
/// on Swift's cooperative pool.
enum Blocking {
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try body() }) }
            thread.name = "virtform-storage"
            thread.start()
        }
    }
}

/// The file-level primitives of the btrfs and dir drivers. Every function throws `StorageError`
/// naming the path and the errno text.
enum FileOperations {
    // linux/fs.h: FICLONE = _IOW(0x94, 9, int); FS_IOC_GETFLAGS/SETFLAGS = _IOR/_IOW('f', 1/2, long).
    static let ficlone: UInt = 0x4004_9409
    static let getFlags: UInt = 0x8008_6601
    static let setFlags: UInt = 0x4008_6602
    static let immutableFlag: Int32 = 0x10
    // BTRFS_IOC_FS_INFO = _IOR(0x94, 31, struct btrfs_ioctl_fs_info_args): answers only on btrfs.
    static let btrfsFsInfo: UInt = 0x8400_941F
    // lseek whences hidden behind _GNU_SOURCE in Glibc's Swift module.
    static let seekData: Int32 = 3
    static let seekHole: Int32 = 4

    static func errorText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

    struct Info {
        var isDirectory: Bool
        var isRegular: Bool
        var size: UInt64
        var allocated: UInt64
    }

    /// Bytes an unprivileged writer may still use on the filesystem holding `path`.
    static func freeBytes(_ path: String) -> UInt64? {
        var s = statvfs()
        guard statvfs(path, &s) == 0 else { return nil }
        return UInt64(s.f_bavail) * UInt64(s.f_frsize)
    }

    /// Bytes a sparse copy of `path` writes: its allocated blocks.
    static func allocatedBytes(_ path: String) -> UInt64 { info(path)?.allocated ?? 0 }

    static func info(_ path: String) -> Info? {
        var s = stat()
        guard lstat(path, &s) == 0 else { return nil }
        let type = s.st_mode & S_IFMT
        return Info(isDirectory: type == S_IFDIR, isRegular: type == S_IFREG, size: UInt64(s.st_size),
                    allocated: UInt64(s.st_blocks) * 512)
    }

    /// Whether the filesystem holding `path` is btrfs.
    /// (statfs is not exported by Glibc's Swift module; btrfs's own FS_INFO ioctl is as good a test.)
    static func isBtrfs(_ path: String) throws -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECTORY)
        guard fd >= 0 else { throw StorageError(.unusable, "failed to examine \(path): \(errorText())") }
        defer { close(fd) }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1024, alignment: 8)
        defer { buffer.deallocate() }
        if ioctl(fd, btrfsFsInfo, buffer) == 0 { return true }
        if [ENOTTY, EOPNOTSUPP, EINVAL].contains(errno) { return false }
        throw StorageError(.unusable, "failed to examine \(path): \(errorText())")
    }

    static let temporaryPrefix = ".virtform-tmp-"

    /// A name for a temporary object next to `name` in a folder: hidden, so observation never
    /// takes it for an object, and carrying the site (`.virtform-tmp-@SITE@NAME-RANDOM`), so
    /// the next apply of that site — and only that site — removes what a killed one left.
    static func temporaryName(for name: String, site: String?) -> String {
        temporaryPrefix + (site.map { "@\($0)@" } ?? "") + "\(name)-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
    }

    /// For a temporary's name: whether it is one, and the site it names (nil: none).
    static func temporarySite(_ entry: String) -> (isTemporary: Bool, site: String?) {
        guard entry.hasPrefix(temporaryPrefix) else { return (false, nil) }
        let rest = entry.dropFirst(temporaryPrefix.count)
        guard rest.first == "@", let end = rest.dropFirst().firstIndex(of: "@") else { return (true, nil) }
        let site = String(rest[rest.index(after: rest.startIndex)..<end])
        return (true, Names.isName(site) ? site : nil)
    }

    /// Creates `path` (must not exist) as a sparse file of `size` bytes.
    static func createSparse(_ path: String, size: UInt64) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw StorageError.failed("create \(path)", errorText()) }
        defer { close(fd) }
        if ftruncate(fd, off_t(size)) != 0 { throw StorageError.failed("set the size of \(path) to \(size) bytes", errorText()) }
    }

    /// Grows (never shrinks) the file at `path` to `size` bytes.
    static func grow(_ path: String, to size: UInt64) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StorageError.failed("open \(path)", errorText()) }
        defer { close(fd) }
        if ftruncate(fd, off_t(size)) != 0 { throw StorageError.failed("grow \(path) to \(size) bytes", errorText()) }
    }

    /// Copies `source` to the new file `destination`: shares its blocks (FICLONE) when
    /// `allowed` contains reflink and the filesystem can; otherwise, if allowed, copies only the
    /// data regions (holes stay holes). Returns the method used.
    static func clone(_ source: String, to destination: String, allowed: Set<CloneMethod>) throws -> CloneMethod {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw StorageError.failed("open \(source)", errorText()) }
        defer { close(input) }
        let output = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard output >= 0 else { throw StorageError.failed("create \(destination)", errorText()) }
        defer { close(output) }
        if allowed.contains(.reflink) {
            if ioctl(output, ficlone, input) == 0 { return .reflink }
            let code = errno
            // Not supported here (other filesystem, other device, no reflink in this filesystem).
            let unsupported = [EOPNOTSUPP, ENOTTY, EXDEV, EINVAL, ENOSYS].contains(code)
            guard unsupported, allowed.contains(.sparseCopy) else {
                throw StorageError.failed("clone \(source) to \(destination) by reflink", errorText(code))
            }
        }
        try sparseCopy(input: input, output: output, source: source, destination: destination)
        return .sparseCopy
    }

    private static func sparseCopy(input: Int32, output: Int32, source: String, destination: String) throws {
        var s = stat()
        guard fstat(input, &s) == 0 else { throw StorageError.failed("examine \(source)", errorText()) }
        let size = s.st_size
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        var offset: off_t = 0
        while offset < size {
            let data = lseek(input, offset, seekData)
            if data < 0 {
                if errno == ENXIO { break }  // only a hole is left
                throw StorageError.failed("read \(source)", errorText())
            }
            var hole = lseek(input, data, seekHole)
            if hole < 0 { hole = size }
            var position = data
            while position < hole {
                let want = min(chunk, Int(hole - position))
                let got: Int = pread(input, buffer, want, position)
                if got < 0 { throw StorageError.failed("read \(source)", errorText()) }
                if got == 0 { break }
                var written = 0
                while written < got {
                    let n = pwrite(output, buffer + written, got - written, position + off_t(written))
                    if n < 0 { throw StorageError.failed("copy \(source) to \(destination)", errno: errno) }
                    written += n
                }
                position += off_t(got)
            }
            offset = hole
        }
        if ftruncate(output, size) != 0 { throw StorageError.failed("set the size of \(destination)", errno: errno) }
        // Report a full pool now, not when the page cache is written back later.
        if fsync(output) != 0 { throw StorageError.failed("write \(destination)", errno: errno) }
    }

    /// Sets or clears the immutable attribute (chattr +i): not even root can write, rename or
    /// delete the file until it is cleared. Returns false when the filesystem has no such flag.
    @discardableResult
    static func setImmutable(_ path: String, _ on: Bool) throws -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw StorageError.failed("open \(path)", errorText()) }
        defer { close(fd) }
        var flags: Int32 = 0
        guard ioctl(fd, getFlags, &flags) == 0 else {
            if [ENOTTY, EOPNOTSUPP, EINVAL].contains(errno) { return false }
            throw StorageError.failed("read the attributes of \(path)", errorText())
        }
        flags = on ? flags | immutableFlag : flags & ~immutableFlag
        guard ioctl(fd, setFlags, &flags) == 0 else {
            if [ENOTTY, EOPNOTSUPP, EINVAL].contains(errno) { return false }
            throw StorageError.failed("\(on ? "set" : "clear") the immutable attribute of \(path)", errorText())
        }
        return true
    }

    /// Whether nothing can write `path`: the immutable attribute, or — on a filesystem that has
    /// none — no write permission for anyone.
    static func isSealed(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var flags: Int32 = 0
        if ioctl(fd, getFlags, &flags) == 0 { return flags & immutableFlag != 0 }
        var s = stat()
        return fstat(fd, &s) == 0 && s.st_mode & 0o222 == 0
    }

    static func isImmutable(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var flags: Int32 = 0
        return ioctl(fd, getFlags, &flags) == 0 && flags & immutableFlag != 0
    }

    /// Renames `from` to `to`, failing (not replacing) when `to` exists.
    static func renameNoReplace(_ from: String, _ to: String) throws {
        // renameat2(RENAME_NOREPLACE) is not exported by Glibc's Swift module; link(2)
        // cannot do directories. A check before rename is enough: names are only created by
        // this driver under the apply lock, and the check catches an operator's stray file.
        if info(to) != nil { throw StorageError(.alreadyExists, "failed to create \(to): it already exists") }
        if rename(from, to) != 0 { throw StorageError.failed("rename \(from) to \(to)", errorText()) }
    }

    static func removeFile(_ path: String) {
        _ = try? setImmutable(path, false)
        unlink(path)
    }

    static func directoryEntries(_ path: String) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: path).sorted()
        } catch {
            throw StorageError.failed("list \(path)", "\(error.localizedDescription)")
        }
    }
}
