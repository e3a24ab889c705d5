import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// "Only one apply at a time per site": an exclusive `flock(2)` on a lock file.
///
/// The holder writes who it is (pid, host, command, start time) into the file, so a second
/// process fails fast with "locked by pid N (virtform apply) on host since …" instead of
/// waiting silently. The lock belongs to the open file description, so it is exclusive between
/// processes and also between two `RunLock`s in one process; the kernel drops it if the
/// process dies, so a crashed apply never leaves a stale lock (the stale text is overwritten).
/// Released by `unlock()` or on deinit. The file itself is never deleted: unlinking a lock file
/// lets a waiter lock the old inode while a newcomer locks a new one.
public final class RunLock: @unchecked Sendable {
    // @unchecked: the only mutable state is `descriptor`, and every access goes through `mutex`.

    /// Who holds (or last held) a lock, as written into the lock file.
    public struct Holder: Sendable, Equatable, CustomStringConvertible {
        public let pid: Int32
        public let hostname: String
        public let command: String
        public let since: Date

        public init(pid: Int32, hostname: String, command: String, since: Date) {
            self.pid = pid
            self.hostname = hostname
            self.command = command
            self.since = since
        }

        /// "pid 4242 (virtform apply) on hv1 since 2026-11-21T19:30:00Z"
        public var description: String {
            "pid \(pid) (\(command)) on \(hostname) since \(Self.format(since))"
        }

        var fileText: String {
            "pid=\(pid)\nhostname=\(hostname)\ncommand=\(command)\nsince=\(Self.format(since))\n"
        }

        /// Parses the file text; nil if any field is missing (e.g. the holder has locked the
        /// file but not written it yet).
        init?(fileText: String) {
            var fields: [Substring: Substring] = [:]
            for line in fileText.split(separator: "\n") {
                guard let equals = line.firstIndex(of: "=") else { continue }
                fields[line[..<equals]] = line[line.index(after: equals)...]
            }
            guard let pid = fields["pid"].flatMap({ Int32($0) }),
                  let hostname = fields["hostname"], let command = fields["command"],
                  let since = fields["since"].flatMap({ Self.parse(String($0)) })
            else { return nil }
            self.init(pid: pid, hostname: String(hostname), command: String(command), since: since)
        }

        private static func format(_ date: Date) -> String {
            ISO8601DateFormatter().string(from: date)
        }

        private static func parse(_ text: String) -> Date? {
            ISO8601DateFormatter().date(from: text)
        }
    }

    public let path: String
    public let holder: Holder
    private let mutex = NSLock()
    private var descriptor: Int32?

    private init(path: String, holder: Holder, descriptor: Int32) {
        self.path = path
        self.holder = holder
        self.descriptor = descriptor
    }

    deinit { unlock() }

    /// Whether this lock is still held (false after `unlock()`).
    public var isLocked: Bool { mutex.withLock { descriptor != nil } }

    /// Releases the lock; idempotent. Clears the holder text first, so nobody reads a released
    /// lock's holder as current.
    public func unlock() {
        mutex.withLock {
            guard let fd = descriptor else { return }
            descriptor = nil
            _ = ftruncate(fd, 0)
            _ = flock(fd, LOCK_UN)
            _ = close(fd)
        }
    }

    /// Takes the lock now or throws `.locked` naming the current holder. Never waits.
    /// - Parameter command: what the holder is doing, e.g. "virtform apply".
    public static func tryLock(at path: String, command: String) throws(ExecutionError) -> RunLock {
        let fd = try openLockFile(path)
        if let lock = try attempt(fd: fd, path: path, command: command) { return lock }
        let text = describeHolder(fd: fd)
        _ = close(fd)
        throw ExecutionError(.locked, "\(path) is locked by \(text)")
    }

    /// Takes the lock, polling every `pollInterval` until `timeout` has passed, then throws
    /// `.lockTimeout` naming the holder (a zero timeout tries once). Cancellation ends the
    /// wait with `CancellationError` as the cause of a `.lockTimeout`.
    public static func lock(
        at path: String, command: String, timeout: Duration,
        pollInterval: Duration = .milliseconds(100)
    ) async throws(ExecutionError) -> RunLock {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        let fd = try openLockFile(path)
        while true {
            let lock: RunLock?
            do {
                lock = try attempt(fd: fd, path: path, command: command)
            } catch {
                _ = close(fd)
                throw error
            }
            if let lock { return lock }
            let now = clock.now
            guard now < deadline else { break }
            do {
                try await Task.sleep(until: min(now + pollInterval, deadline), clock: clock)
            } catch {
                let text = describeHolder(fd: fd)
                _ = close(fd)
                throw ExecutionError(
                    .lockTimeout, "gave up waiting for \(path), locked by \(text)", cause: error)
            }
        }
        let text = describeHolder(fd: fd)
        _ = close(fd)
        throw ExecutionError(
            .lockTimeout, "\(path) is still locked by \(text) after waiting \(timeout)")
    }

    /// Who holds the lock at `path` now, found without touching the lock (`/proc/locks` lists
    /// the flock of every process): nil when nobody does, the file is missing, or the holder
    /// has not written itself into the file yet. For `plan` and `drift`, which never lock.
    public static func heldBy(at path: String) -> Holder? {
        holdingProcess(at: path) == nil ? nil : currentHolder(at: path)
    }

    /// The process that holds the lock at `path` now, found without touching the lock
    /// (`/proc/locks` lists the flock of every process, with its pid); nil when nobody does or
    /// the file is missing.
    public static func holdingProcess(at path: String) -> Int32? {
        var info = stat()
        // Read to its end: Foundation's String(contentsOfFile:) stops at the first 4 KiB of a /proc
        // file, and a machine with many daemons holds more locks than that (a held lock then read as free).
        guard lstat(path, &info) == 0, let locks = readToEnd("/proc/locks") else { return nil }
        // "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF" — the device as major:minor in hex.
        let device = String(format: "%02x:%02x:%d", Int(major(info.st_dev)), Int(minor(info.st_dev)), Int(info.st_ino))
        for line in locks.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count > 5 && fields[1] == "FLOCK" && fields[5] == device { return Int32(fields[4]) ?? -1 }
        }
        return nil
    }

    private static func major(_ device: dev_t) -> UInt32 { UInt32((device >> 8) & 0xfff) | UInt32((device >> 32) & ~0xfff) }
    private static func minor(_ device: dev_t) -> UInt32 { UInt32(device & 0xff) | UInt32((device >> 12) & ~0xff) }

    /// Reads who holds the lock at `path` without taking it; nil if the file is absent, empty
    /// or not in the holder format.
    public static func currentHolder(at path: String) -> Holder? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { _ = close(fd) }
        return readText(fd: fd).flatMap(Holder.init(fileText:))
    }

    // MARK: - Helpers

    /// Opens (creating) the lock file: never through a symbolic link, only a regular file of
    /// this user's, mode 0600 — so nobody else can truncate another file through it, or take the
    /// lock and hold every apply up.
    private static func openLockFile(_ path: String) throws(ExecutionError) -> Int32 {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o600)
        guard fd >= 0 else {
            if errno == ELOOP { throw ExecutionError(.lockFailed, "refusing the lock file \(path): it is a symbolic link") }
            throw failure("failed to open lock file \(path)")
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let error = failure("failed to check lock file \(path)")
            _ = close(fd)
            throw error
        }
        guard info.st_mode & S_IFMT == S_IFREG, info.st_uid == geteuid(), info.st_nlink == 1 else {
            _ = close(fd)
            throw ExecutionError(.lockFailed, "refusing the lock file \(path): it is not a regular file of user \(geteuid()) with one link")
        }
        if info.st_mode & 0o077 != 0 { _ = fchmod(fd, 0o600) }
        return fd
    }

    /// Makes `path` a directory for lock files that only this user can change: created with
    /// mode 0700 when missing; refused when it is a symbolic link, not a directory, another
    /// user's, or writable by others.
    public static func prepareDirectory(_ path: String) throws(ExecutionError) {
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw failure("failed to create the lock directory \(path)") }
        var info = stat()
        guard lstat(path, &info) == 0 else { throw failure("failed to check the lock directory \(path)") }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw ExecutionError(.lockFailed, "refusing the lock directory \(path): it is \(info.st_mode & S_IFMT == S_IFLNK ? "a symbolic link" : "not a directory")")
        }
        guard info.st_uid == geteuid() else {
            throw ExecutionError(.lockFailed, "refusing the lock directory \(path): it belongs to user \(info.st_uid), not \(geteuid())")
        }
        if info.st_mode & 0o022 != 0 && chmod(path, 0o700) != 0 {
            throw failure("failed to make the lock directory \(path) private")
        }
    }

    /// One non-blocking try. On success the lock owns `fd`; on "held elsewhere" returns nil and
    /// the caller still owns `fd`; on any other error closes `fd` and throws.
    private static func attempt(fd: Int32, path: String, command: String) throws(ExecutionError) -> RunLock? {
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if errno == EWOULDBLOCK || errno == EINTR { return nil }
            let error = failure("failed to lock \(path)")
            _ = close(fd)
            throw error
        }
        // Whole seconds, so the holder read back from the file equals this one.
        let since = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let holder = Holder(pid: getpid(), hostname: hostname(), command: command, since: since)
        let bytes = Array(holder.fileText.utf8)
        let written = ftruncate(fd, 0) == 0
            ? bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
            : -1
        guard written == bytes.count else {
            let error = failure("failed to write holder to lock file \(path)")
            _ = flock(fd, LOCK_UN)
            _ = close(fd)
            throw error
        }
        return RunLock(path: path, holder: holder, descriptor: fd)
    }

    private static func describeHolder(fd: Int32) -> String {
        guard let text = readText(fd: fd) else { return "another process (holder unknown)" }
        if let holder = Holder(fileText: text) { return holder.description }
        return "another process (holder not yet written)"
    }

    /// A file read with read(2) until its end (a /proc file reports no size).
    static func readToEnd(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { _ = close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func readText(fd: Int32) -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }

    /// This machine's host name, as a holder records it.
    public static func hostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "unknown-host" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func failure(_ message: String) -> ExecutionError {
        let code = errno
        return ExecutionError(.lockFailed, "\(message): \(String(cString: strerror(code))) (errno \(code))")
    }
}
