import Foundation
import VirtformModel
import VirtformSystem

/// An iSCSI export server's driver. Observation throws when the server cannot be read: it never
/// reports "no targets" for a server it could not ask.
public protocol ExportDriver: Sendable {
    /// Target names are `<iqnPrefix>:<project>.<volume>`.
    var iqnPrefix: String { get }
    /// Checks the server can be used now (program installed, daemon answering).
    func probe() async throws
    /// Every target on the server, ours or not, sorted by IQN.
    func observe() async throws -> [ObservedTarget]
    /// Exports each volume as its own target with LUN 1, bound to the pool's initiators.
    /// A target already exporting the same backing path is left alone. Each target is made
    /// whole or not at all.
    func export(_ requests: [ExportRequest]) async throws
    /// Removes a target of ours; refuses while initiators are connected unless `force`.
    func unexport(iqn: String, force: Bool) async throws
    /// Makes the pool's CHAP accounts as `ExportCredentials` say (with `rotate`, made anew with
    /// the current secrets) and binds them to each target of `iqns`. Sessions already logged in
    /// stay; the next login needs the new secret.
    func secure(_ iqns: [String], rotate: Bool) async throws
    /// Admits the initiator names `add` to the target `iqn` and stops admitting `remove` (the
    /// sessions of those already logged in stay until they log out).
    func admit(iqn: String, add: [String], remove: [String]) async throws
}

extension ExportDriver {
    public func admit(iqn: String, add: [String], remove: [String]) async throws {
        throw StorageError(.unsupported, "this export driver cannot change a target's initiators")
    }

    public func secure(_ iqns: [String], rotate: Bool) async throws {
        throw StorageError(.unsupported, "this export driver cannot set CHAP accounts")
    }
}

/// CHAP secrets as read for one run (from the manifest's `secretRef`s): never printed, never
/// stored.
public struct ExportCredentials: Sendable, Hashable, Codable, CustomStringConvertible {
    public struct Account: Sendable, Hashable, Codable {
        public var username: String
        public var password: String
        public init(username: String, password: String) {
            self.username = username
            self.password = password
        }
    }
    public var initiator: Account
    public var mutual: Account?

    public init(initiator: Account, mutual: Account? = nil) {
        self.initiator = initiator
        self.mutual = mutual
    }

    public var description: String { "CHAP accounts \(initiator.username)\(mutual.map { ", \($0.username)" } ?? "") (sensitive)" }
    /// The passwords, to be kept out of every message.
    public var secrets: [String] { [initiator.password] + (mutual.map { [$0.password] } ?? []) }
}

extension ExportDriver {
    public func iqn(project: String, volume: String) -> String { "\(iqnPrefix):\(project).\(volume)" }
}

/// Finds export drivers by the manifest's driver name.
public enum ExportDrivers {
    public static let names = ISCSIExport.Driver.allCases.map(\.rawValue)

    /// The driver for `export`. `tgtControlPort` picks the tgtd instance (`tgtadm -C N`).
    public static func driver(
        for export: ISCSIExport, tgtControlPort: Int = 0, credentials: ExportCredentials? = nil, runner: any CommandRunner = LocalCommandRunner()
    ) throws -> any ExportDriver {
        try driver(named: export.driver.rawValue, export: export, tgtControlPort: tgtControlPort, credentials: credentials, runner: runner)
    }

    public static func driver(
        named name: String, export: ISCSIExport, tgtControlPort: Int = 0, credentials: ExportCredentials? = nil,
        runner: any CommandRunner = LocalCommandRunner()
    ) throws -> any ExportDriver {
        switch name {
        case "tgt": return TgtExportDriver(export: export, controlPort: tgtControlPort, credentials: credentials, runner: runner)
        case "lio": return LIOExportDriver(export: export, runner: runner)
        default:
            throw StorageError(.invalid, "unknown export driver '\(name)'; known drivers: \(names.joined(separator: ", "))")
        }
    }
}
