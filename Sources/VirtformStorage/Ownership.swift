import Foundation
import VirtformModel

#if canImport(Glibc)
    import Glibc
#endif

/// The mark virtform puts on everything it creates: which kind of object, its name and, for a
/// clone, the snapshot it came from. Stored as the xattr `user.virtform.owner` (btrfs, dir), the
/// user property `io.virtform:owner` (zfs). The text form is `key=value` pairs joined by commas,
/// e.g. `kind=lun,name=appl-1/vm-1,origin=masters/osol-0811@version-01`: names never contain
/// `,` or `=`, and the text passes through a remote shell unharmed.
public struct OwnershipMark: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        case project, image, snapshot, lun
    }

    public var kind: Kind
    /// `project`, `project/volume` or `project/image@snapshot`.
    public var name: String
    /// The snapshot a LUN was cloned from.
    public var origin: SnapshotReference?

    public init(kind: Kind, name: String, origin: SnapshotReference? = nil) {
        self.kind = kind
        self.name = name
        self.origin = origin
    }

    public var description: String {
        var text = "kind=\(kind.rawValue),name=\(name)"
        if let origin { text += ",origin=\(origin)" }
        return text
    }

    /// Parses the text form; nil for anything else (which then counts as no mark at all).
    public init?(parsing text: String) {
        var fields: [String: String] = [:]
        for pair in text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { return nil }
            fields[String(parts[0])] = String(parts[1])
        }
        guard let kind = fields["kind"].flatMap(Kind.init(rawValue:)), let name = fields["name"], !name.isEmpty else { return nil }
        self.kind = kind
        self.name = name
        if let origin = fields["origin"] {
            guard let reference = SnapshotReference(parsing: origin) else { return nil }
            self.origin = reference
        }
    }

    /// The extended attribute holding the mark on btrfs and dir pools.
    public static let attributeName = "user.virtform.owner"
    /// The zfs user property holding the mark.
    public static let zfsProperty = "io.virtform:owner"

    /// The mark on the file or directory at `path`: nil when it has none (or an unreadable one).
    /// Throws only when the file cannot be examined at all (missing, I/O error).
    public static func read(path: String) throws -> OwnershipMark? {
        var buffer = [UInt8](repeating: 0, count: 1024)
        let length = buffer.withUnsafeMutableBytes { XAttr.get(path, attributeName, $0.baseAddress!, $0.count) }
        if length < 0 {
            let code = errno
            if code == ENODATA || code == ENOTSUP { return nil }
            throw StorageError(code == ENOENT ? .notFound : .failed,
                               "failed to read the ownership mark of \(path): \(String(cString: strerror(code)))")
        }
        return OwnershipMark(parsing: String(decoding: buffer[..<length], as: UTF8.self))
    }

    /// Writes this mark on `path`.
    public func write(path: String) throws {
        let bytes = Array(description.utf8)
        if XAttr.set(path, Self.attributeName, bytes, bytes.count, 0) != 0 {
            throw StorageError.failed("set the ownership mark on \(path)", String(cString: strerror(errno)))
        }
    }
}

/// Whether an observed object was made by virtform.
public enum Ownership: Sendable, Hashable {
    case owned(OwnershipMark)
    /// No mark: virtform reports it and never modifies or deletes it.
    case unowned

    public var mark: OwnershipMark? {
        if case .owned(let mark) = self { return mark }
        return nil
    }

    public var isOwned: Bool { mark != nil }

    init(_ mark: OwnershipMark?) {
        self = mark.map(Ownership.owned) ?? .unowned
    }
}

/// lgetxattr and lsetxattr from glibc: `sys/xattr.h` is not part of Glibc's Swift module, so
/// they are looked up once by name (the same way VirtformSystem reaches hidden glibc symbols).
enum XAttr {
    private typealias Get = @convention(c) (UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafeMutableRawPointer?, Int) -> Int
    private typealias Set = @convention(c) (UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafeRawPointer?, Int, Int32) -> Int32

    private static let getter: Get? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "lgetxattr").map { unsafeBitCast($0, to: Get.self) }
    private static let setter: Set? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "lsetxattr").map { unsafeBitCast($0, to: Set.self) }

    static func get(_ path: String, _ name: String, _ buffer: UnsafeMutableRawPointer, _ size: Int) -> Int {
        guard let getter else {
            errno = ENOTSUP
            return -1
        }
        return getter(path, name, buffer, size)
    }

    static func set(_ path: String, _ name: String, _ value: UnsafeRawPointer, _ size: Int, _ flags: Int32) -> Int32 {
        guard let setter else {
            errno = ENOTSUP
            return -1
        }
        return setter(path, name, value, size, flags)
    }
}
