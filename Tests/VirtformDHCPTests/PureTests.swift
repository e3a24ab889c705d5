import Foundation
import Testing
import VirtformModel
@testable import VirtformDHCP

@Suite("DHCP reservations without a server")
struct PureTests {
    @Test func jsonKeepsNumbersAndBooleansAsSent() throws {
        let text = #"{"b":true,"f":0.875,"i":7200,"n":null,"s":"a\"\\\/\u00e9\ud83d\ude00","a":[1,-2e3,[]],"o":{}}"#
        let value = try JSONValue.parse(text)
        #expect(value["f"] == .number("0.875"))
        #expect(value["i"] == .number("7200"))
        #expect(value["b"] == .bool(true))
        #expect(value["s"] == .string("a\"\\/é😀"))
        #expect(value.canonicalText == #"{"a":[1,-2e3,[]],"b":true,"f":0.875,"i":7200,"n":null,"o":{},"s":"a\"\\/é😀"}"#)
        #expect(try JSONValue.parse(value.canonicalText) == value)
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "01x", "\"\u{01}\"", "[1] 2"] {
            #expect(throws: (any Error).self, "\(bad)") { try JSONValue.parse(bad) }
        }
        #expect(throws: (any Error).self) { try JSONValue.parse(String(repeating: "[", count: 1000)) }
    }

    @Test func completenessScannerStopsAtTheEndOfTheDocument() {
        var scanner = JSONCompletenessScanner()
        let first = scanner.feed(Array(#"{"text": "}{\"]", "a": [1"#.utf8)[...])
        let second = scanner.feed(Array(#", 2]} "#.utf8)[...])
        #expect(!first)
        #expect(second)
    }

    static let config = try! JSONValue.parse("""
        {"Dhcp4": {"valid-lifetime": 7200, "authoritative": false,
          "subnet4": [{"id": 1, "subnet": "192.168.76.0/24", "reservations": [
              {"hw-address": "02:00:00:00:00:01", "ip-address": "192.168.76.10", "hostname": "foreign", "next-server": "0.0.0.0"},
              {"client-id": "01:02", "ip-address": "192.168.76.11"}]}],
          "shared-networks": [{"name": "sn", "subnet4": [{"id": 2, "subnet": "192.168.78.0/24", "reservations": []}]}]}}
        """)

    @Test func keaEditsKeepUnownedEntriesAndFindSharedNetworks() throws {
        let add = owned("b1", mac: "02:00:00:00:00:02", "192.168.76.71", host: "vm-1")
        let back = owned("b2", mac: "02:00:00:00:00:03", "192.168.78.5", host: nil, subnet: backendSubnet)
        let edited = try KeaConfiguration.applying([.add(add), .add(back)], to: Self.config, endpoint: "kea-1")
        let found = KeaConfiguration.reservations(in: edited, subnets: [publicSubnet, backendSubnet, IPv4Subnet(parsing: "10.0.0.0/8")!])
        #expect(found.reservations.contains(unowned(mac: "02:00:00:00:00:01", "192.168.76.10", host: "foreign")))
        #expect(found.reservations.contains(add))
        #expect(found.reservations.contains(back))
        #expect(found.unserved == [IPv4Subnet(parsing: "10.0.0.0/8")!])
        // Unowned entries are byte-for-byte the same, including ones virtform cannot read.
        let entries = edited["Dhcp4"]?["subnet4"]?.arrayValue?.first?["reservations"]?.arrayValue ?? []
        #expect(Array(entries.prefix(2)) == Self.config["Dhcp4"]?["subnet4"]?.arrayValue?.first?["reservations"]?.arrayValue)
        #expect(entries.last?["user-context"]?["virtform"]?["vm"] == .string("appl-1/vm-1"))

        // Idempotent, and change/remove touch only the owned entry.
        #expect(try KeaConfiguration.applying([.add(add)], to: edited, endpoint: "kea-1") == edited)
        let moved = owned("b1", mac: "02:00:00:00:00:02", "192.168.76.72", host: "vm-1")
        let changed = try KeaConfiguration.applying([.change(from: add, to: moved)], to: edited, endpoint: "kea-1")
        #expect(KeaConfiguration.reservations(in: changed, subnets: [publicSubnet]).reservations.filter { $0.owner != nil } == [moved])
        let removed = try KeaConfiguration.applying([.remove(moved), .remove(back)], to: changed, endpoint: "kea-1")
        #expect(removed == Self.config)

        // A site's reservation in a subnet it no longer declares is found, and only virtform's.
        let elsewhere = KeaConfiguration.reservations(in: edited, subnets: [publicSubnet], ownedElsewhere: true).reservations
        #expect(elsewhere.contains(back) && !elsewhere.contains { $0.owner == nil && $0.subnet == backendSubnet })
        #expect(!KeaConfiguration.reservations(in: edited, subnets: [publicSubnet]).reservations.contains(back))
    }

    @Test(arguments: [
        owned("b1", mac: "02:00:00:00:00:09", "192.168.76.10", host: "x"),  // address
        owned("b1", mac: "02:00:00:00:00:01", "192.168.76.20", host: "x"),  // MAC
        owned("b1", mac: "02:00:00:00:00:09", "192.168.76.20", host: "FOREIGN"),  // host name
    ])
    func keaRefusesToShareWithAnUnownedReservation(_ r: Reservation) {
        #expect(throws: DHCPError.self) { try KeaConfiguration.applying([.add(r)], to: Self.config, endpoint: "kea-1") }
    }

    @Test func keaRefusesUnownedChangesAndUnservedSubnets() {
        let error = #expect(throws: DHCPError.self) {
            try KeaConfiguration.applying([.remove(unowned(mac: "02:00:00:00:00:01", "192.168.76.10", host: "foreign"))], to: Self.config, endpoint: "kea-1")
        }
        #expect(error?.message.contains("owner mark") == true)
        let elsewhere = owned("b1", mac: "02:00:00:00:00:02", "10.1.1.1", host: nil, subnet: IPv4Subnet(parsing: "10.1.1.0/24")!)
        let unserved = #expect(throws: DHCPError.self) { try KeaConfiguration.applying([.add(elsewhere)], to: Self.config, endpoint: "kea-1") }
        #expect(unserved?.message.contains("does not serve subnet 10.1.1.0/24") == true)
    }

    @Test func dnsmasqHostsFileKeepsForeignLinesExactly() throws {
        let text = """
            # hand-made, keep
            02:00:00:00:00:01,192.168.76.10,foreign,infinite
            id:01:02:03,192.168.76.12
              weird line ,, kept
            # virtform binding=b1 vm=appl-1/vm-1 interface=fe0
            02:00:00:00:00:02,192.168.76.71,vm-1

            """
        let file = DnsmasqHostsFile(parsing: text)
        #expect(file.text == text)
        let seen = file.reservations(in: [publicSubnet])
        #expect(seen == [unowned(mac: "02:00:00:00:00:01", "192.168.76.10", host: "foreign"), owned("b1", mac: "02:00:00:00:00:02", "192.168.76.71", host: "vm-1")])

        let moved = owned("b1", mac: "02:00:00:00:00:02", "192.168.76.72", host: "vm-1b")
        let edited = try file.applying([.change(from: seen[1], to: moved)], endpoint: "d")
        #expect(edited.text.hasPrefix(text.components(separatedBy: "# virtform")[0]))
        // What virtform writes carries the digest of what it reserved, so a hand edit shows.
        func applied(_ r: Reservation) -> String { " applied=\(r.digest)" }
        #expect(edited.text.hasSuffix("# virtform binding=b1 vm=appl-1/vm-1 interface=fe0\(applied(moved))\n02:00:00:00:00:02,192.168.76.72,vm-1b\n"))
        #expect(DnsmasqHostsFile(parsing: edited.text).reservations(in: [publicSubnet]).last?.untouched == true)
        #expect(try edited.applying([.remove(moved)], endpoint: "d").text == text.components(separatedBy: "# virtform")[0])
        // Re-applying what is there changes nothing; a changed entry stays in its place.
        #expect(try edited.applying([.change(from: moved, to: moved)], endpoint: "d") == edited)
        let first = owned("a0", mac: "02:00:00:00:00:0a", "192.168.76.30", host: nil)
        let two = try edited.applying([.add(first)], endpoint: "d")
        let third = try two.applying([.change(from: moved, to: seen[1])], endpoint: "d")
        #expect(third.text.hasSuffix("interface=fe0\(applied(seen[1]))\n02:00:00:00:00:02,192.168.76.71,vm-1\n# virtform binding=a0 vm=appl-1/vm-1 interface=fe0\(applied(first))\n02:00:00:00:00:0a,192.168.76.30\n"))
        // Edited by hand under virtform's mark: the digest no longer matches.
        let byHand = DnsmasqHostsFile(parsing: third.text.replacingOccurrences(of: "192.168.76.30", with: "192.168.76.31"))
        #expect(byHand.reservations(in: [publicSubnet]).first { $0.owner?.binding == "a0" }?.untouched == false)
        #expect(throws: DHCPError.self) {
            try file.applying([.add(owned("b2", mac: "02:00:00:00:00:05", "192.168.76.10", host: nil))], endpoint: "d")
        }
        #expect(DnsmasqHostsFile(parsing: "").text == "")
        #expect(DnsmasqHostsFile(parsing: "a\nb").text == "a\nb")
    }

    static func observation(_ endpoints: [(String, [Reservation]?)]) -> DHCPObservation {
        DHCPObservation(
            server: "s", subnets: [publicSubnet],
            endpoints: endpoints.map { name, r in
                EndpointObservation(name: name, state: r.map { .observed(reservations: $0, unservedSubnets: []) } ?? .unreachable(reason: "down"))
            },
            token: DHCPVersionToken(endpoints: [:]))
    }

    @Test func comparisonPlansChangesAndReportsDrift() {
        let foreign = unowned(mac: "02:00:00:00:00:01", "192.168.76.10", host: "foreign")
        let a = owned("a", mac: "02:00:00:00:00:0a", "192.168.76.20", host: "a")
        let b = owned("b", mac: "02:00:00:00:00:0b", "192.168.76.21", host: "b")
        let bMoved = owned("b", mac: "02:00:00:00:00:0b", "192.168.76.22", host: "b")
        let c = owned("c", mac: "02:00:00:00:00:0c", "192.168.76.23", host: "c")
        let old = owned("old", mac: "02:00:00:00:00:0d", "192.168.76.24", host: "old")
        let clash = owned("d", mac: "02:00:00:00:00:0e", "192.168.76.10", host: "d")

        let seen = Self.observation([("kea-1", [foreign, a, b, old])])
        let result = seen.compare(desired: [a, bMoved, c, clash])
        #expect(result.changes == [.change(from: b, to: bMoved), .add(c), .remove(old)])
        #expect(result.drift.contains(.missing(c, endpoints: ["kea-1"])))
        #expect(result.drift.contains(.changed(observed: b, desired: bMoved, endpoint: "kea-1")))
        #expect(result.drift.contains(.orphaned(old, endpoint: "kea-1")))
        #expect(result.drift.contains(.conflict(desired: clash, heldBy: foreign, field: .address, endpoint: "kea-1")))
        #expect(!result.incomplete)

        // An unreachable endpoint is never empty: nothing is removed.
        let partial = Self.observation([("kea-1", [a, old]), ("kea-2", nil)])
        #expect(partial.compare(desired: [a]).changes == [])
        #expect(partial.compare(desired: [a]).incomplete)

        // HA peers that disagree: reported, and the lagging peer gets the reservation again.
        let pair = Self.observation([("kea-1", [a]), ("kea-2", [])])
        #expect(pair.peerDisagreements == [.peersDisagree(subnet: publicSubnet, mac: a.mac, held: [
            PeerReservation(endpoint: "kea-1", reservation: a), PeerReservation(endpoint: "kea-2", reservation: nil)])])
        #expect(pair.compare(desired: [a]).changes == [.change(from: a, to: a)])
    }

    @Test func concurrentEditsAreJudgedByWhatTheChangesTouch() {
        let a = owned("a", mac: "02:00:00:00:00:0a", "192.168.76.20", host: "a")
        let a2 = owned("a", mac: "02:00:00:00:00:0a", "192.168.76.30", host: "a")
        let elsewhere = unowned(mac: "02:00:00:00:00:99", "192.168.76.99", host: "z")
        #expect(conflictingEdits([.change(from: a, to: a2)], observed: [a], current: [a, elsewhere]) == nil)
        #expect(conflictingEdits([.change(from: a, to: a2)], observed: [a], current: []) != nil)
        #expect(conflictingEdits([.change(from: a, to: a2)], observed: [a], current: [a, unowned(mac: "02:00:00:00:00:98", "192.168.76.30", host: nil)]) != nil)
    }

    @Test func registryKnowsItsDriversByName() throws {
        let server = DHCPServer(meta: ObjectMeta(name: "s"), driver: .kea, endpoints: [], provenance: provenance)
        #expect(try DHCPDrivers.driver(for: server) is KeaDriver)
        #expect(try DHCPDrivers.driver(named: "dnsmasq", server: server) is DnsmasqDriver)
        let error = #expect(throws: DHCPError.self) { try DHCPDrivers.driver(named: "isc", server: server) }
        #expect(error?.message.contains("known drivers: kea, dnsmasq") == true)
    }

    @Test func anUnreachableKeaIsReportedNotEmpty() async throws {
        let server = DHCPServer(meta: ObjectMeta(name: "s"), driver: .kea,
                                endpoints: [.init(name: "kea-9", controlSocket: "/nonexistent/kea.sock")], provenance: provenance)
        let driver = try DHCPDrivers.driver(for: server)
        let error = await #expect(throws: DHCPError.self) { try await driver.probe() }
        #expect(error?.message.contains("kea-9") == true && error?.message.contains("/nonexistent/kea.sock") == true)
        let seen = try await driver.observe(subnets: [publicSubnet])
        guard case .unreachable(let reason) = seen.endpoints[0].state else {
            Issue.record("an unreachable endpoint must not read as observed")
            return
        }
        #expect(reason.contains("config-get"))
        #expect(!seen.isComplete)
    }
}
