import Foundation

#if canImport(Glibc)
    import Glibc
#endif

extension HypervisorLab {
    /// A lab of `count` hosts in a fresh directory under /tmp, run by users `userPrefix`1…, so
    /// it never touches a real lab: for integration tests. It is torn down when `body` ends,
    /// also when `body` throws: domains undefined, daemons stopped by PID, directory removed.
    public static func withTemporaryLab<T: Sendable>(
        hosts count: Int, userPrefix: String, ssh: Bool = false,
        _ body: @Sendable (HypervisorLab, [LabHost]) async throws -> T
    ) async throws -> T {
        var template = Array("/tmp/vftest-lab-XXXXXX".utf8CString)
        guard let pointer = mkdtemp(&template) else {
            throw LabError("failed to create a temporary lab directory: \(String(cString: strerror(errno)))")
        }
        let root = String(cString: pointer)
        let lab = HypervisorLab(
            configuration: LabConfiguration(root: root, userPrefix: userPrefix, undefineDomainsOnDown: true))
        // With `ssh`, each host also gets its own sshd on a free loopback port (`LabHost.ssh`).
        let sshLab = ssh ? SSHLab(configuration: lab.configuration, basePort: 0) : nil
        let outcome: Result<T, any Error>
        do {
            var hosts = try await lab.up(hosts: count)
            if let sshLab { hosts = try await sshLab.up(hosts) }
            outcome = .success(try await body(lab, hosts))
        } catch {
            outcome = .failure(error)
        }
        // Last in, first out: the sshds, the daemons, then the directory that held them.
        var teardownError: (any Error)?
        if let sshLab { do { try await sshLab.down() } catch { teardownError = error } }
        do { try await lab.down() } catch { teardownError = teardownError ?? error }
        try? FileManager.default.removeItem(atPath: root)
        let value = try outcome.get()
        if let teardownError { throw teardownError }
        return value
    }
}
