import Foundation
import VirtformModel
import VirtformStorage

/// Reads the secrets a manifest names by reference, when a system is read or changed. The
/// value is returned to the driver that needs it and goes nowhere else: not into plans, JSON,
/// logs or messages (errors name the reference: `$NAME`, `file PATH`).
enum Secrets {
    struct Missing: Error, CustomStringConvertible {
        let description: String
    }

    /// The secret `reference` holds, for `what` (named in the error when it cannot be read).
    static func value(_ reference: SecretRef, for what: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        switch reference.source {
        case .environment(let name):
            guard let value = environment[name], !value.isEmpty else {
                throw Missing(description: "\(what): the environment variable \(name) is not set (its secretRef names it)")
            }
            return value
        case .file(let path):
            // One open, then its mode and its bytes from that descriptor: no race between them.
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                throw Missing(description: "\(what): cannot read the secret file \(path): \(String(cString: strerror(errno)))")
            }
            let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
            var info = stat()
            guard fstat(fd, &info) == 0 else {
                throw Missing(description: "\(what): cannot read the secret file \(path): \(String(cString: strerror(errno)))")
            }
            // As ssh does for keys: a secret others can read is refused, not used.
            guard info.st_mode & 0o077 == 0 else {
                throw Missing(description: "\(what): the secret file \(path) can be read by others (mode \(String(info.st_mode & 0o777, radix: 8))); chmod 600 it")
            }
            let data = (try? handle.readToEnd()) ?? Data()
            let value = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
            guard !value.isEmpty else { throw Missing(description: "\(what): the secret file \(path) is empty") }
            return value
        }
    }

    /// A pool's CHAP accounts with their secrets, or nil when it asks for no CHAP.
    static func credentials(_ pool: StoragePool) throws -> ExportCredentials? {
        guard let chap = pool.export?.chap else { return nil }
        let what = "StoragePool/\(pool.name) spec.export.chap"
        let initiator = ExportCredentials.Account(username: chap.initiator.username, password: try value(chap.initiator.secret, for: what))
        let mutual = try chap.mutual.map {
            ExportCredentials.Account(username: $0.username, password: try value($0.secret, for: what + ".mutual"))
        }
        return ExportCredentials(initiator: initiator, mutual: mutual)
    }
}
