import Testing
import VirtformModel
import VirtformPlanning
@testable import VirtformCommands

@Suite("Driver registry")
struct DriverRegistryTests {
    @Test func everyDriverAManifestCanNameIsRegisteredOnce() {
        let names = StoragePool.Driver.allCases.map { (SystemAddress.Kind.storagePool, $0.rawValue) }
            + ISCSIExport.Driver.allCases.map { (SystemAddress.Kind.exportServer, $0.rawValue) }
            + DHCPServer.Driver.allCases.map { (SystemAddress.Kind.dhcpServer, $0.rawValue) }
        for (kind, name) in names {
            #expect(DriverRegistry.all.filter { $0.kind == kind && $0.name == name }.count == 1, "\(kind) \(name)")
        }
    }

    @Test func aPlanSaysWhichOfItsDriversAreStandIns() throws {
        var site = Site()
        site.pools = [
            StoragePool(meta: ObjectMeta(name: "tank"), driver: .zfs, dataset: "tank/vf", sshTarget: "root@storage",
                        export: ISCSIExport(driver: .lio, portal: try #require(HostPort(parsing: "10.0.0.5:3260")), iqnPrefix: "iqn.2026-11.io.example"),
                        provenance: .synthetic("test")),
            StoragePool(meta: ObjectMeta(name: "local"), driver: .btrfs, path: "/srv/pool", provenance: .synthetic("test")),
        ]
        let warnings = DriverRegistry.standInWarnings(site)
        #expect(warnings.count == 3, "\(warnings)")
        #expect(warnings.allSatisfy { $0.hasPrefix("StoragePool/tank") && $0.contains("a stand-in") })
    }
}
