import Foundation
import Testing
import VirtformDHCP
import VirtformLab
import VirtformModel
import VirtformRemote
import VirtformStorage
import VirtformSystem

/// The pool, its iSCSI export and a dnsmasq hosts file on "another machine": driven through
/// `virtform agent` over a real OpenSSH sshd that lets virtform's key run nothing else.
extension StackTests {
    /// The whole stack with its pool and export over ssh: apply clones, exports and marks
    /// through the agent, the next plan is clean, drift is seen, a path outside the agent's
    /// `--allow` is refused, and an unknown storage machine key leaves the pool unreadable —
    /// never empty.
    @Test(.enabled(if: SSHLab.unmetRequirements() == nil, Comment(rawValue: SSHLab.unmetRequirements() ?? "")))
    func aPoolAndItsExportOnAnotherMachine() async throws {
        try await StackSite.with(agent: true) { site in
            let agent = try #require(site.agent)
            let text = try String(contentsOfFile: site.directory + "/site.yaml", encoding: .utf8)
            #expect(text.contains("ssh: {target: root@127.0.0.1, port: \(agent.port)"), "\(text)")
            var (output, code) = await site.run(["apply", "--auto-approve"])
            try #require(code == 0, "\(output)")
            #expect(!output.contains("a stand-in"), "ssh is no stand-in now:\n\(output)")
            // Made there: the clone with its mark, the target serving it.
            let clone = site.mountPoint + "/appl/web-1.img"
            #expect(FileManager.default.fileExists(atPath: clone), "the LUN was not cloned at \(clone)")
            let tgtadm = try #require(Executables.find("tgtadm"))
            let show = try await Command.run([tgtadm, "-C", "\(StackSite.controlPort)", "--lld", "iscsi", "--op", "show", "--mode", "target"])
            #expect(show.standardOutput.contains("iqn.2026-11.io.virtform.stack:appl.web-1"), "\(show.standardOutput)")
            (output, code) = await site.run(["plan", "--detailed-exitcode"])
            #expect(code == 0, "over ssh, a freshly applied site must show no differences:\n\(output)")

            // Drift through the agent: the target removed behind virtform's back.
            let tid = try #require(show.standardOutput.split(separator: "\n").first { $0.contains("appl.web-1") }
                .flatMap { $0.split(separator: " ").dropFirst().first }.map { String($0).trimmingCharacters(in: CharacterSet(charactersIn: ":")) })
            _ = try await Command.run([tgtadm, "-C", "\(StackSite.controlPort)", "--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", tid, "--force"])
            (output, code) = await site.run(["drift"])
            #expect(code == 2 && output.contains("missing ISCSITarget/appl/web-1"), "\(output)")
            (output, code) = await site.run(["apply", "--auto-approve"])
            #expect(code == 0, "\(output)")

            // A pool path the agent is not allowed: refused there, and the plan says so.
            let outside = text.replacingOccurrences(of: "path: \(site.mountPoint)", with: "path: /srv/not-allowed")
            try outside.write(toFile: site.directory + "/site.yaml", atomically: true, encoding: .utf8)
            (output, code) = await site.run(["plan"])
            #expect(code == 1 && output.contains("may not use /srv/not-allowed"), "\(output)")
            #expect(!output.contains("- StorageVolume/"), "an unreadable pool's LUNs must not look deleted:\n\(output)")

            // The storage machine's key not in the file: unreachable, with the file named.
            let empty = site.root + "/empty_known_hosts"
            try "".write(toFile: empty, atomically: true, encoding: .utf8)
            try text.replacingOccurrences(of: "knownHosts: \(agent.knownHosts)", with: "knownHosts: \(empty)")
                .write(toFile: site.directory + "/site.yaml", atomically: true, encoding: .utf8)
            (output, code) = await site.run(["plan"])
            #expect(code == 1 && output.contains("the SSH host key of 127.0.0.1:\(agent.port) is unknown or changed: it is not in \(empty)"), "\(output)")
            #expect(!output.contains("- StorageVolume/") && !output.contains("- ISCSITarget/"), "\(output)")

            try text.write(toFile: site.directory + "/site.yaml", atomically: true, encoding: .utf8)
            (output, code) = await site.run(["plan", "--detailed-exitcode"])
            #expect(code == 0, "\(output)")
        }
    }

    /// dnsmasq's hosts file edited over ssh by the agent: a real client gets the reserved
    /// address, a concurrent edit keeps its code across the link, and a hosts file outside the
    /// agent's `--allow` is refused.
    @Test(.enabled(if: SSHLab.unmetRequirements() == nil && DHCPLab.unmetRequirements(server: .dnsmasq) == nil,
                   Comment(rawValue: SSHLab.unmetRequirements() ?? DHCPLab.unmetRequirements(server: .dnsmasq) ?? "")))
    func dnsmasqsHostsFileOnAnotherMachine() async throws {
        var template = Array("/tmp/vftest-remote-XXXXXX".utf8CString)
        let root = String(cString: try #require(mkdtemp(&template)))
        chmod(root, 0o755)
        let dhcp = DHCPLab(configuration: DHCPLabConfiguration(root: root + "/dhcp", server: .dnsmasq, namespace: "vfremote-dns"))
        let ssh = SSHLab(configuration: LabConfiguration(root: root), basePort: 0)
        var failure: (any Error)?
        do {
            _ = try await dhcp.up()
            let program = try #require(virtformExecutable(), "the virtform executable is built next to the tests")
            let hostsDirectory = (dhcp.configuration.hostsFile as NSString).deletingLastPathComponent
            let lab = try await ssh.upAgent(program: program, allow: [hostsDirectory])
            let access = SSHAccess(target: "root@127.0.0.1", port: lab.port, identity: lab.identity, knownHosts: lab.knownHosts)
            let server = DHCPServer(meta: ObjectMeta(name: "remote-dnsmasq"), driver: .dnsmasq,
                                    endpoints: [.init(name: "dnsmasq-1", hostsFile: dhcp.configuration.hostsFile, pidFile: dhcp.configuration.pidFile)],
                                    ssh: access, provenance: .synthetic("test"))
            let driver = RemoteDrivers.dhcp(for: server, access: access)
            try await driver.probe()
            let subnet = try #require(IPv4Subnet(parsing: "192.168.76.0/24"))
            let wanted = Reservation(subnet: subnet, mac: try #require(MACAddress(parsing: "02:00:00:76:00:71")), address: try #require(IPv4Address(parsing: "192.168.76.71")),
                                     hostname: "vm-1", owner: OwnerMark(binding: "vm-1-fe0", vm: try #require(VMID(parsing: "appl-1/vm-1")), interface: "fe0", site: "remote"))
            let seen = try await driver.observe(subnets: [subnet])
            #expect(seen.endpoints.first?.reservations == [])
            _ = try await driver.apply(seen.compare(desired: [wanted]).changes, basedOn: seen.token)
            let lease = try await dhcp.requestLease(mac: "02:00:00:76:00:71")
            #expect(lease.address == "192.168.76.71" && lease.hostname == "vm-1")
            let again = try await driver.observe(subnets: [subnet])
            #expect(again.compare(desired: [wanted]).changes.isEmpty)

            // Edited by hand after the observation: the agent's concurrentEdit arrives as one.
            let text = try String(contentsOfFile: dhcp.configuration.hostsFile, encoding: .utf8)
            try FileSystem.writeFile(dhcp.configuration.hostsFile, text.replacingOccurrences(of: "192.168.76.71", with: "192.168.76.90"), mode: 0o644, owner: nil)
            let stale = again.endpoints.first?.reservations?.first
            let error = await #expect(throws: DHCPError.self) { try await driver.apply([.remove(try #require(stale))], basedOn: again.token) }
            #expect(error?.code == .concurrentEdit, "\(String(describing: error))")

            // Outside --allow: refused by the agent, and the endpoint reads as unreachable.
            let elsewhere = DHCPServer(meta: ObjectMeta(name: "elsewhere"), driver: .dnsmasq,
                                       endpoints: [.init(name: "dnsmasq-2", hostsFile: "/etc/virtform-test-hosts", pidFile: dhcp.configuration.pidFile)],
                                       ssh: access, provenance: .synthetic("test"))
            let refused = try await RemoteDrivers.dhcp(for: elsewhere, access: access).observe(subnets: [subnet])
            guard case .unreachable(let reason)? = refused.endpoints.first?.state else {
                Issue.record("a hosts file outside --allow was read: \(refused)")
                throw SystemError("refused")
            }
            #expect(reason.contains("may not use /etc/virtform-test-hosts"), "\(reason)")
        } catch {
            failure = error
        }
        do { try await ssh.down() } catch { failure = failure ?? error }
        do { try await dhcp.down() } catch { failure = failure ?? error }
        try? FileManager.default.removeItem(atPath: root)
        if let failure { throw failure }
    }
}
