import Foundation
import Testing
import VirtformLab
import VirtformSystem

let storageLabUnavailable = StorageLab.unmetRequirements()

@Suite(.serialized, .disabled(if: storageLabUnavailable != nil, Comment(rawValue: storageLabUnavailable ?? "")))
struct StorageLabTests {
    /// A configuration in a fresh temporary root, on ports no real lab uses (3300, control port 100).
    func configuration() throws -> StorageLabConfiguration {
        var template = Array("/tmp/vftest-storagelab-XXXXXX".utf8CString)
        guard let pointer = mkdtemp(&template) else { throw CocoaError(.fileWriteUnknown) }
        let root = String(cString: pointer)
        return StorageLabConfiguration(root: root, mountPoint: "\(root)/pool", poolSize: 256 << 20, portalPort: 3300,
                                       controlPort: 100, removePoolOnDown: true)
    }

    @discardableResult
    func tgtadm(_ c: StorageLabConfiguration, _ arguments: [String]) async throws -> CommandResult {
        let full = [try #require(Executables.find("tgtadm")), "-C", String(c.controlPort)] + arguments
        return try await Command.run(full).checked(full)
    }

    @Test func upAndDownAreIdempotentAndDownCopesWithTargets() async throws {
        let c = try configuration()
        let lab = StorageLab(configuration: c)
        defer { try? FileManager.default.removeItem(atPath: c.root) }
        let result = await Result {
            let first = try await lab.up()
            #expect(first.isUp)
            #expect(first.poolDevice?.hasPrefix("/dev/loop") == true)
            let second = try await lab.up()
            #expect(second.tgtdPID == first.tgtdPID)
            #expect(second.poolDevice == first.poolDevice)

            // tgtd refuses to stop while it has targets: down must cope.
            try await tgtadm(c, ["--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "1", "-T", "iqn.2026-11.io.virtform.test:x.y"])
            let pid = try #require(first.tgtdPID)
            try await lab.down()
            #expect(!Processes.isRunning(pid))
            let after = await lab.status()
            #expect(!after.poolMounted && after.tgtdPID == nil)
            #expect(!FileSystem.exists(c.pidFile))
            try await lab.down()
            let loops = try await Command.run([try #require(Executables.find("losetup")), "-j", c.poolImage])
            #expect(loops.standardOutput.isEmpty)
        }
        if case .failure = result { try? await lab.down() }
        try result.get()
    }

    @Test func upRepairsAHalfMadeLab() async throws {
        let c = try configuration()
        let lab = StorageLab(configuration: c)
        defer { try? FileManager.default.removeItem(atPath: c.root) }
        let result = await Result {
            // An interrupted first run: a pool file that was never formatted, and a stale PID file.
            _ = FileManager.default.createFile(atPath: c.poolImage, contents: Data("junk".utf8))
            try FileSystem.writeFile(c.pidFile, "999999\n", mode: 0o644, owner: nil)
            let status = try await lab.up()
            #expect(status.isUp)
            #expect(try await tgtadm(c, ["--lld", "iscsi", "--op", "show", "--mode", "target"]).standardOutput.isEmpty)
            // tgtd killed behind the lab's back: up starts a new one.
            let pid = try #require(status.tgtdPID)
            try await tgtadm(c, ["--op", "delete", "--mode", "system"])
            #expect(await poll(within: .seconds(5)) { !Processes.isRunning(pid) })
            let again = try await lab.up()
            #expect(again.isUp && again.tgtdPID != pid)
            try await lab.down()
        }
        if case .failure = result { try? await lab.down() }
        try result.get()
    }

    @Test func aTakenControlPortIsReported() async throws {
        let c = try configuration()
        let lab = StorageLab(configuration: c)
        let other = StorageLab(configuration: StorageLabConfiguration(
            root: c.root + "/other", mountPoint: c.root + "/other-pool", poolSize: 256 << 20, portalPort: 3301, controlPort: 100,
            removePoolOnDown: true))
        defer { try? FileManager.default.removeItem(atPath: c.root) }
        let result = await Result {
            try await lab.up()
            do {
                try await other.up()
                Issue.record("a second tgtd started on a control port in use")
            } catch let error as LabError {
                #expect(error.message.contains("another tgtd already answers on control port 100"))
            }
        }
        try? await other.down()
        try? await lab.down()
        try result.get()
    }
}
