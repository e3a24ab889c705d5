import Foundation
import Testing
import VirtformManifests
import VirtformModel

@Suite("Reference manifests, examples and schema")
struct ReferenceManifestTests {
    let root = SiteFixture.repositoryRoot

    /// The manifest examples (`examples/ci` holds CI pipelines, not manifests).
    static let examples = ["single-vm", "pinned-vm", "spread-cluster"]

    @Test func referenceSiteAndExamplesValidateTogether() throws {
        let folders = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("examples").path)
        #expect(Set(folders) == Set(Self.examples + ["ci", "lab-over-ssh", "systemd"]), "a new example belongs in the list above")
        let result = ManifestLoader.load(paths: [root.appendingPathComponent("manifests").path]
            + Self.examples.map { root.appendingPathComponent("examples/\($0)").path })
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics)")
        #expect(result.site.virtualMachines.count >= 4)
    }

    /// `examples/lab-over-ssh/` stands in for `manifests/hosts.yaml` and `storage.yaml`
    /// (`scripts/demo --transport ssh`): the same hosts, reached over their sshds with the lab's
    /// key and known_hosts file, and the same pool, driven through the lab's agent sshd.
    @Test func theSSHHostsReplaceTheReferenceHosts() throws {
        let manifests = root.appendingPathComponent("manifests").path
        let replaced = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("examples/lab-over-ssh").path)
        #expect(Set(replaced) == ["hosts.yaml", "storage.yaml"])
        let files = try FileManager.default.contentsOfDirectory(atPath: manifests).filter { $0.hasSuffix(".yaml") && !replaced.contains($0) }
        let result = ManifestLoader.load(paths: files.map { manifests + "/" + $0 } + replaced.map { root.appendingPathComponent("examples/lab-over-ssh/\($0)").path })
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics)")
        let reference = ManifestLoader.load(paths: [manifests]).site.hosts
        #expect(result.site.hosts.map(\.name) == reference.map(\.name))
        for host in result.site.hosts {
            #expect(host.sshTransport == "libssh" && host.ssh?.knownHosts == "/var/lib/virtform-lab/ssh/known_hosts", "\(host.uri)")
            #expect(host.connectionURI.contains("?keyfile=/var/lib/virtform-lab/ssh/id_ed25519&known_hosts=") && host.connectionURI.hasSuffix("&sshauth=privkey"))
        }
        #expect(result.site.pools.first?.ssh == SSHAccess(target: "root@127.0.0.1", port: 2220, identity: "/var/lib/virtform-lab/ssh/id_ed25519",
                                                           knownHosts: "/var/lib/virtform-lab/ssh/known_hosts"))
    }

    @Test("each example is valid on its own", arguments: examples)
    func example(_ name: String) {
        let result = ManifestLoader.load(paths: [root.appendingPathComponent("examples/\(name)").path])
        // Alone, an example declares no Site: one warning says the site is called "default".
        #expect(result.diagnostics.count == 1 && result.diagnostics[0].severity == .warning
            && result.diagnostics[0].message.hasPrefix("no Site document"), "\(result.diagnostics)")
        #expect(!result.site.virtualMachines.isEmpty)
    }

    @Test func referenceSiteHasTheSeedsShape() throws {
        let site = ManifestLoader.load(paths: [root.appendingPathComponent("manifests").path]).site
        #expect(Set(site.hosts.compactMap { $0.meta.labels["segment"] }) == ["odd", "even"])
        #expect(site.clusters.count == 1)
        #expect(site.pools.first?.driver == .btrfs)
        #expect(Set(site.projects.map(\.name)).isSuperset(of: ["masters", "appl-1", "appl-2"]))
        #expect(site.images.first?.snapshots == ["version-01"])
        #expect(Set(site.networks.map(\.name)) == ["public", "backend"])
        #expect(site.dhcpServers.first?.driver == .kea)
        #expect(!site.bindings.isEmpty)
    }

    /// The committed schema is what `virtform schema` prints; re-record with
    /// `swift run virtform schema --out docs/virtform.schema.json`.
    @Test func committedSchemaIsCurrent() throws {
        let committed = try String(contentsOf: root.appendingPathComponent("docs/virtform.schema.json"), encoding: .utf8)
        #expect(committed == JSONSchema.render())
    }

    @Test func schemaCoversEveryKind() throws {
        let json = try JSONSerialization.jsonObject(with: Data(JSONSchema.render().utf8)) as? [String: Any]
        let branches = try #require(json?["allOf"] as? [[String: Any]])
        #expect(branches.count == Kind.allCases.count)
    }
}
