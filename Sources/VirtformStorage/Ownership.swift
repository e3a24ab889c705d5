import Foundation
import VirtformModel

#if canImport(Glibc)
    import Glibc
#endif

extension OwnershipMark {
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
