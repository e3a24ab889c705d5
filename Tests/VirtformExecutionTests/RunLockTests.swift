import Foundation
import Testing
import VirtformExecution

@Suite struct RunLockTests {
    private static func temporaryLockPath() -> String {
        FileManager.default.temporaryDirectory
            .appendingPathComponent("virtform-runlock-\(UUID().uuidString).lock").path
    }

    @Test func secondLockFailsFastNamingTheHolder() throws {
        let path = Self.temporaryLockPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let first = try RunLock.tryLock(at: path, command: "virtform apply")
        #expect(first.isLocked && first.holder.pid == ProcessInfo.processInfo.processIdentifier)

        #expect {
            try RunLock.tryLock(at: path, command: "virtform apply")
        } throws: { error in
            guard let error = error as? ExecutionError else { return false }
            return error.code == .locked
                && error.message.contains("locked by pid \(ProcessInfo.processInfo.processIdentifier) (virtform apply)")
                && error.message.contains(" since ")
        }
        #expect(RunLock.currentHolder(at: path) == first.holder)

        first.unlock()
        #expect(!first.isLocked)
        #expect(RunLock.currentHolder(at: path) == nil)  // cleared on release
        let again = try RunLock.tryLock(at: path, command: "virtform destroy")
        #expect(again.holder.command == "virtform destroy")
    }

    @Test func lockWithTimeoutSucceedsOnceReleased() async throws {
        let path = Self.temporaryLockPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let first = try RunLock.tryLock(at: path, command: "virtform apply")

        let waiter = Task {
            try await RunLock.lock(
                at: path, command: "virtform apply --second", timeout: .seconds(30),
                pollInterval: .milliseconds(5))
        }
        // Bounded: the waiter polls meanwhile; its own 30 s deadline bounds the rest.
        try await Task.sleep(for: .milliseconds(50))
        first.unlock()
        let second = try await waiter.value
        #expect(second.isLocked && second.holder.command == "virtform apply --second")
        #expect(RunLock.currentHolder(at: path)?.command == "virtform apply --second")
    }

    @Test func lockGivesUpAtTheDeadlineNamingTheHolder() async throws {
        let path = Self.temporaryLockPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let first = try RunLock.tryLock(at: path, command: "virtform apply")
        await #expect {
            try await RunLock.lock(at: path, command: "other", timeout: .milliseconds(30), pollInterval: .milliseconds(5))
        } throws: { error in
            guard let error = error as? ExecutionError else { return false }
            return error.code == .lockTimeout && error.message.contains("(virtform apply)")
        }
        #expect(first.isLocked)
    }

    @Test func deinitReleases() throws {
        let path = Self.temporaryLockPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            let held = try RunLock.tryLock(at: path, command: "virtform apply")
            #expect(held.isLocked)
        }
        let next = try RunLock.tryLock(at: path, command: "virtform apply")
        #expect(next.isLocked)
    }

    @Test func unopenableLockFileFailsWithTheReason() {
        #expect {
            try RunLock.tryLock(at: "/nonexistent-dir-\(UUID().uuidString)/x.lock", command: "virtform apply")
        } throws: { error in
            guard let error = error as? ExecutionError else { return false }
            return error.code == .lockFailed && error.message.contains("failed to open lock file")
        }
    }
}

/// The lock can be neither a way to write another file nor a way to stop every apply.
@Suite struct RunLockHardeningTests {
    @Test func aSymbolicLinkAtTheLockPathIsNeverFollowed() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("virtform-lockdir-\(UUID().uuidString)").path
        try RunLock.prepareDirectory(directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let victim = directory + "/victim"
        try "keep me\n".write(toFile: victim, atomically: false, encoding: .utf8)
        let path = directory + "/apply.lock"
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: victim)
        #expect {
            try RunLock.tryLock(at: path, command: "virtform apply")
        } throws: { error in
            (error as? ExecutionError)?.code == .lockFailed && "\(error)".contains("symbolic link")
        }
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "keep me\n", "the link's target is untouched")
    }

    @Test func theLockFileAndItsDirectoryAreThisUsersAlone() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("virtform-lockdir-\(UUID().uuidString)").path
        try RunLock.prepareDirectory(directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let attributes = try FileManager.default.attributesOfItem(atPath: directory)
        #expect((attributes[.posixPermissions] as? Int) == 0o700)
        let lock = try RunLock.tryLock(at: directory + "/apply.lock", command: "virtform apply")
        defer { lock.unlock() }
        let file = try FileManager.default.attributesOfItem(atPath: directory + "/apply.lock")
        #expect((file[.posixPermissions] as? Int) == 0o600)

        // A world-writable directory is made private; a link in place of the directory is refused.
        let open = directory + "/open"
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o777])
        try RunLock.prepareDirectory(open)
        #expect((try FileManager.default.attributesOfItem(atPath: open)[.posixPermissions] as? Int) == 0o700)
        let link = directory + "/link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: open)
        #expect(throws: ExecutionError.self) { try RunLock.prepareDirectory(link) }
    }
}

@Suite struct RunLockReadingTests {
    /// `plan` learns that an apply runs without touching the lock (a shared lock would make that
    /// apply's own try fail).
    @Test func whoHoldsALockIsReadWithoutTakingIt() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("virtform-held-\(UUID().uuidString).lock").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(RunLock.heldBy(at: path) == nil)
        let lock = try RunLock.tryLock(at: path, command: "virtform apply")
        #expect(RunLock.heldBy(at: path) == lock.holder)
        // Reading it did not take it: a second try still fails as locked, and the holder still holds.
        #expect(throws: ExecutionError.self) { try RunLock.tryLock(at: path, command: "virtform apply") }
        lock.unlock()
        #expect(RunLock.heldBy(at: path) == nil)
    }
}
