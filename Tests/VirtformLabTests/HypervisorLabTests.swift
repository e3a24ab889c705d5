import Foundation
import Libvirt
import Testing
import VirtformSystem
import VirtformLab

// One suite, serialized: every lab of the tests uses the same users (vfltesthN), and a lab's
// teardown ends every lab process of its users.
@Suite(
    "Hypervisor lab (real libvirtd + QEMU)", .serialized,
    .enabled(if: labUnavailable == nil, Comment(rawValue: labUnavailable ?? "")))
struct HypervisorLabTests {
    @Test func upStatusAndIdempotentDown() async throws {
        let hosts = try await LabFixture.with(hosts: 2) { lab, hosts in
            #expect(hosts.map(\.name) == ["lab-h1", "lab-h2"])
            #expect(hosts.map(\.user) == ["vfltesth1", "vfltesth2"])
            #expect(Set(hosts.map(\.hostUUID)).count == 2)
            #expect(hosts[0].qemuURI == "qemu+unix:///session?socket=\(hosts[0].runtimeDirectory)/libvirt/libvirt-sock")

            let status = await lab.status()
            #expect(status.map(\.state) == hosts.map { .up($0) })

            // up again keeps the running daemons.
            let again = try await lab.up(hosts: 2)
            #expect(again.map(\.pid) == hosts.map(\.pid))

            // Each daemon reports its own configured host UUID, over both drivers.
            for host in hosts {
                let qemu = try await Connection.open(uri: host.qemuURI)
                #expect(try await qemu.hostUUID == host.hostUUID)
                await qemu.close()
                let test = try await Connection.open(uri: host.testURI)
                #expect(try await test.listAllDomains().contains { $0.name == "test" })
                await test.close()
            }
            return hosts
        }
        for host in hosts {
            #expect(kill(host.pid, 0) != 0 || isZombie(host.pid), "libvirtd \(host.pid) still runs after down")
            #expect(!FileManager.default.fileExists(atPath: host.runtimeDirectory))
        }
    }

    @Test func downIsIdempotentAndCopesWithAHalfMadeLab() async throws {
        try await LabFixture.with(hosts: 1) { lab, hosts in
            try await lab.down()
            try await lab.down()
            #expect(await lab.status().map(\.state) == [.down(reason: "not started")])

            // A stale PID file (a dead process) is "down", not "up" and not an error.
            let pidFile = URL(fileURLWithPath: hosts[0].runtimeDirectory).deletingLastPathComponent()
                .appendingPathComponent("libvirtd.pid").path
            try "999999\n".write(toFile: pidFile, atomically: true, encoding: .utf8)
            guard case .down = try await lab.state(of: 1) else {
                Issue.record("a dead PID must read as down")
                return
            }
            // An unreadable one cannot tell.
            try "garbage\n".write(toFile: pidFile, atomically: true, encoding: .utf8)
            guard case .unknown = try await lab.state(of: 1) else {
                Issue.record("a garbage PID file must read as unknown")
                return
            }
            try await lab.down()
            // And up works again after all that, with the same host UUID.
            let restarted = try await lab.up(hosts: 1)
            #expect(restarted[0].hostUUID == hosts[0].hostUUID)
            #expect(restarted[0].pid != hosts[0].pid)
        }
    }

    @Test func liveMigrationBetweenHosts() async throws {
        try await LabFixture.with(hosts: 2) { _, hosts in
            let source = try await Connection.open(uri: hosts[0].qemuURI)
            let destination = try await Connection.open(uri: hosts[1].qemuURI)
            let name = "vftest-mig-\(UUID().uuidString.prefix(8).lowercased())"

            let domain = try await source.define(xml: guestXML(name: name))
            try await domain.create()
            #expect(try await domain.state == .running)
            let info = try await domain.info
            #expect(info.maxMemoryKiB == 65536)

            let started = ContinuousClock.now
            let migrated = try await domain.migrate(
                to: destination, uri: "tcp://127.0.0.1", flags: [.live, .persistDestination, .undefineSource])
            let took = ContinuousClock.now - started
            print("live migration of a 64 MiB TCG guest took \(took)")
            #expect(took < .seconds(30))

            #expect(migrated.uuid == domain.uuid)
            #expect(try await migrated.state == .running)
            #expect(try await migrated.isPersistent)
            #expect(try await source.domain(named: name) == nil)
            let listed = try await destination.listAllDomains().first { $0.name == name }
            #expect(listed?.state == .running)
            #expect(listed?.isPersistent == true)

            try await migrated.destroy()
            try await migrated.undefine()
            #expect(try await destination.domain(named: name) == nil)
            await source.close()
            await destination.close()
        }
    }

    @Test func aStoppedHostIsDownAndUnreachable() async throws {
        try await LabFixture.with(hosts: 2) { lab, hosts in
            // A connection and an event stream opened while the host was still up.
            let early = try await Connection.open(uri: hosts[1].testURI)
            let events = try await early.domainLifecycleEvents()

            try await lab.stopHost(2)

            // The lost connection ends the event stream and makes lookups fail; a domain is
            // never reported absent because its host cannot be asked.
            try await withDeadline(.seconds(15), "event stream of a stopped host to finish") {
                for await _ in events {}
            }
            #expect(!early.isAlive)
            await #expect(throws: LibvirtError.self) { _ = try await early.domain(named: "test") }
            await early.close()

            let status = await lab.status()
            #expect(status.count == 2)
            #expect(status.first { $0.index == 1 }?.state == .up(hosts[0]))
            guard case .down = status.first(where: { $0.index == 2 })?.state else {
                Issue.record("host 2 should be down, got \(String(describing: status.last))")
                return
            }

            // Opening fails with libvirt's own error, quickly: not a crash, not a hang.
            let uri = hosts[1].qemuURI
            let outcome = try await withDeadline(.seconds(15), "open of a stopped host") {
                await Result { try await Connection.open(uri: uri) }
            }
            switch outcome {
            case .success:
                Issue.record("opening a stopped host succeeded")
            case .failure(let error):
                let libvirtError = try #require(error as? LibvirtError)
                #expect(libvirtError.code == .systemError)
                #expect(libvirtError.message.contains("libvirt-sock"))
            }

            // And it comes back with the same identity.
            let restarted = try await lab.startHost(2)
            #expect(restarted.hostUUID == hosts[1].hostUUID)
            let connection = try await Connection.open(uri: restarted.qemuURI)
            #expect(try await connection.hostUUID == hosts[1].hostUUID)
            await connection.close()
        }
    }

    /// Many calls in flight on one remote connection (the lab daemon's test driver).
    @Test func thousandDomainsEightInFlight() async throws {
        try await LabFixture.with(hosts: 1) { _, hosts in
            let connection = try await Connection.open(uri: hosts[0].testURI)
            let names = (0..<1000).map { "bulk-\($0)" }
            let clock = ContinuousClock()

            let defineTime = try await clock.measure {
                try await forEach(names, inFlight: 8) { name in
                    _ = try await connection.define(xml: testDomainXML(name: name))
                }
            }
            let listed = try await connection.listAllDomains().filter { $0.name.hasPrefix("bulk-") }
            #expect(listed.count == 1000)

            let domains = listed.map(\.domain)
            let fetchTime = try await clock.measure {
                try await forEach(domains, inFlight: 8) { domain in
                    let xml = try await domain.xml(flags: .inactive)
                    #expect(xml.contains("<name>\(domain.name)</name>"))
                }
            }
            let serialTime = try await clock.measure {
                for domain in domains.prefix(200) { _ = try await domain.xml(flags: .inactive) }
            }
            print("1,000 domains over test+unix: define \(defineTime), XML fetch with 8 in flight \(fetchTime), 200 serial fetches \(serialTime)")
            #expect(fetchTime < .seconds(30))
            await connection.close()
        }
    }
}

/// Runs `body` for every element with at most `limit` calls in flight.
private func forEach<T: Sendable>(
    _ items: [T], inFlight limit: Int, _ body: @escaping @Sendable (T) async throws -> Void
) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        for (index, item) in items.enumerated() {
            if index >= limit { try await group.next() }
            group.addTask { try await body(item) }
        }
        try await group.waitForAll()
    }
}

private func testDomainXML(name: String) -> String {
    """
    <domain type='test'>
      <name>\(name)</name>
      <memory unit='MiB'>64</memory>
      <vcpu>1</vcpu>
      <os><type arch='x86_64'>hvm</type></os>
    </domain>
    """
}

private func isZombie(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return true }
    return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first == "Z"
}
