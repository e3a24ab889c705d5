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
