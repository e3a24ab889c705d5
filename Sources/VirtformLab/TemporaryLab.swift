import Foundation

#if canImport(Glibc)
    import Glibc
#endif

extension HypervisorLab {
    /// A lab of `count` hosts in a fresh directory under /tmp, run by users `userPrefix`1…, so
    /// it never touches a real lab: for integration tests. It is torn down when `body` ends,
    /// also when `body` throws: domains undefined, daemons stopped by PID, directory removed.
    public static func withTemporaryLab<T: Sendable>(
        hosts count: Int, userPrefix: String,
        _ body: @Sendable (HypervisorLab, [LabHost]) async throws -> T
    ) async throws -> T {
        var template = Array("/tmp/vftest-lab-XXXXXX".utf8CString)
        guard let pointer = mkdtemp(&template) else {
            throw LabError("failed to create a temporary lab directory: \(String(cString: strerror(errno)))")
        }
        let root = String(cString: pointer)
        let lab = HypervisorLab(
            configuration: LabConfiguration(root: root, userPrefix: userPrefix, undefineDomainsOnDown: true))
        let outcome: Result<T, any Error>
        do {
            let hosts = try await lab.up(hosts: count)
            outcome = .success(try await body(lab, hosts))
        } catch {
            outcome = .failure(error)
        }
        // Last in, first out: the daemons, then the directory that held them.
        var teardownError: (any Error)?
        do { try await lab.down() } catch { teardownError = error }
        try? FileManager.default.removeItem(atPath: root)
        let value = try outcome.get()
        if let teardownError { throw teardownError }
        return value
    }
}
