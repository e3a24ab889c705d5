import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A system user as the password database knows it.
public struct SystemUser: Sendable, Hashable {
    public let name: String
    public let uid: UInt32
    public let gid: UInt32
    public let home: String

    /// The user called `name`, nil if there is none; throws if the lookup itself fails.
    public static func lookup(_ name: String) throws -> SystemUser? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        let code = getpwnam_r(name, &entry, &buffer, buffer.count, &result)
        if code != 0 {
            throw SystemError("failed to look up user '\(name)': \(String(cString: strerror(code)))")
        }
        guard result != nil else { return nil }
        return SystemUser(
            name: name, uid: entry.pw_uid, gid: entry.pw_gid, home: String(cString: entry.pw_dir))
    }
}

public enum FileSystem {
    /// Creates `path` (not its parents) if missing, then sets its mode and owner.
    public static func makeDirectory(_ path: String, mode: mode_t, owner: SystemUser?) throws {
        if mkdir(path, mode) != 0 && errno != EEXIST {
            throw SystemError("failed to create directory \(path): \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw SystemError("failed to create directory \(path): it exists and is not a directory")
        }
        try setOwnerAndMode(path, mode: mode, owner: owner)
    }

    public static func setOwnerAndMode(_ path: String, mode: mode_t, owner: SystemUser?) throws {
        if let owner, lchown(path, owner.uid, owner.gid) != 0 {
            throw SystemError("failed to change the owner of \(path): \(String(cString: strerror(errno)))")
        }
        if chmod(path, mode) != 0 {
            throw SystemError("failed to change the mode of \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Writes `text` to `path` by writing a new file and renaming it into place, so an existing
    /// symlink at `path` is replaced rather than followed, then sets owner and mode.
    public static func writeFile(_ path: String, _ text: String, mode: mode_t, owner: SystemUser?) throws {
        let temporary = "\(path).tmp-\(getpid())"
        unlink(temporary)
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8)) else {
            throw SystemError("failed to write \(temporary)")
        }
        try setOwnerAndMode(temporary, mode: mode, owner: owner)
        if rename(temporary, path) != 0 {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw SystemError("failed to write \(path): \(reason)")
        }
    }

    /// Removes `path` and everything below it; a missing path is fine.
    public static func remove(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        do {
            try FileManager.default.removeItem(atPath: path)
        } catch {
            throw SystemError("failed to remove \(path): \(error.localizedDescription)")
        }
    }

    public static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }
}

public enum UnixSocket {
    /// Whether something accepts connections on the Unix socket at `path` right now.
    /// Returns nil on success, else why not.
    public static func probe(_ path: String) -> String? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return "socket(): \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { return "socket path is longer than \(capacity - 1) bytes" }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        // A full backlog (EAGAIN) still means a listener is there.
        if result == 0 || errno == EAGAIN { return nil }
        return String(cString: strerror(errno))
    }

    /// The longest path a Unix socket address holds.
    public static let maximumPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1
}

/// Ports on 127.0.0.1.
public enum LoopbackPort {
    /// A TCP port nobody listens on now: the kernel picks one for a socket that is closed again
    /// at once. Whoever takes it must start listening soon (and retry on a clash).
    public static func free() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0 else { throw SystemError("bind: \(String(cString: strerror(errno)))") }
        let named = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        guard named == 0 else { throw SystemError("getsockname: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

public enum Executables {
    /// The first executable called `name` in the usual system directories, or nil.
    public static func find(_ name: String) -> String? {
        for directory in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"] {
            let path = "\(directory)/\(name)"
            if access(path, X_OK) == 0 { return path }
        }
        return nil
    }
}
