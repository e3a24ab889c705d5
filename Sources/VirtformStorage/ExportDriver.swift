import Foundation
import VirtformModel
import VirtformSystem

/// One volume to export: it becomes the target `<iqnPrefix>:<project>.<volume>` with the volume
/// as LUN 1.
public struct ExportRequest: Sendable, Hashable {
    public var project: String
    public var volume: String
    /// The file or device to serve (`StorageDriver.backingPath`).
    public var backingPath: String

    public init(project: String, volume: String, backingPath: String) {
        self.project = project
        self.volume = volume
        self.backingPath = backingPath
    }
}

/// A LUN of an observed target.
public struct ObservedTargetLUN: Sendable, Hashable {
    public var lun: Int
    public var backingPath: String
    /// The size the target serves, as the target reports it. tgt reports decimal megabytes,
    /// rounded to the nearest, so this is `MB × 1,000,000`; the exact size is what READ CAPACITY(16)
    /// returns through the `ISCSI` module.
    public var reportedSize: UInt64
    /// Whether the backing file is still there: a LUN deleted under a target stays served from
    /// the open file until the target goes.
    public var backingExists: Bool

    public init(lun: Int, backingPath: String, reportedSize: UInt64, backingExists: Bool) {
        self.lun = lun
        self.backingPath = backingPath
        self.reportedSize = reportedSize
        self.backingExists = backingExists
    }
}

/// An iSCSI target as observed on the export server.
public struct ObservedTarget: Sendable, Hashable {
    /// tgt's target id (lio: 0).
    public var tid: Int
    public var iqn: String
    /// Data LUNs (tgt's controller LUN 0 is left out).
    public var luns: [ObservedTargetLUN]
    /// Initiators allowed to log in (`ALL` for everyone).
    public var boundInitiators: [String]
    /// Initiators logged in now.
    public var connectedInitiators: [String]
    /// Whether virtform made it (see `TgtExportDriver` for the rule).
    public var isOwned: Bool

    public init(tid: Int, iqn: String, luns: [ObservedTargetLUN], boundInitiators: [String], connectedInitiators: [String], isOwned: Bool) {
        self.tid = tid
        self.iqn = iqn
        self.luns = luns
        self.boundInitiators = boundInitiators
        self.connectedInitiators = connectedInitiators
        self.isOwned = isOwned
    }

    /// `project.volume` parsed from `<prefix>:<project>.<volume>`, when the IQN has that form.
    public func volume(prefix: String) -> (project: String, volume: String)? {
        guard iqn.hasPrefix(prefix + ":") else { return nil }
        let parts = iqn.dropFirst(prefix.count + 1).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, Names.isName(parts[0]), Names.isName(parts[1]) else { return nil }
        return (String(parts[0]), String(parts[1]))
    }
}

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
}

extension ExportDriver {
    public func iqn(project: String, volume: String) -> String { "\(iqnPrefix):\(project).\(volume)" }
}

/// Finds export drivers by the manifest's driver name.
public enum ExportDrivers {
    public static let names = ISCSIExport.Driver.allCases.map(\.rawValue)

    /// The driver for `export`. `tgtControlPort` picks the tgtd instance (`tgtadm -C N`).
    public static func driver(
        for export: ISCSIExport, tgtControlPort: Int = 0, runner: any CommandRunner = LocalCommandRunner()
    ) throws -> any ExportDriver {
        try driver(named: export.driver.rawValue, export: export, tgtControlPort: tgtControlPort, runner: runner)
    }

    public static func driver(
        named name: String, export: ISCSIExport, tgtControlPort: Int = 0, runner: any CommandRunner = LocalCommandRunner()
    ) throws -> any ExportDriver {
        switch name {
        case "tgt": return TgtExportDriver(export: export, controlPort: tgtControlPort, runner: runner)
        case "lio": return LIOExportDriver(export: export, runner: runner)
        default:
            throw StorageError(.invalid, "unknown export driver '\(name)'; known drivers: \(names.joined(separator: ", "))")
        }
    }
}
