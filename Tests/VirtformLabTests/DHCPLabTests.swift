import Foundation
import Testing
import VirtformLab
import VirtformSystem

/// A DHCP lab of its own for one test: a fresh temporary root and namespace names nobody else
/// uses, torn down when `body` ends, also when it throws.
enum DHCPLabFixture {
    static func with<T: Sendable>(
        _ server: DHCPLabServer = .kea, tag: String, _ body: @Sendable (DHCPLab) async throws -> T
    ) async throws -> T {
        var template = Array("/tmp/vfdhcp-XXXXXX".utf8CString)
        guard let pointer = mkdtemp(&template) else { throw CocoaError(.fileWriteUnknown) }
        let root = String(cString: pointer)
        let lab = DHCPLab(configuration: DHCPLabConfiguration(root: root, server: server, namespace: "vft-\(tag)-\(getpid())"))
        let outcome = await Result { try await body(lab) }
        let teardown = await Result { try await lab.down() }
        try? FileManager.default.removeItem(atPath: root)
        let value = try outcome.get()
        try teardown.get()
        return value
    }
}

private let keaMissing = DHCPLab.unmetRequirements(server: .kea)

@Suite("DHCP lab (real kea-dhcp4, namespaces, udhcpc)", .enabled(if: keaMissing == nil, Comment(rawValue: keaMissing ?? "")))
struct DHCPLabTests {
    @Test func upStatusRestartAndIdempotentDown() async throws {
        let (configuration, pid) = try await DHCPLabFixture.with(tag: "lab1") { lab in
            let pid = try await lab.up()
            #expect(await lab.status() == .up(pid: pid))
            #expect(UnixSocket.probe(lab.configuration.controlSocket) == nil)
            // up again keeps the running server.
            #expect(try await lab.up() == pid)

            // A client on each subnet gets an address from the pool, none outside the namespaces.
            let lease = try await lab.requestLease(mac: "02:00:00:aa:00:01", subnet: 0)
            #expect(lease.address.hasPrefix("192.168.76."))
            let backend = try await lab.requestLease(mac: "02:00:00:aa:00:02", subnet: 1)
            #expect(backend.address.hasPrefix("192.168.78."))

            let restarted = try await lab.restartServer()
            #expect(restarted != pid)
            #expect(!Processes.isRunning(pid))
            #expect(await lab.status() == .up(pid: restarted))

            try await lab.down()
            try await lab.down()
            #expect(!Processes.isRunning(restarted))
            guard case .down = await lab.status() else {
                Issue.record("a lab that is down must say so")
                return (lab.configuration, restarted)
            }
            return (lab.configuration, restarted)
        }
        #expect(!Processes.isRunning(pid))
        #expect(!FileManager.default.fileExists(atPath: "/run/netns/\(configuration.namespace)"))
        #expect(!FileManager.default.fileExists(atPath: configuration.directory))
    }

    @Test func copesWithAHalfMadeLab() async throws {
        try await DHCPLabFixture.with(tag: "lab2") { lab in
            // The namespace alone, no server: up finishes the job, down removes it.
            let ip = try #require(Executables.find("ip"))
            try await Command.run([ip, "netns", "add", lab.configuration.namespace]).checked([ip, "netns", "add"])
            guard case .down = await lab.status() else {
                Issue.record("a namespace without a server is down")
                return
            }
            let pid = try await lab.up()
            #expect(Processes.isRunning(pid))
            // A server killed behind the lab's back reads as down, and up starts a new one.
            kill(pid, SIGKILL)
            #expect(await poll(within: .seconds(5)) { !Processes.isRunning(pid) })
            guard case .down = await lab.status() else {
                Issue.record("a dead server is down")
                return
            }
            let again = try await lab.up()
            #expect(again != pid)
        }
    }
}
