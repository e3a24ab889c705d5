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
