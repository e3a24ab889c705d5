import Foundation
import VirtformSystem
import Libvirt

#if canImport(Glibc)
    import Glibc
#endif

/// Where and how a lab runs its hosts.
public struct LabConfiguration: Sendable, Hashable {
    /// Directory holding every host's runtime directory, PID file and logs.
    public var root: String
    /// Host N runs as system user `"\(userPrefix)\(N)"` (created if missing).
    public var userPrefix: String
    /// Host N is called `"\(hostNamePrefix)\(N)"`.
    public var hostNamePrefix: String
    /// How long a daemon may take to start answering.
    public var startTimeout: Duration
    /// How long a daemon may take to exit after SIGTERM before it is killed.
    public var stopTimeout: Duration
    /// Whether `down()` also undefines every domain of each host (tests use this so that
    /// definitions do not pile up in the lab users' homes).
    public var undefineDomainsOnDown: Bool

    public init(
        root: String = "/var/lib/virtform-lab", userPrefix: String = "vflabh", hostNamePrefix: String = "lab-h",
        startTimeout: Duration = .seconds(30), stopTimeout: Duration = .seconds(10),
        undefineDomainsOnDown: Bool = false
    ) {
        self.root = root
        self.userPrefix = userPrefix
        self.hostNamePrefix = hostNamePrefix
        self.startTimeout = startTimeout
        self.stopTimeout = stopTimeout
        self.undefineDomainsOnDown = undefineDomainsOnDown
    }

    func hostName(_ index: Int) -> String { "\(hostNamePrefix)\(index)" }
    func userName(_ index: Int) -> String { "\(userPrefix)\(index)" }
    func hostDirectory(_ index: Int) -> String { "\(root)/\(hostName(index))" }
    func runtimeDirectory(_ index: Int) -> String { "\(hostDirectory(index))/run" }
    func logDirectory(_ index: Int) -> String { "\(hostDirectory(index))/log" }
    func pidFile(_ index: Int) -> String { "\(hostDirectory(index))/libvirtd.pid" }
    func socketPath(_ index: Int) -> String { "\(runtimeDirectory(index))/libvirt/libvirt-sock" }
    /// Written by libvirtd itself, inside its runtime directory.
    func daemonPidFile(_ index: Int) -> String { "\(runtimeDirectory(index))/libvirtd.pid" }

    /// A stable host UUID for host `index`: the same on every run, different per user name.
    func hostUUID(_ index: Int) -> UUID {
        func fnv1a(_ text: String, seed: UInt64) -> UInt64 {
            var hash = seed
            for byte in text.utf8 {
                hash ^= UInt64(byte)
                hash = hash &* 0x100_0000_01b3
            }
            return hash
        }
        let key = "virtform-lab/\(userName(index))/\(index)"
        let high = fnv1a(key, seed: 0xcbf2_9ce4_8422_2325)
        let low = fnv1a(key, seed: 0x8422_2325_cbf2_9ce4)
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 {
            bytes[i] = UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(i)))
            bytes[8 + i] = UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(i)))
        }
        bytes[6] = (bytes[6] & 0x0f) | 0x80  // version 8: custom
        bytes[8] = (bytes[8] & 0x3f) | 0x80  // RFC 4122 variant
        return UUID(
            uuid: (
                bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
            ))
    }
}

/// One running lab host: a libvirt session daemon under its own system user.
public struct LabHost: Sendable, Hashable {
    /// 1-based.
    public let index: Int
    /// e.g. `lab-h1`.
    public let name: String
    /// The system user the daemon runs as, e.g. `vflabh1`.
    public let user: String
    public let hostUUID: UUID
    /// The daemon's `XDG_RUNTIME_DIR`.
    public let runtimeDirectory: String
    public let socketPath: String
    /// The real libvirtd process.
    public let pid: Int32
    /// How it is reached over SSH, when the lab runs its sshd (`SSHLab`); nil otherwise.
    public var ssh: LabSSHAccess? = nil

    /// Real QEMU guests (TCG) managed by this host's daemon.
    public var qemuURI: String { "qemu+unix:///session?socket=\(socketPath)" }
    /// libvirt's test driver served by this host's daemon: no QEMU, lives as long as the daemon.
    public var testURI: String { "test+unix:///default?socket=\(socketPath)" }
}

/// What `HypervisorLab.status()` found for one host.
public enum LabHostState: Sendable, Hashable {
    /// The daemon runs and its socket accepts connections.
    case up(LabHost)
    /// Not running, and why that is known.
    case down(reason: String)
    /// Could not tell (e.g. the daemon runs but does not answer, or its PID file is unreadable).
    case unknown(reason: String)
}

public struct LabHostStatus: Sendable, Hashable {
    public let index: Int
    public let name: String
    public let state: LabHostState
}

/// A set of local hypervisors, one libvirt session daemon per host, each under its own system
/// user with its own runtime directory and stable host UUID (see LAB.md).
///
/// Needs root. All operations are idempotent: `up()` keeps hosts that are already up, `down()`
/// copes with a half-made or already removed lab.
public actor HypervisorLab {
    public nonisolated let configuration: LabConfiguration

    public init(configuration: LabConfiguration) {
        self.configuration = configuration
    }

    /// Why this machine cannot run a lab (not root, a program missing), or nil if it can.
    public static func unmetRequirements() -> String? {
        var missing: [String] = []
        if geteuid() != 0 { missing.append("root privileges (running as uid \(geteuid()))") }
        for (program, package) in [
            ("libvirtd", "libvirt-daemon"), ("qemu-system-x86_64", "qemu-system-x86"), ("runuser", "util-linux"),
            ("useradd", "passwd"),
        ] where Executables.find(program) == nil {
            missing.append("\(program) (install \(package))")
        }
        if !FileSystem.exists("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so"),
            !FileSystem.exists("/usr/lib64/libvirt/connection-driver/libvirt_driver_qemu.so")
        {
            missing.append("libvirt's QEMU driver (install libvirt-daemon-driver-qemu)")
        }
        return missing.isEmpty ? nil : "the lab needs " + missing.joined(separator: ", ")
    }

    // MARK: Up

    /// Starts hosts 1...`count`, keeping those already up; returns all of them.
    public func up(hosts count: Int) async throws -> [LabHost] {
        guard count >= 1 else { throw LabError("failed to start the lab: it needs at least one host, not \(count)") }
        if let problem = Self.unmetRequirements() { throw LabError("failed to start the lab: \(problem)") }
        try prepareRoot()
        var hosts: [LabHost] = []
        for index in 1...count {
            hosts.append(try await startHost(index))
        }
        return hosts
    }

    /// Starts one host's daemon unless it is already up.
    public func startHost(_ index: Int) async throws -> LabHost {
        let name = configuration.hostName(index)
        if let problem = Self.unmetRequirements() { throw LabError("failed to start \(name): \(problem)") }
        switch try await state(of: index) {
        case .up(let host):
            return host
        case .unknown(let reason):
            // A daemon of this host whose PID record was lost (say, a crash right after it
            // started) is adopted rather than duplicated.
            if let host = try adoptRunningDaemon(index) { return host }
            // Maybe still starting: give it the start deadline before calling it broken.
            if let host = try await waitUntilAnswering(index) { return host }
            throw LabError("failed to start \(name): \(reason)")
        case .down:
            break
        }
        try prepareRoot()
        let user = try await ensureUser(configuration.userName(index))
        try prepareDirectories(index, user: user)
        try writeDaemonConfiguration(index, user: user)
        let pid = try await launchDaemon(index, user: user)
        let host = makeHost(index, pid: pid)
        guard await poll(within: configuration.startTimeout, { UnixSocket.probe(host.socketPath) == nil }) else {
            let reason = UnixSocket.probe(host.socketPath) ?? "unknown"
            await Processes.terminate([pid], grace: configuration.stopTimeout)
            throw LabError(
                "failed to start \(name): libvirtd (pid \(pid)) did not accept connections on \(host.socketPath) "
                    + "within \(configuration.startTimeout): \(reason)\(logTail(index))")
        }
        try FileSystem.writeFile(configuration.pidFile(index), "\(pid)\n", mode: 0o644, owner: nil)
        return host
    }

    private func prepareRoot() throws {
        let root = configuration.root
        guard root.hasPrefix("/") else { throw LabError("the lab root must be an absolute path, not '\(root)'") }
        // The longest socket path must fit a Unix socket address.
        let longest = configuration.socketPath(99)
        guard longest.utf8.count <= UnixSocket.maximumPathLength else {
            throw LabError(
                "the lab root '\(root)' is too long: socket paths like \(longest) exceed "
                    + "\(UnixSocket.maximumPathLength) bytes")
        }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        // Lab users must be able to reach their directories below it.
        try FileSystem.setOwnerAndMode(root, mode: 0o755, owner: nil)
    }

    private func ensureUser(_ name: String) async throws -> SystemUser {
        if let user = try SystemUser.lookup(name) { return user }
        guard let useradd = Executables.find("useradd") else { throw LabError("failed to create user '\(name)': useradd is missing") }
        let result = try await Command.run([useradd, "-m", "-c", "virtform lab host", name])
        // 9: the user exists already (created concurrently).
        guard result.status == 0 || result.status == 9 else {
            throw LabError(
                "failed to create user '\(name)': `useradd -m \(name)` exited with status \(result.status): "
                    + result.standardError.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        guard let user = try SystemUser.lookup(name) else { throw LabError("failed to create user '\(name)': not found after useradd") }
        return user
    }

    private func prepareDirectories(_ index: Int, user: SystemUser) throws {
        try FileSystem.makeDirectory(configuration.hostDirectory(index), mode: 0o755, owner: nil)
        // Kept if present: a restarted daemon finds its running guests' state there.
        try FileSystem.makeDirectory(configuration.runtimeDirectory(index), mode: 0o700, owner: user)
        try FileSystem.makeDirectory(configuration.logDirectory(index), mode: 0o755, owner: user)
    }

    /// `~/.config/libvirt/libvirtd.conf` with the host's UUID and log file, and `qemu.conf`
    /// sending guest console output to plain files (no virtlogd daemon per host).
    private func writeDaemonConfiguration(_ index: Int, user: SystemUser) throws {
        var directory = user.home
        for component in [".config", "libvirt"] {
            directory += "/\(component)"
            try FileSystem.makeDirectory(directory, mode: 0o700, owner: user)
        }
        if configuration.undefineDomainsOnDown {
            // A lab that undefines its domains when it goes down also starts without any: one a
            // teardown could not remove (a guest that would not die) is not inherited.
            let definitions = "\(directory)/qemu"
            for file in (try? FileManager.default.contentsOfDirectory(atPath: definitions)) ?? [] where file.hasSuffix(".xml") {
                try? FileManager.default.removeItem(atPath: "\(definitions)/\(file)")
            }
        }
        let uuid = configuration.hostUUID(index).uuidString.lowercased()
        let log = "\(configuration.logDirectory(index))/libvirtd.log"
        try FileSystem.writeFile(
            "\(directory)/libvirtd.conf",
            """
            # Written by virtform's lab for \(configuration.hostName(index)); rewritten on every start.
            host_uuid = "\(uuid)"
            log_outputs = "3:file:\(log)"

            """, mode: 0o600, owner: user)
        try FileSystem.writeFile(
            "\(directory)/qemu.conf",
            """
            # Written by virtform's lab; rewritten on every start.
            stdio_handler = "file"

            """, mode: 0o600, owner: user)
    }

    /// Starts libvirtd as the host's user and returns the daemon's own PID.
    ///
    /// `--daemon` makes libvirtd fork into the background and its parent exit only once the
    /// daemon initialized (or failed, with the reason on stderr), so `runuser` returns then and
    /// the daemon does not belong to this process.
    private func launchDaemon(_ index: Int, user: SystemUser) async throws -> Int32 {
        let name = configuration.hostName(index)
        guard let runuser = Executables.find("runuser"), let libvirtd = Executables.find("libvirtd") else {
            throw LabError("failed to start \(name): runuser or libvirtd is missing")
        }
        let daemonPidFile = configuration.daemonPidFile(index)
        let startLog = "\(configuration.logDirectory(index))/start.log"
        // `env -i`: nothing of this process's environment (XDG_CONFIG_HOME, …) may leak into
        // the daemon and point it at another configuration.
        let command = [
            runuser, "-u", user.name, "--", "/usr/bin/env", "-i",
            "HOME=\(user.home)", "USER=\(user.name)", "LOGNAME=\(user.name)", "LANG=C.UTF-8",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "XDG_RUNTIME_DIR=\(configuration.runtimeDirectory(index))",
            libvirtd, "--timeout", "0", "--daemon", "--pid-file", daemonPidFile,
        ]
        // Each start's output is appended to start.log; start from an empty one.
        try? FileManager.default.removeItem(atPath: startLog)
        let status = try await DaemonLauncher.run(command, logFile: startLog, timeout: configuration.startTimeout)
        guard status == 0 else {
            let output = (try? String(contentsOfFile: startLog, encoding: .utf8)) ?? ""
            throw LabError(
                "failed to start \(name): `\(command.joined(separator: " "))` exited with status \(status): "
                    + output.trimmingCharacters(in: .whitespacesAndNewlines) + logTail(index))
        }
        var pid: Int32?
        _ = await poll(within: configuration.startTimeout) {
            pid = Self.readPid(daemonPidFile)
            return pid.map(Processes.isRunning) ?? false
        }
        guard let pid, let entry = Processes.entry(pid), !entry.isZombie else {
            throw LabError("failed to start \(name): libvirtd did not stay up (no live PID in \(daemonPidFile))\(logTail(index))")
        }
        guard entry.realUID == user.uid else {
            throw LabError("failed to start \(name): PID \(pid) in \(daemonPidFile) belongs to uid \(entry.realUID), not \(user.name)")
        }
        return pid
    }

    /// Records the daemon named by libvirtd's own PID file in this host's runtime directory if
    /// it is a live libvirtd of the host's user that answers on the host's socket.
    private func adoptRunningDaemon(_ index: Int) throws -> LabHost? {
        guard !FileSystem.exists(configuration.pidFile(index)),
            let pid = Self.readPid(configuration.daemonPidFile(index)), isLibvirtd(pid, index: index)
        else { return nil }
        let host = makeHost(index, pid: pid)
        guard UnixSocket.probe(host.socketPath) == nil else { return nil }
        try FileSystem.writeFile(configuration.pidFile(index), "\(pid)\n", mode: 0o644, owner: nil)
        return host
    }

    private func waitUntilAnswering(_ index: Int) async throws -> LabHost? {
        var found: LabHost?
        _ = await poll(within: configuration.startTimeout) {
            if case .up(let host) = try? await self.state(of: index) {
                found = host
                return true
            }
            return false
        }
        return found
    }

    private func makeHost(_ index: Int, pid: Int32) -> LabHost {
        LabHost(
            index: index, name: configuration.hostName(index), user: configuration.userName(index),
            hostUUID: configuration.hostUUID(index), runtimeDirectory: configuration.runtimeDirectory(index),
            socketPath: configuration.socketPath(index), pid: pid)
    }

    private func logTail(_ index: Int) -> String {
        let path = "\(configuration.logDirectory(index))/libvirtd.log"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8), !text.isEmpty else { return "" }
        let lines = text.split(separator: "\n").suffix(5).joined(separator: "\n  ")
        return "\n  last lines of \(path):\n  \(lines)"
    }

    static func readPid(_ path: String) -> Int32? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    // MARK: Status

    /// The state of every host this lab root has a directory for, in index order.
    public func status() async -> [LabHostStatus] {
        var result: [LabHostStatus] = []
        for index in knownHostIndices() {
            let state: LabHostState
            do {
                state = try await self.state(of: index)
            } catch {
                state = .unknown(reason: "\(error)")
            }
            result.append(LabHostStatus(index: index, name: configuration.hostName(index), state: state))
        }
        return result
    }

    /// The state of host `index`: up only if its recorded PID is a live libvirtd of its user and
    /// the socket accepts connections.
    public func state(of index: Int) async throws -> LabHostState {
        let pidFile = configuration.pidFile(index)
        let user = configuration.userName(index)
        guard FileSystem.exists(pidFile) else {
            // Not recorded as started; a daemon we did not record might still run.
            if let pid = Self.readPid(configuration.daemonPidFile(index)), Processes.isRunning(pid) {
                return .unknown(reason: "libvirtd (pid \(pid)) runs but was not started by this lab (no \(pidFile))")
            }
            return .down(reason: "not started")
        }
        guard let pid = Self.readPid(pidFile) else {
            return .unknown(reason: "the PID file \(pidFile) is unreadable")
        }
        guard let entry = Processes.entry(pid), !entry.isZombie else {
            return .down(reason: "libvirtd (pid \(pid)) is not running")
        }
        let owner = try SystemUser.lookup(user)
        guard entry.command == "libvirtd", entry.realUID == owner?.uid else {
            return .down(reason: "pid \(pid) is no longer libvirtd of \(user) (stale PID file)")
        }
        let host = makeHost(index, pid: pid)
        if let problem = UnixSocket.probe(host.socketPath) {
            return .unknown(reason: "libvirtd (pid \(pid)) runs but \(host.socketPath) does not accept connections: \(problem)")
        }
        return .up(host)
    }

    /// Indices of hosts with a directory under the root (whatever count they were started with).
    private func knownHostIndices() -> [Int] {
        let prefix = configuration.hostNamePrefix
        let names = (try? FileManager.default.contentsOfDirectory(atPath: configuration.root)) ?? []
        return names.compactMap { $0.hasPrefix(prefix) ? Int($0.dropFirst(prefix.count)) : nil }.filter { $0 > 0 }.sorted()
    }

    // MARK: Down

    /// Stops one host's daemon by its recorded PID (SIGTERM, then SIGKILL after the stop
    /// timeout). Its guests keep running and its runtime directory stays, so `startHost` brings
    /// it back like a restarted libvirtd, which reattaches to them. Used to make a host
    /// unreachable.
    /// The PID of host `index`'s daemon, when the lab started it and it runs (for fault tests:
    /// freezing it with SIGSTOP).
    public func daemonPID(_ index: Int) -> Int32? {
        guard let pid = Self.readPid(configuration.pidFile(index)), isLibvirtd(pid, index: index) else { return nil }
        return pid
    }

    public func stopHost(_ index: Int) async throws {
        let name = configuration.hostName(index)
        if let pid = Self.readPid(configuration.pidFile(index)), isLibvirtd(pid, index: index) {
            let left = await Processes.terminate([pid], grace: configuration.stopTimeout)
            if !left.isEmpty { throw LabError("failed to stop \(name): libvirtd (pid \(pid)) survived SIGKILL") }
        }
        try FileSystem.remove(configuration.pidFile(index))
    }

    /// Fences host `name` as a power-off would: its daemon and every guest of it are killed at
    /// once (SIGKILL, no shutdown), its definitions stay. Returns false when the lab has no
    /// such host. `lab up` brings it back with its guests stopped.
    public func fence(_ name: String) async throws -> Bool {
        guard let index = knownHostIndices().first(where: { configuration.hostName($0) == name }) else { return false }
        var pids: [Int32] = []
        if let pid = Self.readPid(configuration.pidFile(index)), isLibvirtd(pid, index: index) { pids.append(pid) }
        if let user = try? SystemUser.lookup(configuration.userName(index)) {
            pids += Processes.all(ownedBy: user.uid).filter { Self.isLabProcess($0.command) }.map(\.pid)
        }
        for pid in Set(pids) { kill(pid, SIGKILL) }
        let survivors = await Processes.terminate(Array(Set(pids)), grace: .seconds(2))
        if !survivors.isEmpty { throw LabError("failed to fence \(name): processes \(survivors) survived SIGKILL") }
        try FileSystem.remove(configuration.pidFile(index))
        return true
    }

    /// Tears the whole lab down: for every host, destroys its guests, stops its daemon, ends any
    /// process left running as its user (QEMU), and removes its runtime directory and PID files.
    /// Logs stay. Idempotent; problems with one host do not stop the others and are reported
    /// together at the end.
    public func down() async throws {
        var problems: [String] = []
        for index in knownHostIndices() {
            do {
                try await tearDownHost(index)
            } catch {
                problems.append("\(error)")
            }
        }
        if !problems.isEmpty {
            throw LabError("failed to tear the lab down: " + problems.joined(separator: "; "))
        }
    }

    private func tearDownHost(_ index: Int) async throws {
        let name = configuration.hostName(index)
        var problems: [String] = []
        if case .up(let host) = try? await state(of: index) {
            if let problem = await destroyGuests(of: host) { problems.append(problem) }
        }
        do {
            try await stopHost(index)
        } catch {
            problems.append("\(error)")
        }
        // Whatever still runs as the host's user came from this lab: guests (if the daemon
        // could not destroy them), a daemon whose PID file was lost, helper daemons.
        if let user = try? SystemUser.lookup(configuration.userName(index)) {
            let leftovers = Processes.all(ownedBy: user.uid).filter { Self.isLabProcess($0.command) }
            let survivors = await Processes.terminate(leftovers.map(\.pid), grace: configuration.stopTimeout)
            if !survivors.isEmpty {
                problems.append("processes \(survivors) of \(user.name) survived SIGKILL")
            }
        }
        do {
            try FileSystem.remove(configuration.runtimeDirectory(index))
            try FileSystem.remove(configuration.pidFile(index))
        } catch {
            problems.append("\(error)")
        }
        if !problems.isEmpty {
            throw LabError("\(name): " + problems.joined(separator: "; "))
        }
    }

    /// Destroys (and with `undefineDomainsOnDown` undefines) every QEMU guest of `host`.
    /// Bounded: a daemon that does not answer is left to the process sweep.
    private func destroyGuests(of host: LabHost) async -> String? {
        let undefine = configuration.undefineDomainsOnDown
        do {
            try await withDeadline(configuration.stopTimeout + .seconds(10), "destroy guests of \(host.name)") {
                let connection = try await Connection.open(uri: host.qemuURI)
                // All at once: a guest whose disk's target is already gone can take seconds to die.
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for summary in try await connection.listAllDomains() {
                        group.addTask {
                            if summary.state.isActive { try await summary.domain.destroy() }
                            if undefine && summary.isPersistent {
                                try await summary.domain.undefine(flags: [.managedSave, .snapshotsMetadata, .nvram])
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                await connection.close()
            }
            return nil
        } catch {
            return "failed to destroy guests of \(host.name): \(error)"
        }
    }

    private func isLibvirtd(_ pid: Int32, index: Int) -> Bool {
        guard let entry = Processes.entry(pid), !entry.isZombie, entry.command == "libvirtd" else { return false }
        return (try? SystemUser.lookup(configuration.userName(index)))??.uid == entry.realUID
    }

    /// Programs a lab host's user runs: the daemon, its helpers and QEMU guests.
    static func isLabProcess(_ command: String) -> Bool {
        command.hasPrefix("qemu-system") || ["libvirtd", "virtlogd", "virtlockd", "virtqemud"].contains(command)
    }
}
