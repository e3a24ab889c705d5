import Foundation
import Testing
import VirtformLab
import VirtformModel
import VirtformSystem
@testable import VirtformDHCP

private let dnsmasqMissing = DHCPLab.unmetRequirements(server: .dnsmasq)

@Suite("dnsmasq driver (real dnsmasq + udhcpc)", .serialized, .enabled(if: dnsmasqMissing == nil, Comment(rawValue: dnsmasqMissing ?? "")))
struct DnsmasqIntegrationTests {
    @Test func clientGetsTheReservedAddressAndForeignLinesStay() async throws {
        try await LabFixture.with(.dnsmasq, tag: "dnsm1") { lab in
            let hostsFile = lab.configuration.hostsFile
            let foreign = "# written by hand\n02:00:00:76:00:10,192.168.76.10,foreign\n"
            try FileSystem.writeFile(hostsFile, foreign, mode: 0o644, owner: nil)
            let driver = try DHCPDrivers.driver(for: dnsmasqServer(lab))
            try await driver.probe()

            let vm1 = owned("vm-1-fe0", mac: "02:00:00:76:00:71", "192.168.76.71", host: "vm-1")
            let seen = try await driver.observe(subnets: [publicSubnet])
            #expect(seen.endpoints[0].reservations == [unowned(mac: "02:00:00:76:00:10", "192.168.76.10", host: "foreign")])
            _ = try await driver.apply(seen.compare(desired: [vm1]).changes, basedOn: seen.token)
            var lease = try await lab.requestLease(mac: vm1.mac.description)
            #expect(lease.address == "192.168.76.71")
            #expect(lease.hostname == "vm-1")

            let moved = owned("vm-1-fe0", mac: "02:00:00:76:00:71", "192.168.76.72", host: "vm-1b")
            let again = try await driver.observe(subnets: [publicSubnet])
            #expect(again.compare(desired: [moved]).changes == [.change(from: vm1, to: moved)])
            _ = try await driver.apply(again.compare(desired: [moved]).changes, basedOn: again.token)
            lease = try await lab.requestLease(mac: vm1.mac.description)
            #expect(lease.address == "192.168.76.72")
            #expect(lease.hostname == "vm-1b")

            let text = try String(contentsOfFile: hostsFile, encoding: .utf8)
            #expect(text == foreign + "# virtform binding=vm-1-fe0 vm=appl-1/vm-1 interface=fe0 applied=\(moved.digest)\n02:00:00:76:00:71,192.168.76.72,vm-1b\n")
            #expect(try await lab.requestLease(mac: "02:00:00:76:00:10").address == "192.168.76.10")

            // Somebody edits virtform's line after the observation: detected by the file's hash.
            let stale = try await driver.observe(subnets: [publicSubnet])
            try FileSystem.writeFile(hostsFile, text.replacingOccurrences(of: "192.168.76.72", with: "192.168.76.90"), mode: 0o644, owner: nil)
            let error = await #expect(throws: DHCPError.self) {
                try await driver.apply([.remove(moved)], basedOn: stale.token)
            }
            #expect(error?.code == .concurrentEdit)
        }
    }

    @Test func probeNamesAMissingDaemon() async throws {
        let server = DHCPServer(meta: ObjectMeta(name: "s"), driver: .dnsmasq,
                                endpoints: [.init(name: "dnsmasq-9", hostsFile: "/tmp/vf-no-such-dir/hosts", pidFile: "/tmp/vf-no-such.pid")],
                                provenance: provenance)
        let error = await #expect(throws: DHCPError.self) { try await DHCPDrivers.driver(for: server).probe() }
        #expect(error?.message.contains("dnsmasq-9") == true)
    }
}
