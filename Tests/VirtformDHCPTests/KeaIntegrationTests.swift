import Foundation
import Testing
import VirtformLab
import VirtformModel
import VirtformSystem
@testable import VirtformDHCP

private let keaMissing = DHCPLab.unmetRequirements(server: .kea)

/// Real kea-dhcp4 in a namespace of the test's own, and a real DHCP client (busybox udhcpc)
/// in another one with the VM's MAC.
@Suite("Kea driver (real kea-dhcp4 + udhcpc)", .serialized, .enabled(if: keaMissing == nil, Comment(rawValue: keaMissing ?? "")))
struct KeaIntegrationTests {
    let vm1 = owned("vm-1-fe0", mac: "02:00:00:76:00:71", "192.168.76.71", host: "vm-1")

    @Test func clientGetsTheReservedAddressAndHostNameAndFollowsAChangedBinding() async throws {
        let vm1 = self.vm1
        try await LabFixture.with(tag: "kea1") { lab in
            let socket = lab.configuration.controlSocket
            try await editBehindTheBack(socket) { $0.append(keaEntry(mac: "02:00:00:76:00:10", ip: "192.168.76.10", host: "foreign")) }
            let driver = try DHCPDrivers.driver(for: keaServer([lab]))
            try await driver.probe()

            let seen = try await driver.observe(subnets: [publicSubnet, backendSubnet])
            let plan = seen.compare(desired: [vm1])
            #expect(plan.changes == [.add(vm1)])
            let report = try await driver.apply(plan.changes, basedOn: seen.token)
            #expect(report.roundTrips == 4)  // config-get, config-test, config-set, config-write
            var lease = try await lab.requestLease(mac: vm1.mac.description)
            #expect(lease.address == "192.168.76.71")
            #expect(lease.hostname == "vm-1")

            // The binding moves to another address and host name.
            let moved = owned("vm-1-fe0", mac: "02:00:00:76:00:71", "192.168.76.72", host: "vm-1b")
            let again = try await driver.observe(subnets: [publicSubnet, backendSubnet])
            let change = again.compare(desired: [moved])
            #expect(change.changes == [.change(from: vm1, to: moved)])
            _ = try await driver.apply(change.changes, basedOn: again.token)
            lease = try await lab.requestLease(mac: vm1.mac.description)
            #expect(lease.address == "192.168.76.72")
            #expect(lease.hostname == "vm-1b")

            // The unowned reservation is still there, unchanged, and still served.
            let after = try await driver.observe(subnets: [publicSubnet])
            #expect(after.endpoints[0].reservations?.contains(unowned(mac: "02:00:00:76:00:10", "192.168.76.10", host: "foreign")) == true)
            #expect(try await lab.requestLease(mac: "02:00:00:76:00:10").address == "192.168.76.10")
            // Nothing left to do: converged.
            #expect(after.compare(desired: [moved]).changes == [])
        }
    }

    @Test func aReservationDeletedBehindVirtformsBackShowsAsMissing() async throws {
        let vm1 = self.vm1
        try await LabFixture.with(tag: "kea2") { lab in
            let driver = try DHCPDrivers.driver(for: keaServer([lab]))
            let seen = try await driver.observe(subnets: [publicSubnet])
            _ = try await driver.apply([.add(vm1)], basedOn: seen.token)
            try await editBehindTheBack(lab.configuration.controlSocket) { $0.removeAll { $0["hw-address"] == .string("02:00:00:76:00:71") } }

            let after = try await driver.observe(subnets: [publicSubnet])
            let result = after.compare(desired: [vm1])
            #expect(result.drift.contains(.missing(vm1, endpoints: ["kea-1"])))
            #expect(result.changes == [.add(vm1)])
            _ = try await driver.apply(result.changes, basedOn: after.token)
            #expect(try await lab.requestLease(mac: vm1.mac.description).address == "192.168.76.71")

            // A binding gone from the manifests: its reservation is removed, nothing else.
            let final = try await driver.observe(subnets: [publicSubnet])
            let removal = final.compare(desired: [])
            #expect(removal.changes == [.remove(vm1)])
            _ = try await driver.apply(removal.changes, basedOn: final.token)
            #expect(try await driver.observe(subnets: [publicSubnet]).endpoints[0].reservations == [])
        }
    }

    @Test func reservationsSurviveAKeaRestart() async throws {
        let vm1 = self.vm1
        try await LabFixture.with(tag: "kea3") { lab in
            let driver = try DHCPDrivers.driver(for: keaServer([lab]))
            let backend = owned("vm-1-be0", mac: "02:00:00:78:00:05", "192.168.78.5", host: "vm-1-be", subnet: backendSubnet)
            let seen = try await driver.observe(subnets: [publicSubnet, backendSubnet])
            _ = try await driver.apply(seen.compare(desired: [vm1, backend]).changes, basedOn: seen.token)
            let before = await lab.status()
            let pid = try await lab.restartServer()
            #expect(before != .up(pid: pid))
            let after = try await driver.observe(subnets: [publicSubnet, backendSubnet])
            #expect(Set(after.endpoints[0].reservations ?? []) == [vm1, backend])
            #expect(try await lab.requestLease(mac: backend.mac.description, subnet: 1).address == "192.168.78.5")
        }
    }

    @Test func concurrentEditsAreDetected() async throws {
        let vm1 = self.vm1
        try await LabFixture.with(tag: "kea4") { lab in
            let socket = lab.configuration.controlSocket
            let driver = try DHCPDrivers.driver(for: keaServer([lab]))
            let first = try await driver.observe(subnets: [publicSubnet])
            _ = try await driver.apply([.add(vm1)], basedOn: first.token)

            // Somebody moves virtform's reservation between observe and apply: refused.
            let seen = try await driver.observe(subnets: [publicSubnet])
            try await editBehindTheBack(socket) { entries in
                for i in entries.indices where entries[i]["hw-address"] == .string("02:00:00:76:00:71") {
                    guard case .object(var e) = entries[i] else { continue }
                    e["ip-address"] = .string("192.168.76.99")
                    entries[i] = .object(e)
                }
            }
            let moved = owned("vm-1-fe0", mac: "02:00:00:76:00:71", "192.168.76.72", host: "vm-1")
            let error = await #expect(throws: DHCPError.self) { try await driver.apply([.change(from: vm1, to: moved)], basedOn: seen.token) }
            #expect(error?.code == .concurrentEdit)
            #expect(error?.message.contains("kea-1") == true)

            // An unrelated edit in between: the changes still apply cleanly, on the new configuration.
            let fresh = try await driver.observe(subnets: [publicSubnet])
            try await editBehindTheBack(socket) { $0.append(keaEntry(mac: "02:00:00:76:00:50", ip: "192.168.76.50", host: "other")) }
            let report = try await driver.apply(fresh.compare(desired: [moved]).changes, basedOn: fresh.token)
            #expect(report.endpoints[0].rebased)
            let now = try await driver.observe(subnets: [publicSubnet]).endpoints[0].reservations ?? []
            #expect(Set(now) == [moved, unowned(mac: "02:00:00:76:00:50", "192.168.76.50", host: "other")])

            // A reservation that would take an unowned one's address: a conflict, not planned.
            let clash = owned("vm-2-fe0", vm: "vm-2", mac: "02:00:00:76:00:02", "192.168.76.50", host: "vm-2")
            let last = try await driver.observe(subnets: [publicSubnet])
            let result = last.compare(desired: [moved, clash])
            #expect(result.changes == [])
            #expect(result.drift.contains { if case .conflict(clash, _, .address, "kea-1") = $0 { true } else { false } })
            let refused = await #expect(throws: DHCPError.self) { try await driver.apply([.add(clash)], basedOn: last.token) }
            #expect(refused?.code == .conflict)
        }
    }

    @Test func keaRejectionsNameTheEndpointCommandAndText() async throws {
        try await LabFixture.with(tag: "kea5") { lab in
            let channel = KeaControlChannel(endpoint: "kea-1", path: lab.configuration.controlSocket, timeout: .seconds(10))
            let error = await #expect(throws: DHCPError.self) {
                try await channel.send("config-test", arguments: .object(["Dhcp4": .object(["bogus": .number("1")])]))
            }
            #expect(error?.message.contains("kea-1") == true)
            #expect(error?.message.contains("`config-test`") == true)
            #expect(error?.message.contains("unsupported global configuration parameter: bogus") == true)
        }
    }

    @Test func anHAPairIsUpdatedOnBothPeersAndDisagreementShows() async throws {
        let vm1 = self.vm1
        try await LabFixture.with(tags: ["ha1", "ha2"]) { labs in
            let driver = try DHCPDrivers.driver(for: keaServer(labs))
            let seen = try await driver.observe(subnets: [publicSubnet])
            let report = try await driver.apply(seen.compare(desired: [vm1]).changes, basedOn: seen.token)
            #expect(report.endpoints.map(\.endpoint) == ["kea-1", "kea-2"])
            for lab in labs {
                #expect(try await lab.requestLease(mac: vm1.mac.description).address == "192.168.76.71")
            }

            // One peer loses the reservation: the observation says the peers disagree, and the
            // next apply puts it back on that peer only.
            try await editBehindTheBack(labs[1].configuration.controlSocket) { $0.removeAll() }
            let split = try await driver.observe(subnets: [publicSubnet])
            #expect(split.peerDisagreements == [.peersDisagree(subnet: publicSubnet, mac: vm1.mac, held: [
                PeerReservation(endpoint: "kea-1", reservation: vm1), PeerReservation(endpoint: "kea-2", reservation: nil)])])
            let repair = split.compare(desired: [vm1])
            #expect(repair.drift.contains(.missing(vm1, endpoints: ["kea-2"])))
            let fixed = try await driver.apply(repair.changes, basedOn: split.token)
            #expect(fixed.endpoints.map(\.modified) == [false, true])
            let healed = try await driver.observe(subnets: [publicSubnet])
            #expect(healed.peerDisagreements == [])

            // A peer that is down reads as unreachable, not empty; applying names it and says
            // which peer was already updated.
            try await labs[1].stopServer()
            let half = try await driver.observe(subnets: [publicSubnet])
            guard case .unreachable = half.endpoints[1].state else {
                Issue.record("a stopped peer must read as unreachable")
                return
            }
            #expect(half.compare(desired: []).changes == [])  // no removal while a peer cannot be read
            let moved = owned("vm-1-fe0", mac: "02:00:00:76:00:71", "192.168.76.72", host: "vm-1")
            let error = await #expect(throws: DHCPError.self) {
                try await driver.apply([.change(from: vm1, to: moved)], basedOn: healed.token)
            }
            #expect(error?.endpoint == "kea-2")
            #expect(error?.message.contains("already updated: kea-1") == true)
        }
    }
}
