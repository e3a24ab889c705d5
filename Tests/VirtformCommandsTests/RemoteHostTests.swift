import Foundation
import Synchronization
import Testing
import VirtformLab
import VirtformSystem

/// The site's hypervisors reached as remote hosts: through each lab host's own OpenSSH sshd on
/// loopback, with libvirt's libssh client, the Host's `spec.ssh` key and known_hosts file.
extension EndToEndTests {
    /// The end-to-end flow once over ssh, with real QEMU guests: apply from scratch, then no
    /// differences, a clean drift check, a change applied, and a live migration between the two
    /// hosts over their ssh connections.
    @Test(.enabled(if: SSHLab.unmetRequirements() == nil, Comment(rawValue: SSHLab.unmetRequirements() ?? "")))
    func theWholeFlowOverSSH() async throws {
        try await E2ESite.with(hosts: 2, driver: .qemu, ssh: true) { site in
            let hosts = try String(contentsOfFile: site.directory + "/site.yaml", encoding: .utf8)
            #expect(hosts.contains("qemu+libssh://vfetesth1@127.0.0.1:") && hosts.contains("knownHosts:"), "\(hosts)")
            var (output, code) = await site.apply()
            #expect(code == 0, "\(output)")
            #expect(output.contains("Apply: 6 done, 0 failed, 0 skipped"), "\(output)")
            #expect(try await site.domains(on: 0) == ["appl:db-1": false, "appl:web-1": true])
            #expect(try await site.domains(on: 1) == ["appl:web-2": true])
            (output, code) = await runVirtform(["plan", "--detailed-exitcode", site.directory])
            #expect(code == 0, "over ssh, a freshly applied site must show no differences:\n\(output)")
            (output, code) = await runVirtform(["drift", site.directory])
            #expect(code == 0, "\(output)")

            // web-2 pinned to the first host instead: a live migration between the ssh hosts.
            let file = site.directory + "/site.yaml"
            let text = try String(contentsOfFile: file, encoding: .utf8)
            let web2 = try #require(text.range(of: "metadata: {name: web-2}"))
            let pin = try #require(text.range(of: "placement: {host: e2e-h2}", range: web2.upperBound..<text.endIndex))
            try text.replacingCharacters(in: pin, with: "placement: {host: e2e-h1}").write(toFile: file, atomically: true, encoding: .utf8)
            (output, code) = await runVirtform(["plan", site.directory])
            #expect(output.contains("migrate"), "\(output)")
            (output, code) = await site.apply()
            #expect(code == 0, "\(output)")
            #expect(try await site.domains(on: 0)["appl:web-2"] == true, "web-2 runs on e2e-h1 after the move")
            #expect(try await site.domains(on: 1)["appl:web-2"] == nil)
            (output, code) = await runVirtform(["plan", "--detailed-exitcode", site.directory])
            #expect(code == 0, "\(output)")
        }
    }

    /// A host whose SSH host key is not the one in its known_hosts file is unreachable with a
    /// message naming the host and the file; its guests are unknown, never absent.
    @Test(.enabled(if: SSHLab.unmetRequirements() == nil, Comment(rawValue: SSHLab.unmetRequirements() ?? "")))
    func aChangedOrUnknownHostKeyIsAnErrorNamingHostAndFile() async throws {
        try await E2ESite.with(hosts: 1, driver: .qemu, ssh: true) { site in
            var (output, code) = await site.apply()
            try #require(code == 0, "\(output)")
            let access = try #require(site.hosts[0].ssh)
            let file = site.directory + "/site.yaml"
            let original = try String(contentsOfFile: file, encoding: .utf8)

            // Another key recorded for the host's address: "changed".
            let other = site.lab.configuration.root + "/other-key"
            _ = try await Command.run([try #require(Executables.find("ssh-keygen")), "-q", "-t", "ed25519", "-N", "", "-f", other])
            let key = try String(contentsOfFile: other + ".pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
            let wrong = site.lab.configuration.root + "/wrong_known_hosts"
            try "[127.0.0.1]:\(access.port) \(key)\n".write(toFile: wrong, atomically: true, encoding: .utf8)
            try original.replacingOccurrences(of: "knownHosts: \(access.knownHosts)", with: "knownHosts: \(wrong)")
                .write(toFile: file, atomically: true, encoding: .utf8)
            (output, code) = await runVirtform(["plan", site.directory])
            #expect(code == 1, "\(output)")
            #expect(output.contains("host e2e-h1: the SSH host key of 127.0.0.1:\(access.port) differs from the one in \(wrong)"), "\(output)")
            #expect(!output.contains("- VirtualMachine/"), "an unreadable host's guests must not look deleted:\n\(output)")

            // No line for it at all: "unknown", never accepted unseen (the file stays as it was).
            let empty = site.lab.configuration.root + "/empty_known_hosts"
            try "".write(toFile: empty, atomically: true, encoding: .utf8)
            try original.replacingOccurrences(of: "knownHosts: \(access.knownHosts)", with: "knownHosts: \(empty)")
                .write(toFile: file, atomically: true, encoding: .utf8)
            (output, code) = await runVirtform(["plan", site.directory])
            #expect(code == 1, "\(output)")
            #expect(output.contains("host e2e-h1: the SSH host key of 127.0.0.1:\(access.port) is unknown: it is not in \(empty)"), "\(output)")
            #expect(try String(contentsOfFile: empty, encoding: .utf8).isEmpty, "the unknown key was written into the file")

            try original.write(toFile: file, atomically: true, encoding: .utf8)
            (output, code) = await runVirtform(["plan", "--detailed-exitcode", site.directory])
            #expect(code == 0, "\(output)")
        }
    }

    /// Keepalive, proven: the sshd of one host (and its sessions) stopped dead in the middle of
    /// an apply — the link silent, nothing closed — fails that host's actions once libvirt's
    /// keepalive gives up (5 s × 3), long before the operation timeout, while the other host's
    /// actions all run. Once it runs again, one apply converges.
    @Test(.enabled(if: SSHLab.unmetRequirements() == nil, Comment(rawValue: SSHLab.unmetRequirements() ?? "")))
    func aDeadSSHLinkFailsOnlyThatHostsActionsWithinTheKeepaliveWindow() async throws {
        try await E2ESite.with(hosts: 2, extraVMs: 4, driver: .qemu, ssh: true) { site in
            let program = try #require(virtformExecutable(), "the virtform executable is built next to the tests")
            let sshd = try #require(site.hosts[1].ssh?.pid, "the second host's sshd")
            let frozen = Mutex<[Int32]>([])
            let start = ContinuousClock.now
            let run = try await runVirtformChild(
                program, ["apply", "--auto-approve", "--per-host", "1", "--operation-timeout", "300", site.directory],
                trigger: "on e2e-h2\n", within: .seconds(150),
                onTrigger: {
                    let all = [sshd] + Processes.descendants(of: sshd)
                    frozen.withLock { $0 = all }
                    for pid in all { kill(pid, SIGSTOP) }
                },
                cleanup: { for pid in frozen.withLock({ $0 }) { kill(pid, SIGCONT) } })
            let took = start.duration(to: .now)
            #expect(run.ended && run.triggered, "\(run.output)")
            #expect(run.status == 1, "\(run.output)")
            #expect(took < .seconds(120), "the apply took \(took): keepalive did not end the frozen host's calls")
            #expect(run.output.contains("keepalive") || run.output.contains("not tried: e2e-h2"), "\(run.output)")
            #expect(!run.output.contains("did not finish within 300"), "the operation timeout, not keepalive, ended it:\n\(run.output)")
            // Every action on the other host ran.
            let (json, _) = await runVirtform(["plan", "--format", "json", site.directory])
            let changes = try #require((try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])?["changes"] as? [[String: Any]])
            let left = changes.filter { (($0["system"] as? [String: Any])?["name"] as? String) == "e2e-h1" }
            #expect(left.isEmpty, "left on e2e-h1: \(left.map { $0["id"] ?? "?" })")

            let (again, code) = await site.apply()
            #expect(code == 0, "\(again)")
            let (plan, planCode) = await runVirtform(["plan", "--detailed-exitcode", site.directory])
            #expect(planCode == 0, "\(plan)")
        }
    }

    /// The sshd of one host killed outright in the middle of an apply (with its sessions, so the
    /// connection is reset): that host's actions fail at once, the other host's all run, the
    /// apply ends with its summary, and with the sshd back one apply converges.
    @Test(.enabled(if: SSHLab.unmetRequirements() == nil, Comment(rawValue: SSHLab.unmetRequirements() ?? "")))
    func aKilledSSHDFailsOnlyThatHostsActions() async throws {
        try await E2ESite.with(hosts: 2, extraVMs: 4, driver: .qemu, ssh: true) { site in
            let program = try #require(virtformExecutable(), "the virtform executable is built next to the tests")
            let sshd = try #require(site.hosts[1].ssh?.pid, "the second host's sshd")
            let run = try await runVirtformChild(
                program, ["apply", "--auto-approve", "--per-host", "1", "--operation-timeout", "300", site.directory],
                trigger: "on e2e-h2\n", within: .seconds(120),
                onTrigger: { for pid in [sshd] + Processes.descendants(of: sshd) { kill(pid, SIGKILL) } }, cleanup: {})
            #expect(run.ended && run.triggered, "\(run.output)")
            #expect(run.status == 1, "virtform must fail the host's actions, not die (status \(run.status)):\n\(run.output)")
            #expect(run.output.contains("Apply: ") && run.output.contains("on e2e-h2"), "\(run.output)")
            let (json, _) = await runVirtform(["plan", "--format", "json", site.directory])
            let changes = try #require((try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])?["changes"] as? [[String: Any]])
            let left = changes.filter { (($0["system"] as? [String: Any])?["name"] as? String) == "e2e-h1" }
            #expect(left.isEmpty, "left on e2e-h1: \(left.map { $0["id"] ?? "?" })")
            // The host's sshd back (the lab starts it again on its port): one apply converges.
            _ = try await SSHLab(configuration: site.lab.configuration, basePort: 0).up([site.hosts[1]])
            let (again, code) = await site.apply()
            #expect(code == 0, "\(again)")
        }
    }
}
