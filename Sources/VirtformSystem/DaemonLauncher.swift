import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Starts a program that leaves a daemon behind (`runuser … libvirtd --daemon`) and waits for
/// the program itself to exit.
///
/// Foundation.Process cannot do this: it notices a child's exit through a socket the child
/// inherits, and the daemon inherits it too, so `waitUntilExit` would wait for the daemon's
/// death. Here the child gets a clean slate instead: every descriptor above stderr closed,
/// stdin on /dev/null, stdout and stderr appended to `logFile`, no blocked signals (threads of
/// the Swift runtime block most signals, and libvirtd started with SIGTERM blocked ignores it
/// forever) and default signal dispositions.
public enum DaemonLauncher {
    /// Runs `arguments` and returns its exit status (128 + signal if killed by one).
    /// Kills it and throws if it does not exit within `timeout`.
    public static func run(_ arguments: [String], logFile: String, timeout: Duration) async throws -> Int32 {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try runBlocking(arguments, logFile: logFile, timeout: timeout) })
            }
            thread.name = "lab-daemon-launch"
            thread.start()
        }
    }

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32

    /// Adds "close every descriptor from 3 up" to `actions`: glibc's
    /// `posix_spawn_file_actions_addclosefrom_np` (2.34+, hidden from Swift behind _GNU_SOURCE,
    /// hence dlsym), else one close per descriptor open now.
    private static func closeDescriptorsFrom3(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>) -> Int32 {
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") {
            return unsafeBitCast(symbol, to: AddCloseFrom.self)(actions, 3)
        }
        // glibc ignores close actions on descriptors that are not open by then.
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for fd in open.compactMap({ Int32($0) }) where fd > 2 {
            let code = posix_spawn_file_actions_addclose(actions, fd)
            if code != 0 { return code }
        }
        return 0
    }

    private static func runBlocking(_ arguments: [String], logFile: String, timeout: Duration) throws -> Int32 {
        let commandLine = arguments.joined(separator: " ")
        func failure(_ what: String, _ code: Int32) -> SystemError {
            SystemError("failed to run `\(commandLine)`: \(what): \(String(cString: strerror(code)))")
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var code = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if code == 0 {
            code = posix_spawn_file_actions_addopen(&actions, 1, logFile, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        }
        if code == 0 { code = posix_spawn_file_actions_adddup2(&actions, 1, 2) }
        if code == 0 { code = closeDescriptorsFrom3(&actions) }
        guard code == 0 else { throw failure("preparing file actions", code) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var envp: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), nil]
        defer { envp.forEach { free($0) } }

        var pid: pid_t = 0
        code = posix_spawn(&pid, arguments[0], &actions, &attributes, &argv, &envp)
        guard code == 0 else { throw failure("posix_spawn", code) }

        // Poll rather than block in waitpid so the deadline holds.
        let deadline = ContinuousClock.now + timeout
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid { break }
            if result < 0 && errno != EINTR { throw failure("waitpid", errno) }
            if ContinuousClock.now >= deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                throw SystemError("`\(commandLine)` did not finish within \(timeout) and was killed")
            }
            usleep(20_000)
        }
        // Decode the wait status (the C macros are not imported).
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}
