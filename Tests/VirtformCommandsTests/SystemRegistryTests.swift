import Testing
import VirtformModel
import VirtformPlanning
@testable import VirtformCommands

@Suite("Systems: one shape for every kind")
struct SystemRegistryTests {
    /// A host, a pool with its export server and a DHCP server, none of which exist.
    static func site() throws -> Site {
        var site = Site()
        site.hosts = [Host(meta: ObjectMeta(name: "h1"), uri: "test+unix:///default?socket=/nonexistent/vf-registry.sock",
                           capacity: Capacity(memory: .mebibytes(1024), vcpus: 4), bridges: [], provenance: .synthetic("test"))]
        site.pools = [StoragePool(meta: ObjectMeta(name: "p1"), driver: .btrfs, path: "/nonexistent/vf-registry-pool",
                                  export: ISCSIExport(driver: .tgt, portal: try #require(HostPort(parsing: "127.0.0.1:3260")),
                                                      iqnPrefix: "iqn.2026-12.io.virtform.registry"),
                                  provenance: .synthetic("test"))]
        site.dhcpServers = [DHCPServer(meta: ObjectMeta(name: "d1"), driver: .kea,
                                       endpoints: [.init(name: "kea-1", controlSocket: "/nonexistent/vf-registry-kea.sock")],
                                       provenance: .synthetic("test"))]
        return site
    }

    @Test func everyDeclaredSystemHasOneDriverFromTheRegisteredKinds() throws {
        let site = try Self.site()
        let addresses = SystemKinds.all.flatMap { $0.drivers(for: site) }.map(\.address)
        #expect(addresses.sorted() == [.host("h1"), .dhcpServer("d1"), .pool("p1")].sorted())
    }

    /// Whatever the kind, a system that cannot be read is unreachable with the reason, never
    /// empty, and apply gets no session for it.
    @Test func aSystemThatCannotBeReadIsUnreachableNotEmpty() async throws {
        let result = await SiteReader.read(site: try Self.site(), timeout: .seconds(2))
        guard case .unreachable(let reason)? = result.observation.hosts.hosts["h1"] else {
            Issue.record("host: \(String(describing: result.observation.hosts.hosts["h1"]))"); return
        }
        #expect(!reason.isEmpty)
        guard case .unreachable(let poolReason)? = result.observation.pools["p1"] else {
            Issue.record("pool: \(String(describing: result.observation.pools["p1"]))"); return
        }
        #expect(poolReason.contains("/nonexistent/vf-registry-pool"), "\(poolReason)")
        // An endpoint that does not answer is unreachable inside the server's reading.
        if case .read(let observation)? = result.observation.dhcpServers["d1"] {
            #expect(observation.endpoints.allSatisfy { if case .unreachable = $0.state { true } else { false } })
        } else if case .unreachable? = result.observation.dhcpServers["d1"] {
        } else {
            Issue.record("DHCP server not recorded")
        }
        #expect(result.systems[.host("h1")] == nil && result.systems[.pool("p1")] == nil && result.systems[.exportServer("p1")] == nil)
    }
}
