import Foundation
import Libvirt
import Testing
import VirtformSystem
import VirtformLab

let sshLabUnavailable = labUnavailable ?? SSHLab.unmetRequirements()

/// The lab's hosts reached the way remote hypervisors are: through a real OpenSSH sshd on
/// loopback, with libvirt's libssh client and with the OpenSSH program.
@Suite(
    "SSH lab (real sshd + libvirtd)", .serialized,
    .enabled(if: sshLabUnavailable == nil, Comment(rawValue: sshLabUnavailable ?? "")))
struct SSHLabTests {
    @Test func bothTransportsReachTheHostsDaemonAndOnlyIt() async throws {
        let pids = try await HypervisorLab.withTemporaryLab(hosts: 1, userPrefix: "vfsshtesth", ssh: true) { lab, hosts in
            let host = hosts[0]
            let access = try #require(host.ssh)
            // libssh: the key and the known_hosts file named in the URI.
            let connection = try await Connection.open(uri: access.fullURI())
            #expect(try await connection.hostUUID == host.hostUUID, "the ssh session reached another daemon than the host's")
            await connection.close()

            // OpenSSH's program reads known_hosts from its user's home unless told otherwise;
            // the URI's `command` names a wrapper that tells it (as an ssh_config Host block would).
            let wrapper = lab.configuration.root + "/ssh-wrapper"
            try "#!/bin/sh\nexec ssh -o UserKnownHostsFile=\(access.knownHosts) -o StrictHostKeyChecking=yes \"$@\"\n"
                .write(toFile: wrapper, atomically: true, encoding: .utf8)
            chmod(wrapper, 0o755)
            let openssh = try await Connection.open(uri: access.uri(transport: .ssh) + "?keyfile=\(access.identity)&command=\(wrapper)")
            #expect(try await openssh.hostUUID == host.hostUUID)
            await openssh.close()

            // The host's daemon is down: the session does not start another one.
            try await lab.stopHost(host.index)
            await #expect(throws: LibvirtError.self) { _ = try await Connection.open(uri: access.fullURI()) }
            let user = try #require(try SystemUser.lookup(host.user))
            #expect(Processes.all(ownedBy: user.uid).filter { $0.command == "libvirtd" }.isEmpty, "a connection started a libvirtd")
            return [access.pid]
        }
        for pid in pids { #expect(!Processes.isRunning(pid), "sshd \(pid) outlived the lab") }
    }

    @Test func anUnknownOrChangedHostKeyIsRefusedNamingTheFile() async throws {
        try await HypervisorLab.withTemporaryLab(hosts: 1, userPrefix: "vfsshtesth", ssh: true) { lab, hosts in
            let access = try #require(hosts[0].ssh)
            let empty = lab.configuration.root + "/empty_known_hosts"
            try "".write(toFile: empty, atomically: true, encoding: .utf8)
            let unknown = await Result { try await Connection.open(uri: access.uri() + "?keyfile=\(access.identity)&known_hosts=\(empty)&sshauth=privkey") }
            guard case .failure(let error) = unknown else { Issue.record("an unknown host key was accepted"); return }
            #expect("\(error)".contains("Can't verify the session host key"), "\(error)")

            // Another key for the same address: the host "changed".
            let other = lab.configuration.root + "/other_key"
            _ = try await Command.run([try #require(Executables.find("ssh-keygen")), "-q", "-t", "ed25519", "-N", "", "-f", other])
            let key = try String(contentsOfFile: other + ".pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
            let wrong = lab.configuration.root + "/wrong_known_hosts"
            try "[127.0.0.1]:\(access.port) \(key)\n".write(toFile: wrong, atomically: true, encoding: .utf8)
            let changed = await Result { try await Connection.open(uri: access.uri() + "?keyfile=\(access.identity)&known_hosts=\(wrong)&sshauth=privkey") }
            guard case .failure(let error) = changed else { Issue.record("a changed host key was accepted"); return }
            #expect("\(error)".contains("differs from stored identity") && "\(error)".contains(wrong), "\(error)")
        }
    }

    /// A host whose link goes silent (its sshd and sessions stopped, nothing closed) fails the
    /// calls in flight through libvirt's keepalive (5 s, 3 probes), not after TCP's minutes.
    @Test func aSilentLinkIsNoticedByKeepalive() async throws {
        try await HypervisorLab.withTemporaryLab(hosts: 1, userPrefix: "vfsshtesth", ssh: true) { lab, hosts in
            let access = try #require(hosts[0].ssh)
            let ssh = SSHLab(configuration: lab.configuration, basePort: 0)
            let connection = try await Connection.open(uri: access.fullURI())
            _ = try await connection.listAllDomains()
            await ssh.freeze(hosts[0].index, true)
            let start = ContinuousClock.now
            let outcome = await Result { try await withDeadline(.seconds(60), "list domains over a frozen link") { try await connection.listAllDomains() } }
            let took = start.duration(to: .now)
            await ssh.freeze(hosts[0].index, false)
            await connection.close()
            guard case .failure(let error) = outcome else { Issue.record("a call over a frozen link succeeded"); return }
            #expect((error as? SystemError)?.timedOut != true, "keepalive did not end the call within 60 s: \(error)")
            #expect(took < .seconds(40), "keepalive took \(took): \(error)")
        }
    }
}
