import Testing
import VirtformModel

@Suite("Remote access and CHAP in the model")
struct RemoteAccessTests {
    private func host(_ uri: String, ssh: SSHClientFiles? = nil, initiator: String? = nil) -> Host {
        Host(meta: ObjectMeta(name: "h1"), uri: uri, capacity: Capacity(memory: ByteSize(bytes: 1 << 30), vcpus: 2), bridges: [],
             ssh: ssh, initiatorName: initiator, provenance: .synthetic("test"))
    }

    @Test func theConnectionURICarriesTheSSHFilesEscaped() {
        let h = host("qemu+libssh://vf@h1:2221/session", ssh: SSHClientFiles(identity: "/k/id key", knownHosts: "/k/known&hosts"))
        #expect(h.sshTransport == "libssh")
        #expect(h.connectionURI == "qemu+libssh://vf@h1:2221/session?keyfile=/k/id%20key&known_hosts=/k/known%26hosts&sshauth=privkey")
        #expect(host("qemu+unix:///session?socket=/s").connectionURI == "qemu+unix:///session?socket=/s")
        #expect(host("qemu+ssh://vf@h1/system", ssh: SSHClientFiles(identity: "/k/id")).connectionURI == "qemu+ssh://vf@h1/system?keyfile=/k/id")
    }

    @Test func theValidatorRefusesWhatSSHOrTheFarSideWouldReadOtherwise() throws {
        var site = Site()
        site.hosts = [host("qemu+ssh://vf@h1/system", ssh: SSHClientFiles(knownHosts: "/k/kh"))]
        let export = ISCSIExport(driver: .lio, portal: try #require(HostPort(parsing: "10.0.0.5:3260")), iqnPrefix: "iqn.2026-11.io.example",
                                 chap: CHAPSettings(initiator: .init(username: "vf", secret: SecretRef(.environment("X")))))
        site.pools = [
            StoragePool(meta: ObjectMeta(name: "a"), driver: .dir, path: "/srv/a",
                        ssh: SSHAccess(target: "root@h; rm -rf /", agent: "virtform; curl x|sh"), export: export, provenance: .synthetic("test")),
            StoragePool(meta: ObjectMeta(name: "b"), driver: .dir, path: "/srv/b", export: export, provenance: .synthetic("test")),
        ]
        var admitting = export
        admitting.driver = .tgt
        admitting.chap = nil
        admitting.admitHosts = true
        site.pools.append(StoragePool(meta: ObjectMeta(name: "c"), driver: .dir, path: "/srv/c", export: admitting, provenance: .synthetic("test")))
        let messages = SiteValidator.validate(site).filter { $0.severity == .error }.map { "\($0.field): \($0.message)" }
        for expected in ["spec.ssh.knownHosts: qemu+ssh runs the OpenSSH program", "spec.ssh.target: the target must be user@host",
                         "spec.ssh.agent: the agent must be a program path", "spec.export.chap: CHAP is set up by the tgt export driver only",
                         "spec.export.chap.username: pool a has the same iqnPrefix and CHAP account",
                         "spec.initiatorName: pool c admits hosts by name"] {
            #expect(messages.contains { $0.hasPrefix(expected) }, "\(expected) in \(messages)")
        }
    }
}
