import Testing
import VirtformModel

@Suite("Quantities and addresses")
struct QuantityTests {
    @Test("sizes people write", arguments: [
        ("1024", UInt64(1024) << 20),
        ("1GiB", UInt64(1) << 30),
        ("512MiB", UInt64(512) << 20),
        ("1.5GiB", UInt64(1536) << 20),
        ("2 G", UInt64(2) << 30),
        ("100KB", UInt64(100_000)),
        ("64MiB", UInt64(64) << 20),
        ("0.5", UInt64(512) << 10),
    ])
    func sizesParse(text: String, bytes: UInt64) {
        #expect(ByteSize(parsing: text)?.bytes == bytes)
    }

    @Test("sizes that are not sizes", arguments: [
        "1.5 lemons", "", "GiB", "1..5GiB", "-1GiB", "1e9", "1 GiB GiB", "0.0000001B", "99999999999999999999GiB", ".",
    ])
    func sizesRejected(text: String) {
        #expect(ByteSize(parsing: text) == nil)
    }

    @Test func sizeDescriptionUsesLargestExactUnit() {
        #expect(ByteSize.gibibytes(1).description == "1GiB")
        #expect(ByteSize.mebibytes(1536).description == "1536MiB")
        #expect(ByteSize(bytes: 100).description == "100B")
    }

    @Test func ipv4AndSubnets() throws {
        let subnet = try #require(IPv4Subnet(parsing: "192.168.76.0/24"))
        #expect(subnet.contains(IPv4Address(parsing: "192.168.76.71")!))
        #expect(!subnet.contains(IPv4Address(parsing: "192.168.77.1")!))
        #expect(!subnet.isUsableHostAddress(IPv4Address(parsing: "192.168.76.255")!))
        #expect(!subnet.isUsableHostAddress(IPv4Address(parsing: "192.168.76.0")!))
        #expect(IPv4Subnet(parsing: "192.168.76.5/24") == nil, "a host address is not a subnet")
        for bad in ["256.1.1.1", "1.2.3", "01.2.3.4", "1.2.3.4.5", "a.b.c.d", ""] {
            #expect(IPv4Address(parsing: bad) == nil, "\(bad)")
        }
        #expect(IPv4Address(parsing: "10.0.0.1")?.description == "10.0.0.1")
    }

    @Test func macAddresses() throws {
        let mac = try #require(MACAddress(parsing: "52:54:00:AB:cd:01"))
        #expect(mac.description == "52:54:00:ab:cd:01")
        #expect(mac.isLocallyAdministered)
        #expect(!mac.isMulticast)
        #expect(MACAddress(parsing: "01:00:5e:00:00:01")!.isMulticast)
        #expect(MACAddress(parsing: "52:54:00:ab:cd") == nil)
        #expect(MACAddress(parsing: "52:54:00:ab:cd:zz") == nil)
    }

    @Test func references() {
        #expect(VMID(parsing: "appl-1:vm-1") == VMID(project: "appl-1", name: "vm-1"))
        #expect(VMID(parsing: "appl-1/vm-1")?.domainName == "appl-1:vm-1")
        #expect(VMID(parsing: "appl-1") == nil)
        #expect(SnapshotReference(parsing: "masters/osol-0811@version-01")?.snapshot == "version-01")
        #expect(SnapshotReference(parsing: "masters/osol-0811") == nil)
    }

    @Test func names() {
        #expect(Names.isName("appl-1"))
        #expect(!Names.isName("Appl-1"))
        #expect(!Names.isName("-a"))
        #expect(!Names.isName(String(repeating: "a", count: 64)))
        #expect(Names.isHostname("vm-host1.example.com"))
        #expect(Names.isIQNPrefix("iqn.2026-11.io.virtform"))
        #expect(!Names.isIQNPrefix("iqn.26-11.io.virtform"))
        #expect(HostPort(parsing: "127.0.0.1:3260") == HostPort(host: "127.0.0.1", port: 3260))
        #expect(HostPort(parsing: "127.0.0.1:99999") == nil)
    }

    @Test func suggestionsFindTypos() {
        #expect(Suggestion.nearest(to: "memroy", in: ["memory", "vcpus"]) == "memory")
        #expect(Suggestion.nearest(to: "Hots", in: ["Host", "Cluster"]) == "Host")
        #expect(Suggestion.nearest(to: "zzzzzz", in: ["memory", "vcpus"]) == nil)
    }
}
