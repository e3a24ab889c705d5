import Foundation
import Testing
import VirtformModel
import VirtformRemote
@testable import VirtformCommands
@testable import VirtformHypervisor

/// The agent's limits, the secret digest and the migration's initiator rewrite, without any
/// system: what a request may name, and the small pieces whose mistakes would be silent.
@Suite("Agent limits, secret digests, destination XML")
struct AgentTests {
    private func reply(_ agent: Agent, _ request: AgentRequest) async throws -> AgentFailure? {
        let data = await agent.reply(to: try JSONEncoder().encode(request))
        return try JSONDecoder().decode(AgentReply<Done>.self, from: data).failure
    }

    @Test func aLimitedAgentRefusesPathsOutsideItsDirectoriesLinksOutAndZFS() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("vftest-agent-\(getpid())").path
        try FileManager.default.createDirectory(atPath: root + "/pool", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: root + "/pool/out", withDestinationPath: "/etc")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let agent = Agent(allowed: [root + "/pool"])
        func pool(_ path: String?, driver: String = "dir", dataset: String? = nil) -> StoragePoolSpec {
            StoragePoolSpec(driver: driver, pool: "p", path: path, dataset: dataset, site: "s")
        }
        for path in ["/srv/other", root + "/pool2", root + "/pool/../x", root + "/pool/out"] {
            let failure = try await reply(agent, .storage(pool(path), .probe, run: nil))
            #expect(failure?.code == "refused" && failure?.message.contains("may not use") == true, "\(path): \(String(describing: failure))")
        }
        // The allowed folder itself passes the check (the driver then finds no btrfs/dir there or does).
        let inside = try await reply(agent, .storage(pool(root + "/pool"), .probe, run: nil))
        #expect(inside?.code != "refused", "\(String(describing: inside))")
        // zfs: no dataset allowed, so none passes; zpool never; a dataset outside the allowed one refused.
        #expect(try await reply(agent, .storage(pool(nil, driver: "zfs", dataset: "tank/vf"), .probe, run: nil))?.code == "refused")
        #expect(try await reply(agent, .exec(["zfs", "list"]))?.code == "refused")
        let zfsAgent = Agent(allowed: [], allowedDatasets: ["tank/vf"])
        #expect(try await reply(zfsAgent, .exec(["zpool", "destroy", "tank"]))?.code == "refused")
        #expect(try await reply(zfsAgent, .exec(["zfs", "destroy", "-r", "tank/other"]))?.code == "refused")
        #expect(try await reply(zfsAgent, .exec(["zfs", "destroy", "tank/vf/../other"]))?.code == "refused")
        #expect(try await reply(zfsAgent, .exec(["sh", "-c", "true"]))?.code == "refused")
    }

    @Test func aSecretsDigestMatchesItsValueOnly() {
        // Few rounds: the test runs on the shared pool with every other (the rounds are recorded).
        let description = SecretDigest.describe("correct horse battery", username: "vf", iterations: 8)
        #expect(description.contains("pbkdf2-sha256 8 "))
        #expect(!description.contains("correct horse battery"))
        #expect(SecretDigest.matches(description, "correct horse battery") == true)
        #expect(SecretDigest.matches(description, "correct horse battery!") == false)
        #expect(SecretDigest.matches("set by hand", "correct horse battery") == nil)
        // Two descriptions of one value differ (their salts do).
        #expect(description != SecretDigest.describe("correct horse battery", username: "vf", iterations: 8))
    }

    @Test func theDestinationXMLLogsInUnderTheDestinationsName() {
        let replaced = """
            <disk type='network' device='disk'>
              <source protocol='iscsi' name='iqn.x:appl.vm/1'>
                <host name='127.0.0.1' port='3260'/>
                <initiator>
                  <iqn name='iqn.h:h1'/>
                </initiator>
              </source>
            </disk>
            """
        let out = LibvirtHost.settingInitiator("iqn.h:h2", of: "iqn.x:appl.vm/1", in: replaced)
        #expect(out.contains("<iqn name='iqn.h:h2'/>") && !out.contains("iqn.h:h1"), "\(out)")
        let missing = "<source protocol='iscsi' name='iqn.x:appl.vm/1'><host name='127.0.0.1' port='3260'/></source>"
        let added = LibvirtHost.settingInitiator("iqn.h:h2", of: "iqn.x:appl.vm/1", in: missing)
        #expect(added.contains("<initiator><iqn name='iqn.h:h2'/></initiator></source>"), "\(added)")
        // Another disk's source is left alone.
        #expect(LibvirtHost.settingInitiator("iqn.h:h2", of: "iqn.x:appl.other/1", in: missing) == missing)
    }
}
