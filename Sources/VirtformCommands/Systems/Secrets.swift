import Crypto
import Foundation
import Libvirt
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

/// What a libvirt secret of virtform's keeps in its description instead of its value: a
/// salted SHA-256 of it, so that a rotated secret is seen as changed (the secret itself is
/// private: libvirt never gives the value back).
enum SecretDigest {
    static let prefix = "virtform CHAP secret of "
    /// PBKDF2-HMAC-SHA256 rounds: a guess costs this many HMACs (the description can be read
    /// by whoever may list the host's secrets; CHAP secrets should be long and random).
    static let iterations = 10_000

    /// What a secret says while its value is being set: no digest, so never current.
    static func pending(username: String) -> String { "\(prefix)\(username); value being set" }

    static func describe(_ value: String, username: String, iterations: Int = iterations) -> String {
        let salt = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        return "\(prefix)\(username); pbkdf2-sha256 \(iterations) \(salt) \(digest(salt: salt, iterations: iterations, value))"
    }

    /// PBKDF2 (RFC 8018) with HMAC-SHA256, one 32-byte block.
    static func digest(salt: String, iterations: Int, _ value: String) -> String {
        let key = SymmetricKey(data: Data(value.utf8))
        var block = Data(HMAC<SHA256>.authenticationCode(for: Data(salt.utf8) + [0, 0, 0, 1], using: key))
        var result = [UInt8](block)
        for _ in 1..<max(1, iterations) {
            block = Data(HMAC<SHA256>.authenticationCode(for: block, using: key))
            for (i, byte) in block.enumerated() { result[i] ^= byte }
        }
        return result.map { String(format: "%02x", $0) }.joined()
    }

    /// Whether `description` records `value`; nil when it records nothing virtform wrote.
    static func matches(_ description: String?, _ value: String) -> Bool? {
        guard let description, description.hasPrefix(prefix), let range = description.range(of: "; pbkdf2-sha256 ") else { return nil }
        let parts = description[range.upperBound...].split(separator: " ")
        guard parts.count == 3, let rounds = Int(parts[0]), (1...10_000_000).contains(rounds) else { return nil }
        return digest(salt: String(parts[1]), iterations: rounds, value) == parts[2]
    }

    /// The host's secrets of the `wanted` usages, each saying whether it holds what its
    /// reference holds now (nil when the reference cannot be read: the pool says why).
    static func observe(on connection: Connection, wanted: [String: SecretRef]) async throws -> [ObservedSecret] {
        try await connection.listAllSecrets().compactMap { summary in
            guard let reference = wanted[summary.usageID] else { return nil }
            let value = try? Secrets.value(reference, for: summary.usageID)
            return ObservedSecret(usage: summary.usageID, uuid: summary.uuid,
                                  current: value.flatMap { matches(summary.description, $0) } ?? (value == nil ? nil : false))
        }
    }
}
