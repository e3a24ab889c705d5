import Foundation
import VirtformSystem

#if canImport(Glibc)
    import Glibc
#endif

/// How virtform reaches one lab host over SSH: the host's own sshd on a loopback port, as the
/// host's user, with the lab's client key, checked against the lab's known_hosts file.
public struct LabSSHAccess: Sendable, Hashable {
    /// libvirt's two SSH transports: `libssh` (libvirt's own client, told the key and the
    /// known_hosts file in the URI) and `ssh` (the OpenSSH program, which reads its user's
    /// known_hosts unless a command wrapper or ssh_config says otherwise).
    public enum Transport: String, Sendable, Hashable, CaseIterable {
        case libssh
        case ssh
    }

    public let user: String
    public let port: Int
    /// The private key the lab's users accept (`ROOT/ssh/id_ed25519`).
    public let identity: String
    /// Every lab host's key, as `[127.0.0.1]:PORT ssh-ed25519 …` lines.
    public let knownHosts: String
    /// The host's sshd (the listener; sessions are its children).
    public let pid: Int32

    /// The URI as a manifest writes it: the key and the known_hosts file are the Host's
    /// `spec.ssh`, not part of it.
    public func uri(driver: String = "qemu", transport: Transport = .libssh) -> String {
        "\(driver)+\(transport.rawValue)://\(user)@127.0.0.1:\(port)/session"
    }

    /// The URI with the files in it, as libvirt takes it (`virsh -c`).
    public func fullURI(driver: String = "qemu") -> String {
        uri(driver: driver) + "?keyfile=\(identity)&known_hosts=\(knownHosts)&sshauth=privkey"
    }
}

/// One private OpenSSH sshd per lab host, on its own loopback port, accepting only that host's
/// user with the lab's key (LAB.md: "Remote hosts over SSH, for real"). Its session sets
/// `XDG_RUNTIME_DIR` to the host's runtime directory, so `virt-ssh-helper` on the far side
/// finds exactly that host's libvirt daemon (and `LIBVIRT_AUTOSTART=0`: a host whose daemon is
/// down is down, it never gets a second daemon started by a connection).
///
/// Files (all root's, 0700): `ROOT/ssh/id_ed25519[.pub]` (the client key), `ROOT/ssh/known_hosts`,
/// and per host `ROOT/ssh/lab-hN/` with its host key, `sshd_config`, `sshd.pid` and `sshd.log`.
/// Each sshd is stopped by the PID in its PID file, with the sessions it started.
public actor SSHLab {
    public nonisolated let configuration: LabConfiguration
    /// Host N listens on `basePort + N`; 0 picks a free port per host (tests).
    public nonisolated let basePort: Int

    public init(configuration: LabConfiguration, basePort: Int = 2220) {
        self.configuration = configuration
        self.basePort = basePort
    }

    public nonisolated var directory: String { configuration.root + "/ssh" }
    public nonisolated var identity: String { directory + "/id_ed25519" }
    public nonisolated var knownHosts: String { directory + "/known_hosts" }
    nonisolated func hostDirectory(_ index: Int) -> String {
        index == Self.agentIndex ? "\(directory)/\(Self.agentName)" : "\(directory)/\(configuration.hostName(index))"
    }
    /// The agent's sshd has the directory `agent` and index 0 (hosts start at 1).
    static let agentName = "agent"
    static let agentIndex = 0
    nonisolated func pidFile(_ index: Int) -> String { hostDirectory(index) + "/sshd.pid" }
    nonisolated func portFile(_ index: Int) -> String { hostDirectory(index) + "/port" }

    /// Why this machine cannot run the SSH lab, or nil.
    public static func unmetRequirements() -> String? {
        let missing = ["sshd", "ssh-keygen", "ssh", "usermod", "virt-ssh-helper"].filter { Executables.find($0) == nil }
        return missing.isEmpty ? nil : "the ssh lab needs " + missing.joined(separator: ", ") + " (openssh-server, openssh-client, passwd, libvirt-daemon)"
    }

    /// Starts (or keeps) the sshd of each of `hosts` and rewrites the known_hosts file with
    /// every lab host's key. Returns the hosts with their access.
    public func up(_ hosts: [LabHost]) async throws -> [LabHost] {
        if let problem = Self.unmetRequirements() { throw LabError("failed to start the ssh lab: \(problem)") }
        try FileSystem.makeDirectory(directory, mode: 0o700, owner: nil)
        try await ensureClientKey()
        var result: [LabHost] = []
        for host in hosts {
            var host = host
            host.ssh = try await start(host)
            result.append(host)
        }
        try writeKnownHosts()
        return result
    }

    /// The lab's storage and DHCP machine as a remote one: an sshd on `basePort` (or a free
    /// port) that lets root in with the lab's key for one command only — `PROGRAM agent
    /// --allow DIR…` (authorized_keys `command=`, `restrict`; `PermitRootLogin
    /// forced-commands-only`) — whatever the client asks to run.
    public func upAgent(program: String, allow: [String]) async throws -> LabSSHAccess {
        if let problem = Self.unmetRequirements() { throw LabError("failed to start the ssh lab's agent: \(problem)") }
        try FileSystem.makeDirectory(directory, mode: 0o700, owner: nil)
        try await ensureClientKey()
        let index = Self.agentIndex
        if let running = try access(index) { return running }
        guard let key = try? String(contentsOfFile: identity + ".pub", encoding: .utf8) else {
            throw LabError("failed to start the agent's sshd: \(identity).pub is unreadable")
        }
        let folder = hostDirectory(index)
        try FileSystem.makeDirectory(folder, mode: 0o700, owner: nil)
        let command = ([program, "agent"] + allow.flatMap { ["--allow", $0] }).joined(separator: " ")
        guard !command.contains("\"") else { throw LabError("failed to start the agent's sshd: the agent's command line has a quote in it") }
        let authorized = folder + "/authorized_keys"
        try FileSystem.writeFile(authorized, "command=\"\(command)\",restrict \(key.trimmingCharacters(in: .whitespacesAndNewlines))\n", mode: 0o600, owner: nil)
        let access = try await startSSHD(index: index, name: "the agent", user: "root", extra: """
            PermitRootLogin forced-commands-only
            AuthorizedKeysFile \(authorized)
            # The lab's files live under /tmp in tests; they are root's, in 0700 directories.
            StrictModes no

            """)
        try writeKnownHosts()
        return access
    }

    /// The access of host `index` (0: the agent) if its sshd runs.
    public func access(_ index: Int) throws -> LabSSHAccess? {
        guard let pid = sshdPID(index), let port = recordedPort(index) else { return nil }
        return LabSSHAccess(user: index == Self.agentIndex ? "root" : configuration.userName(index), port: port, identity: identity, knownHosts: knownHosts, pid: pid)
    }

    public func sshdPID(_ index: Int) -> Int32? {
        guard let text = try? String(contentsOfFile: pidFile(index), encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
            let entry = Processes.entry(pid), !entry.isZombie, entry.command == "sshd"
        else { return nil }
        return pid
    }

    /// The sshd of host `index` and every session it runs (their `virt-ssh-helper`s too).
    public func processes(_ index: Int) -> [Int32] {
        guard let pid = sshdPID(index) else { return [] }
        return [pid] + Processes.descendants(of: pid)
    }

    /// Stops (`SIGSTOP`) or resumes (`SIGCONT`) host `index`'s sshd and its sessions: a link that
    /// goes silent without closing, as when a machine or a switch dies.
    public func freeze(_ index: Int, _ frozen: Bool) {
        for pid in processes(index) { kill(pid, frozen ? SIGSTOP : SIGCONT) }
    }

    /// Stops every lab host's sshd found under the root, with its sessions, and removes the
    /// SSH directory. Idempotent.
    public func down() async throws {
        var problems: [String] = []
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names where name.hasPrefix(configuration.hostNamePrefix) || name == Self.agentName {
            let index = name == Self.agentName ? Self.agentIndex : Int(name.dropFirst(configuration.hostNamePrefix.count)) ?? -1
            guard index >= 0 else { continue }
            let all = processes(index)
            // Frozen ones first get to run again, or SIGTERM would wait for the thaw.
            for pid in all { kill(pid, SIGCONT) }
            let survivors = await Processes.terminate(all, grace: configuration.stopTimeout)
            if !survivors.isEmpty { problems.append("sshd processes \(survivors) of \(name) survived SIGKILL") }
        }
        do { try FileSystem.remove(directory) } catch { problems.append("\(error)") }
        if !problems.isEmpty { throw LabError("failed to stop the ssh lab: " + problems.joined(separator: "; ")) }
    }

    /// Kills host `index`'s sshd and its sessions at once (SIGKILL): the host's link is gone.
    public func sever(_ index: Int) async {
        let all = processes(index)
        for pid in all { kill(pid, SIGKILL) }
        _ = await Processes.terminate(all, grace: .seconds(1))
    }

    // MARK: Parts

    private func ensureClientKey() async throws {
        guard !FileSystem.exists(identity) else { return }
        try await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "virtform-lab", "-f", identity], "create the lab's client key")
    }

    private func start(_ host: LabHost) async throws -> LabSSHAccess {
        let index = host.index
        if let running = try access(index) { return running }
        guard let user = try SystemUser.lookup(host.user) else { throw LabError("failed to start the sshd of \(host.name): no user \(host.user)") }
        try await unlock(user)
        try authorize(user)
        return try await startSSHD(index: index, name: host.name, user: user.name, extra: """
            PermitRootLogin no
            SetEnv XDG_RUNTIME_DIR=\(host.runtimeDirectory) LIBVIRT_AUTOSTART=0

            """)
    }

    /// Starts the sshd of `index` (a host, or the agent) for `user`, with `extra` lines of
    /// configuration, on its port; retries a free port that was raced for.
    private func startSSHD(index: Int, name: String, user: String, extra: String) async throws -> LabSSHAccess {
        guard let sshd = Executables.find("sshd") else { throw LabError("failed to start the sshd of \(name): sshd is missing (openssh-server)") }
        let folder = hostDirectory(index)
        try FileSystem.makeDirectory(folder, mode: 0o700, owner: nil)
        let hostKey = folder + "/ssh_host_ed25519_key"
        if !FileSystem.exists(hostKey) {
            try await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", hostKey], "create \(name)'s host key")
        }
        // sshd's privilege separation directory.
        try FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
        chmod("/run/sshd", 0o755)
        var lastError = ""
        // A host started again keeps the port it had (its manifests and known_hosts name it).
        let previous = recordedPort(index)
        for attempt in 0..<5 {
            let port = basePort != 0 ? basePort + index : attempt == 0 && previous != nil ? previous! : try LoopbackPort.free()
            let config = folder + "/sshd_config"
            try FileSystem.writeFile(config, Self.configuration(port: port, hostKey: hostKey, pidFile: pidFile(index), user: user) + extra,
                                     mode: 0o600, owner: nil)
            try? FileManager.default.removeItem(atPath: pidFile(index))
            let log = folder + "/sshd.log"
            let status = try await DaemonLauncher.run([sshd, "-f", config, "-E", log], logFile: folder + "/start.log", timeout: configuration.startTimeout)
            var pid: Int32?
            if status == 0 {
                _ = await poll(within: .seconds(10)) {
                    pid = self.sshdPIDNow(index)
                    return pid != nil
                }
            }
            if let pid {
                try FileSystem.writeFile(portFile(index), "\(port)\n", mode: 0o600, owner: nil)
                return LabSSHAccess(user: user, port: port, identity: identity, knownHosts: knownHosts, pid: pid)
            }
            let output = [(try? String(contentsOfFile: folder + "/start.log", encoding: .utf8)) ?? "",
                          (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""].joined(separator: "\n")
            lastError = "sshd (status \(status)) did not start on 127.0.0.1:\(port): " + output.trimmingCharacters(in: .whitespacesAndNewlines).suffix(400)
            // A fixed port that is taken stays taken; a picked one may have been raced for.
            if basePort != 0 { break }
        }
        throw LabError("failed to start the sshd of \(name): \(lastError)")
    }

    private nonisolated func sshdPIDNow(_ index: Int) -> Int32? {
        guard let text = try? String(contentsOfFile: pidFile(index), encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), Processes.isRunning(pid)
        else { return nil }
        return pid
    }

    private func recordedPort(_ index: Int) -> Int? {
        (try? String(contentsOfFile: portFile(index), encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Only one user, only with a key, no TTY, no forwarding (the caller adds what the user may
    /// do: a host's session finds the host's daemon and never starts one).
    static func configuration(port: Int, hostKey: String, pidFile: String, user: String) -> String {
        """
        # A virtform lab sshd: loopback only, one user only, keys only.
        Port \(port)
        ListenAddress 127.0.0.1
        HostKey \(hostKey)
        PidFile \(pidFile)
        AllowUsers \(user)
        AuthenticationMethods publickey
        PubkeyAuthentication yes
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        UsePAM no
        PermitTTY no
        AllowTcpForwarding no
        AllowAgentForwarding no
        X11Forwarding no

        """
    }

    /// A user made by `useradd` has a locked password (`!`), and sshd without PAM refuses a
    /// locked account even for keys; `*` is unusable as a password but not locked.
    private func unlock(_ user: SystemUser) async throws {
        let shadow = (try? String(contentsOfFile: "/etc/shadow", encoding: .utf8)) ?? ""
        let entry = shadow.split(separator: "\n").first { $0.hasPrefix("\(user.name):") }
        let password = entry?.split(separator: ":", omittingEmptySubsequences: false).dropFirst().first ?? ""
        guard password.hasPrefix("!") || password.isEmpty else { return }
        try await run(["usermod", "-p", "*", user.name], "unlock \(user.name) for ssh keys")
    }

    /// The lab's public key as the user's only authorized key.
    private func authorize(_ user: SystemUser) throws {
        guard let key = try? String(contentsOfFile: identity + ".pub", encoding: .utf8) else {
            throw LabError("failed to authorize the lab's key for \(user.name): \(identity).pub is unreadable")
        }
        try FileSystem.makeDirectory(user.home + "/.ssh", mode: 0o700, owner: user)
        try FileSystem.writeFile(user.home + "/.ssh/authorized_keys", key, mode: 0o600, owner: user)
    }

    /// `[127.0.0.1]:PORT KEY` for every lab host whose sshd runs.
    private func writeKnownHosts() throws {
        var lines: [String] = []
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        for name in names where name.hasPrefix(configuration.hostNamePrefix) || name == Self.agentName {
            guard let index = name == Self.agentName ? Self.agentIndex : Int(name.dropFirst(configuration.hostNamePrefix.count)), let port = recordedPort(index),
                let key = try? String(contentsOfFile: hostDirectory(index) + "/ssh_host_ed25519_key.pub", encoding: .utf8)
            else { continue }
            let parts = key.split(separator: " ")
            guard parts.count >= 2 else { continue }
            lines.append("[127.0.0.1]:\(port) \(parts[0]) \(parts[1])")
        }
        try FileSystem.writeFile(knownHosts, lines.map { $0 + "\n" }.joined(), mode: 0o600, owner: nil)
    }

    private func run(_ arguments: [String], _ what: String) async throws {
        guard let program = Executables.find(arguments[0]) else {
            throw LabError("failed to \(what): \(arguments[0]) is missing")
        }
        let result = try await Command.run([program] + arguments.dropFirst())
        guard result.status == 0 else {
            throw LabError("failed to \(what): `\(arguments.joined(separator: " "))` exited with status \(result.status): "
                           + result.standardError.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }
}
