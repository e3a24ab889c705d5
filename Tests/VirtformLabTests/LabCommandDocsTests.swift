import Foundation
import Testing
import VirtformLab

/// The lab's defaults are what the reference manifests and `virtform lab --root` rely on: the
/// manifests name the default lab's pool, portal, control socket and subnets, and the lab
/// command derives a root's storage and DHCP folders the way the defaults do under
/// /var/lib/virtform-lab. Pure: reads files only, starts nothing.
struct LabCommandDocsTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let defaultRoot = "/var/lib/virtform-lab"

    func manifest(_ name: String) throws -> [String] {
        let text = try String(contentsOf: Self.repository.appendingPathComponent("manifests/\(name)"), encoding: .utf8)
        return text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
    }

    @Test func defaultsLiveUnderTheDefaultRootAsTheLabCommandDerivesThem() {
        let storage = StorageLabConfiguration()
        #expect(storage.root == "\(Self.defaultRoot)/storage")
        #expect(storage.mountPoint == "\(Self.defaultRoot)/pool")
        #expect(storage.portal == "127.0.0.1:3260")
        #expect(storage.controlPort == 0)
        let dhcp = DHCPLabConfiguration()
        #expect(dhcp.root == Self.defaultRoot)
        #expect(dhcp.namespace == "vflab-dhcp")
        #expect(dhcp.controlSocket == "\(Self.defaultRoot)/kea/kea-1.sock")
    }

    @Test func referenceStoragePoolNamesTheLabsPoolAndPortal() throws {
        let lines = try manifest("storage.yaml")
        let storage = StorageLabConfiguration()
        #expect(lines.contains("path: \(storage.mountPoint)"))
        #expect(lines.contains("portal: \(storage.portal)"))
    }

    @Test func referenceDHCPServerAndNetworksAreTheLabsKea() throws {
        let lines = try manifest("network.yaml")
        let dhcp = DHCPLabConfiguration()
        #expect(lines.contains("controlSocket: \(dhcp.controlSocket)"))
        for subnet in dhcp.subnets {
            #expect(lines.contains("subnet: \(subnet.cidr)"), "manifests/network.yaml lacks subnet \(subnet.cidr)")
            if let gateway = subnet.gateway { #expect(lines.contains("gateway: \(gateway)")) }
        }
    }
}
