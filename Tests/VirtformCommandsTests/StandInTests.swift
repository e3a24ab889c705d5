import Testing
import VirtformModel
@testable import VirtformCommands

@Suite("Stand-in drivers in a plan")
struct StandInWarningTests {
    @Test func aPlanSaysWhichOfItsDriversAreStandIns() throws {
        var site = Site()
        site.pools = [
            StoragePool(meta: ObjectMeta(name: "tank"), driver: .zfs, dataset: "tank/vf", sshTarget: "root@storage",
                        export: ISCSIExport(driver: .lio, portal: try #require(HostPort(parsing: "10.0.0.5:3260")), iqnPrefix: "iqn.2026-11.io.example"),
                        provenance: .synthetic("test")),
            StoragePool(meta: ObjectMeta(name: "local"), driver: .btrfs, path: "/srv/pool", provenance: .synthetic("test")),
        ]
        let warnings = StandIns.warnings(site)
        // zfs and lio; ssh is real now (the agent over OpenSSH, tested against a real sshd).
        #expect(warnings.count == 2, "\(warnings)")
        #expect(warnings.allSatisfy { $0.hasPrefix("StoragePool/tank") && $0.contains("a stand-in") })
    }
}
