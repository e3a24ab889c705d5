import Foundation
import VirtformSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Where and how the lab's shared storage runs: a btrfs filesystem in a sparse file,
/// loop-mounted, and one tgtd iSCSI target daemon on loopback.
public struct StorageLabConfiguration: Sendable, Hashable {
    /// Holds the pool's file, tgtd's PID file and its log.
    public var root: String
    /// Where the btrfs pool is mounted (the reference manifests' `StoragePool.spec.path`).
    public var mountPoint: String
    /// Apparent size of the pool's file (sparse: it takes only what is written).
    public var poolSize: UInt64
    /// tgtd listens on 127.0.0.1 at this port only.
    public var portalPort: Int
    /// tgtd's control port: its socket is /var/run/tgtd/socket.N (`tgtd -C N`, `tgtadm -C N`).
    public var controlPort: Int
    /// How long tgtd may take to answer after it starts, and to exit when asked.
    public var daemonTimeout: Duration
    /// Whether `down()` also deletes the pool's file (tests); the lab keeps it, so a master
    /// image survives `lab down`/`lab up`.
    public var removePoolOnDown: Bool

    public init(
        root: String = "/var/lib/virtform-lab/storage", mountPoint: String = "/var/lib/virtform-lab/pool",
        poolSize: UInt64 = 2 << 30, portalPort: Int = 3260, controlPort: Int = 0,
        daemonTimeout: Duration = .seconds(10), removePoolOnDown: Bool = false
    ) {
        self.root = root
        self.mountPoint = mountPoint
        self.poolSize = poolSize
        self.portalPort = portalPort
        self.controlPort = controlPort
        self.daemonTimeout = daemonTimeout
        self.removePoolOnDown = removePoolOnDown
    }

    public var poolImage: String { "\(root)/pool.img" }
    /// Written once mkfs.btrfs has finished, so a half-made file is formatted again.
    var poolReadyMarker: String { "\(root)/pool.img.ready" }
    public var pidFile: String { "\(root)/tgtd.pid" }
    public var logFile: String { "\(root)/tgtd.log" }
    public var portal: String { "127.0.0.1:\(portalPort)" }
    public var controlSocket: String { "/var/run/tgtd/socket.\(controlPort)" }
    var tgtdArguments: [String] { ["-C", String(controlPort), "--iscsi", "portal=\(portal)"] }
}

/// What runs of the lab's storage now.
public struct StorageLabStatus: Sendable, Hashable {
    /// The loop device the pool is mounted from, nil when not mounted.
    public var poolDevice: String?
    /// tgtd's PID when it runs.
    public var tgtdPID: Int32?
    public var portal: String
    public var controlPort: Int

    public var poolMounted: Bool { poolDevice != nil }
    public var isUp: Bool { poolMounted && tgtdPID != nil }
}

/// The lab's storage: up, down, status. Idempotent: `up` on a running lab and `down` on a
/// stopped or half-made one do only what is missing. Needs root, btrfs-progs and tgt.
public actor StorageLab {
    public nonisolated let configuration: StorageLabConfiguration

    public init(configuration: StorageLabConfiguration = StorageLabConfiguration()) {
        self.configuration = configuration
    }

    /// Why the storage lab cannot run here (not root, a program missing), or nil.
    public static func unmetRequirements() -> String? {
        if geteuid() != 0 { return "the storage lab needs root (loop mounts, tgtd)" }
        let missing = ["mkfs.btrfs", "btrfs", "mount", "umount", "losetup", "tgtd", "tgtadm"].filter { Executables.find($0) == nil }
        if !missing.isEmpty { return "the storage lab needs \(missing.joined(separator: ", ")) (install btrfs-progs, tgt, util-linux)" }
        return nil
    }

    public func status() -> StorageLabStatus {
        StorageLabStatus(poolDevice: Self.mountSource(configuration.mountPoint), tgtdPID: runningTgtd(),
                         portal: configuration.portal, controlPort: configuration.controlPort)
    }

    @discardableResult
    public func up() async throws -> StorageLabStatus {
        if let problem = Self.unmetRequirements() { throw LabError(problem) }
        let c = configuration
        try makeDirectories(c.root)
        try makeDirectories(c.mountPoint)
        try await mountPool()
        try await startTgtd()
        return status()
    }

    /// Stops tgtd (its targets first: it ignores requests to stop while it has any), unmounts
    /// the pool and frees its loop device; with `removePoolOnDown`, deletes the pool's file.
    public func down() async throws {
        var problems: [String] = []
        do { try await stopTgtd() } catch { problems.append("\(error)") }
        do { try await unmountPool() } catch { problems.append("\(error)") }
        if configuration.removePoolOnDown {
            try? FileSystem.remove(configuration.poolImage)
            try? FileSystem.remove(configuration.poolReadyMarker)
        }
        if !problems.isEmpty { throw LabError("failed to stop the storage lab: " + problems.joined(separator: "; ")) }
    }

    // MARK: Pool

    private func mountPool() async throws {
        let c = configuration
        if Self.mountSource(c.mountPoint) != nil { return }
        // A marker without its image (the image removed by hand) is no ready pool either.
        if !FileSystem.exists(c.poolReadyMarker) || !FileSystem.exists(c.poolImage) {
            unlink(c.poolImage)
            let fd = open(c.poolImage, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw LabError("failed to create \(c.poolImage): \(String(cString: strerror(errno)))") }
            let sized = ftruncate(fd, off_t(c.poolSize)) == 0
            close(fd)
            guard sized else { throw LabError("failed to size \(c.poolImage): \(String(cString: strerror(errno)))") }
            try await run(["mkfs.btrfs", "-q", c.poolImage], "format the storage pool")
            try FileSystem.writeFile(c.poolReadyMarker, "", mode: 0o644, owner: nil)
        }
        try await run(["mount", "-o", "loop", c.poolImage, c.mountPoint], "mount the storage pool at \(c.mountPoint)")
    }

    private func unmountPool() async throws {
        let c = configuration
        if Self.mountSource(c.mountPoint) != nil {
            try await run(["umount", c.mountPoint], "unmount the storage pool at \(c.mountPoint)")
        }
        // `mount -o loop` sets autoclear, and the kernel frees the device shortly after the
        // unmount: wait for that (bounded), then free what an interrupted mount left behind.
        guard FileSystem.exists(c.poolImage) else { return }
        var attached: [String] = []
        _ = await poll(within: .seconds(3)) {
            attached = (try? await self.loopDevices()) ?? []
            return attached.isEmpty
        }
        for device in attached {
            let result = try await Command.run([try program("losetup"), "-d", device], timeout: .seconds(30))
            // Freed by autoclear between the listing and now: that is fine.
            if result.status != 0, try await loopDevices().contains(device) {
                throw LabError("failed to free \(device): `losetup -d \(device)` exited with \(result.status): "
                               + result.standardError.trimmingCharacters(in: .whitespacesAndNewlines))
            }
        }
    }

    /// The loop devices backed by the pool's file (`losetup -j`).
    private func loopDevices() async throws -> [String] {
        let listed = try await run(["losetup", "-j", configuration.poolImage], "list the loop devices of \(configuration.poolImage)")
        return listed.standardOutput.split(separator: "\n").compactMap { line in
            guard let device = line.split(separator: ":").first, device.hasPrefix("/dev/loop") else { return nil }
            return String(device)
        }
    }

    private func program(_ name: String) throws -> String {
        guard let path = Executables.find(name) else { throw LabError("`\(name)` is not installed") }
        return path
    }

    /// The device mounted at `path` (from /proc/self/mountinfo), or nil.
    static func mountSource(_ path: String) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
        let target = (path as NSString).standardizingPath
        var source: String?
        for line in text.split(separator: "\n") {
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER
            let fields = line.split(separator: " ")
            guard fields.count > 4, unescape(fields[4]) == target, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count
            else { continue }
            source = String(fields[dash + 2])  // the last one wins: it is the visible mount
        }
        return source
    }

    private static func unescape(_ field: Substring) -> String {
        field.replacingOccurrences(of: "\\040", with: " ").replacingOccurrences(of: "\\011", with: "\t")
            .replacingOccurrences(of: "\\012", with: "\n").replacingOccurrences(of: "\\134", with: "\\")
    }

    // MARK: tgtd

    private func runningTgtd() -> Int32? {
        guard let text = try? String(contentsOfFile: configuration.pidFile, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
            let entry = Processes.entry(pid), !entry.isZombie, entry.command == "tgtd"
        else { return nil }
        return pid
    }

    private func startTgtd() async throws {
        let c = configuration
        if runningTgtd() != nil { return }
        if UnixSocket.probe(c.controlSocket) == nil {
            throw LabError("failed to start tgtd: another tgtd already answers on control port \(c.controlPort) (\(c.controlSocket)); "
                           + "stop it with `tgtadm -C \(c.controlPort) --op delete --mode system` or pick another control port")
        }
        guard let tgtd = Executables.find("tgtd") else { throw LabError("failed to start tgtd: it is not installed (install tgt)") }
        let arguments = [tgtd] + c.tgtdArguments
        // tgtd forks into the background and its first process exits.
        let status = try await DaemonLauncher.run(arguments, logFile: c.logFile, timeout: c.daemonTimeout)
        guard status == 0 else { throw LabError("failed to start tgtd: `\(arguments.joined(separator: " "))` exited with \(status); see \(c.logFile)") }
        var pid: Int32?
        let answered = await poll(within: c.daemonTimeout) {
            pid = Self.findTgtd(arguments: c.tgtdArguments)
            return pid != nil && UnixSocket.probe(c.controlSocket) == nil
        }
        guard answered, let pid else {
            if let pid { await Processes.terminate([pid], grace: .seconds(2)) }
            let log = (try? String(contentsOfFile: c.logFile, encoding: .utf8)) ?? ""
            throw LabError("failed to start tgtd on \(c.portal) (control port \(c.controlPort)): it did not answer within "
                           + "\(c.daemonTimeout): \(log.split(separator: "\n").suffix(3).joined(separator: " | "))")
        }
        try FileSystem.writeFile(c.pidFile, "\(pid)\n", mode: 0o644, owner: nil)
    }

    /// The main tgtd process started with exactly `arguments`: the one whose parent is not
    /// another tgtd (tgtd forks a helper).
    static func findTgtd(arguments: [String]) -> Int32? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        var matches: [Int32: Int32] = [:]  // pid → parent
        for pid in names.compactMap(Int32.init) {
            guard let entry = Processes.entry(pid), entry.command == "tgtd", !entry.isZombie,
                let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
                let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
            else { continue }
            let argv = raw.split(separator: 0, omittingEmptySubsequences: false).dropLast().map { String(decoding: $0, as: UTF8.self) }
            guard Array(argv.dropFirst()) == arguments, let close = stat.lastIndex(of: ")") else { continue }
            let rest = stat[stat.index(after: close)...].split(separator: " ")
            matches[pid] = rest.count > 1 ? Int32(rest[1]) ?? 0 : 0
        }
        return matches.first { matches[$0.value] == nil }?.key
    }

    private func stopTgtd() async throws {
        let c = configuration
        var pids: [Int32] = []
        if let pid = runningTgtd() { pids.append(pid) }
        if let pid = Self.findTgtd(arguments: c.tgtdArguments), !pids.contains(pid) { pids.append(pid) }
        guard !pids.isEmpty else {
            try? FileSystem.remove(c.pidFile)
            return
        }
        // tgtd refuses to stop while it has targets: remove them (forced: the lab is going away).
        if let tgtadm = Executables.find("tgtadm"), UnixSocket.probe(c.controlSocket) == nil {
            let base = [tgtadm, "-C", String(c.controlPort), "--lld", "iscsi"]
            if let shown = try? await Command.run(base + ["--op", "show", "--mode", "target"], timeout: c.daemonTimeout) {
                for line in shown.standardOutput.split(separator: "\n") where line.hasPrefix("Target ") {
                    guard let colon = line.firstIndex(of: ":"), let tid = Int(line.dropFirst(7)[..<colon]) else { continue }
                    _ = try? await Command.run(base + ["--op", "delete", "--mode", "target", "--tid", String(tid), "--force"],
                                               timeout: c.daemonTimeout)
                }
            }
            _ = try? await Command.run([tgtadm, "-C", String(c.controlPort), "--op", "delete", "--mode", "system"], timeout: c.daemonTimeout)
            _ = await poll(within: c.daemonTimeout) { pids.allSatisfy { !Processes.isRunning($0) } }
        }
        // Fallback, by PID: SIGTERM, then SIGKILL.
        let left = await Processes.terminate(pids, grace: .seconds(2))
        guard left.isEmpty else { throw LabError("failed to stop tgtd: PIDs \(left) are still running") }
        // tgtd's helper process can hold the control socket a moment longer; a tgtd started
        // next on the same port must not find it answering.
        _ = await poll(within: c.daemonTimeout) { UnixSocket.probe(c.controlSocket) != nil }
        try? FileSystem.remove(c.pidFile)
    }

    // MARK: Helpers

    private func makeDirectories(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw LabError("failed to create \(path): \(error.localizedDescription)")
        }
    }

    @discardableResult
    private func run(_ arguments: [String], _ what: String) async throws -> CommandResult {
        guard let program = Executables.find(arguments[0]) else { throw LabError("failed to \(what): `\(arguments[0])` is not installed") }
        let full = [program] + arguments.dropFirst()
        let result = try await Command.run(full, timeout: .seconds(60))
        guard result.status == 0 else {
            throw LabError("failed to \(what): `\(arguments.joined(separator: " "))` exited with \(result.status): "
                           + result.standardError.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return result
    }
}
