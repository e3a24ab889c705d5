import Foundation
import ISCSI
import Synchronization
import Testing
import VirtformLab
import VirtformSystem

let labUnavailable = StorageLab.unmetRequirements()

/// This suite's tgtd instances use portals 3270-3279 and control ports 70-79.
private let nextSlot = Atomic<Int>(0)

/// A tgtd on loopback (through the storage lab) with two targets: 64 MiB and 3 GiB (sparse),
/// stopped and removed when `body` ends, also when it throws.
func withTargets<T: Sendable>(_ body: @Sendable (_ portal: String, _ iqns: [String]) async throws -> T) async throws -> T {
    let slot = nextSlot.add(1, ordering: .relaxed).oldValue % 10
    var template = Array("/tmp/vftest-iscsi-XXXXXX".utf8CString)
    guard let pointer = mkdtemp(&template) else { throw CocoaError(.fileWriteUnknown) }
    let root = String(cString: pointer)
    let configuration = StorageLabConfiguration(root: root, mountPoint: "\(root)/pool", poolSize: 256 << 20,
                                                portalPort: 3270 + slot, controlPort: 70 + slot, removePoolOnDown: true)
    let lab = StorageLab(configuration: configuration)
    let iqns = ["iqn.2026-11.io.virtform.test:p.small", "iqn.2026-11.io.virtform.test:p.large"]
    let outcome: Result<T, any Error>
    do {
        try await lab.up()
        let tgtadm = try #require(Executables.find("tgtadm"))
        let truncate = try #require(Executables.find("truncate"))
        let base = [tgtadm, "-C", String(configuration.controlPort), "--lld", "iscsi"]
        for (index, (iqn, size)) in zip(iqns, ["64M", "3G"]).enumerated() {
            let file = "\(configuration.mountPoint)/\(index).img"
            let tid = String(index + 1)
            for arguments in [
                [truncate, "-s", size, file],
                base + ["--op", "new", "--mode", "target", "--tid", tid, "-T", iqn],
                base + ["--op", "new", "--mode", "logicalunit", "--tid", tid, "--lun", "1", "-b", file],
                base + ["--op", "bind", "--mode", "target", "--tid", tid, "-I", "ALL"],
            ] {
                try await Command.run(arguments).checked(arguments)
            }
        }
        outcome = .success(try await body(configuration.portal, iqns))
    } catch {
        outcome = .failure(error)
    }
    let teardown: Result<Void, any Error>
    do { teardown = .success(try await lab.down()) } catch { teardown = .failure(error) }
    try? FileManager.default.removeItem(atPath: root)
    let value = try outcome.get()
    try teardown.get()
    return value
}

@Suite(.disabled(if: labUnavailable != nil, Comment(rawValue: labUnavailable ?? "")))
struct ISCSITests {
    @Test func discoversLogsInAndReadsCapacities() async throws {
        try await withTargets { portal, iqns in
            let initiator = Initiator()
            let targets = try await initiator.discoverTargets(portal: portal)
            #expect(Set(targets.map(\.name)) == Set(iqns))
            #expect(targets.allSatisfy { $0.portals == ["\(portal),1"] })

            let session = try await initiator.login(portal: portal, target: iqns[1], lun: 1)
            #expect(try await session.reportLUNs() == [0, 1])
            let capacity = try await session.readCapacity(lun: 1)
            #expect(capacity.blockSize == 512)
            #expect(capacity.bytes == 3 << 30)
            await session.logout()
            await #expect(throws: ISCSIError.self) { try await session.readCapacity(lun: 1) }

            #expect(try await initiator.capacity(portal: portal, target: iqns[0], lun: 1).bytes == 64 << 20)
        }
    }

    @Test func failuresCarryLibiscsisExplanation() async throws {
        try await withTargets { portal, iqns in
            let initiator = Initiator(name: "iqn.2026-11.io.virtform:test", timeoutSeconds: 5)
            do {
                _ = try await initiator.login(portal: portal, target: "iqn.2026-11.io.virtform.test:p.missing")
                Issue.record("login to a missing target succeeded")
            } catch let error as ISCSIError {
                #expect(error.operation == "log in to iqn.2026-11.io.virtform.test:p.missing at \(portal)")
                #expect(error.reason.contains("Target not found"), "\(error)")
            }
            let session = try await initiator.login(portal: portal, target: iqns[0])
            do {
                _ = try await session.readCapacity(lun: 9)
                Issue.record("read capacity of a missing LUN succeeded")
            } catch let error as ISCSIError {
                #expect(error.description.hasPrefix("failed to read the capacity of LUN 9 of \(iqns[0]): "))
            }
            await session.logout()
        }
    }

    @Test func aClosedPortalIsAnError() async throws {
        // Nothing listens on 127.0.0.1:1 (privileged, unused).
        do {
            _ = try await Initiator(timeoutSeconds: 3).discoverTargets(portal: "127.0.0.1:1")
            Issue.record("discovery at a closed port succeeded")
        } catch let error as ISCSIError {
            #expect(error.operation == "discover targets at 127.0.0.1:1")
            #expect(!error.reason.isEmpty)
        }
    }
}
