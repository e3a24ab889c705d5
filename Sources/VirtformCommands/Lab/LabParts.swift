import ArgumentParser
import Foundation
import VirtformLab

#if canImport(Glibc)
    import Glibc
#endif

/// The settings of one lab root that must stay the same from `lab up` to `lab down`: they name
/// the system users, ports and namespace the lab's daemons use. `lab up` records them in
/// `ROOT/lab.json`, so `lab status` and `lab down` find exactly that lab's daemons (and never
/// another lab's) without repeating the options. The record outlives `lab down` (falling back
/// to the defaults afterwards would point `lab down` at the default lab's users); `lab up` may
/// change it while nothing of the lab runs.
struct LabSettings: Codable, Equatable {
    var userPrefix = "vflabh"
    var iscsiPort = 3260
    var tgtControlPort = 0
    var dhcpNamespace = "vflab-dhcp"
    /// The parts `lab up` started (a lab brought up with `--no-dhcp` is not "down" for lacking DHCP).
    var storage = true
    var dhcp = true
    /// `ssh`: each host also has its own sshd (`SSHLab`) on `sshBasePort` + N, and the host
    /// entries reach it over libssh; nil (records before it existed) or `unix`: sockets only.
    var transport: String?
    var sshBasePort: Int?

    var overSSH: Bool { transport == "ssh" }

    static func recordFile(_ root: String) -> String { (root as NSString).appendingPathComponent("lab.json") }

    static func recorded(at root: String) throws -> LabSettings? {
        let file = recordFile(root)
        guard let data = FileManager.default.contents(atPath: file) else { return nil }
        do {
            return try JSONDecoder().decode(LabSettings.self, from: data)
        } catch {
            throw LabCommandError("cannot read the lab's settings in \(file): \(error.localizedDescription); remove the file if no lab runs under \(root)")
        }
    }

    func record(at root: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let file = Self.recordFile(root)
        do {
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            try encoder.encode(self).write(to: URL(fileURLWithPath: file), options: .atomic)
        } catch {
            throw LabCommandError("failed to record the lab's settings in \(file): \(error.localizedDescription)")
        }
    }
}

/// A `lab` failure that is reported as one line and exit status 1.
struct LabCommandError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Options shared by `lab up`, `lab down` and `lab status`.
struct LabOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Where the lab keeps its files: hosts in DIR/lab-hN, storage in DIR/storage with the pool mounted at DIR/pool, DHCP in DIR/kea.",
        valueName: "dir"))
    var root = LabOptions.defaultRoot

    static let defaultRoot = "/var/lib/virtform-lab"

    @Option(help: ArgumentHelp("Host N runs as system user PREFIX<N> (default vflabh). Two labs must not share a prefix.", valueName: "prefix"))
    var userPrefix: String?

    @Option(help: ArgumentHelp("The iSCSI target's port on 127.0.0.1 (default 3260).", valueName: "port"))
    var iscsiPort: Int?

    @Option(help: ArgumentHelp("tgtd's control port, as in `tgtadm -C N` (default 0).", valueName: "n"))
    var tgtControlPort: Int?

    @Option(help: ArgumentHelp("The network namespace the DHCP server runs in (default vflab-dhcp).", valueName: "name"))
    var dhcpNamespace: String?

    @Option(help: ArgumentHelp("How virtform reaches the lab's hosts: unix (their daemons' sockets, default) or ssh (each host's own sshd on 127.0.0.1, with the lab's key and known_hosts).", valueName: "transport"))
    var transport: String?

    @Option(help: ArgumentHelp("With --transport ssh: host N's sshd listens on 127.0.0.1:PORT+N (default 2220).", valueName: "port"))
    var sshBasePort: Int?

    @Flag(help: "Leave out the storage (the btrfs pool and the iSCSI target).")
    var noStorage = false

    @Flag(help: "Leave out the DHCP server.")
    var noDhcp = false

    func validate() throws {
        guard root.hasPrefix("/") else { throw ValidationError("--root must be an absolute path, not '\(root)'") }
        if let iscsiPort, !(1...65535).contains(iscsiPort) { throw ValidationError("--iscsi-port must be 1…65535, not \(iscsiPort)") }
        if let tgtControlPort, !(0...65535).contains(tgtControlPort) {
            throw ValidationError("--tgt-control-port must be 0…65535, not \(tgtControlPort)")
        }
        if let userPrefix, userPrefix.isEmpty || !userPrefix.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == "_") }) {
            throw ValidationError("--user-prefix must be lower-case letters, digits, '-' or '_', not '\(userPrefix)'")
        }
        if let transport, !["unix", "ssh"].contains(transport) {
            throw ValidationError("--transport must be unix or ssh, not '\(transport)'")
        }
        if let sshBasePort, !(1...65000).contains(sshBasePort) { throw ValidationError("--ssh-base-port must be 1…65000, not \(sshBasePort)") }
        if let dhcpNamespace, dhcpNamespace.isEmpty || dhcpNamespace.contains("/") {
            throw ValidationError("--dhcp-namespace must be a plain name, not '\(dhcpNamespace)'")
        }
    }

    /// The settings the options ask for on top of `base` (the recorded ones, or the defaults).
    func settings(over base: LabSettings) -> LabSettings {
        var settings = base
        if let userPrefix { settings.userPrefix = userPrefix }
        if let iscsiPort { settings.iscsiPort = iscsiPort }
        if let tgtControlPort { settings.tgtControlPort = tgtControlPort }
        if let dhcpNamespace { settings.dhcpNamespace = dhcpNamespace }
        if let transport { settings.transport = transport }
        if let sshBasePort { settings.sshBasePort = sshBasePort }
        return settings
    }

    /// The lab under `root`, its recorded settings overridden by explicit options.
    func lab() throws -> Lab {
        let recorded = try LabSettings.recorded(at: root)
        return Lab(root: root, settings: settings(over: recorded ?? LabSettings()), recorded: recorded != nil)
    }

    /// The lab, or exit 1 saying why its record cannot be read.
    func openLab() throws -> Lab {
        do {
            return try lab()
        } catch {
            Output.current.errorLine("error: \(error)")
            throw ExitCode(1)
        }
    }
}

/// The whole lab under one root: hypervisors, storage (pool and iSCSI target) and DHCP server.
/// Storage and DHCP live under the root exactly as their defaults do under /var/lib/virtform-lab,
/// so the reference manifests' paths (`/var/lib/virtform-lab/pool`,
/// `/var/lib/virtform-lab/kea/kea-1.sock`) match the default lab.
struct Lab {
    let root: String
    var settings: LabSettings
    /// Whether `settings` came from `ROOT/lab.json`.
    let recorded: Bool

    var hypervisors: HypervisorLab {
        HypervisorLab(configuration: LabConfiguration(root: root, userPrefix: settings.userPrefix))
    }

    var storageConfiguration: StorageLabConfiguration {
        StorageLabConfiguration(
            root: (root as NSString).appendingPathComponent("storage"), mountPoint: (root as NSString).appendingPathComponent("pool"),
            portalPort: settings.iscsiPort, controlPort: settings.tgtControlPort)
    }

    var storage: StorageLab { StorageLab(configuration: storageConfiguration) }

    /// The hosts' sshds (used with `--transport ssh`; `lab down` stops any it finds).
    var ssh: SSHLab { SSHLab(configuration: hypervisors.configuration, basePort: settings.sshBasePort ?? 2220) }

    /// Whether this root ever started sshds: `SSHLab.up` makes its directory first.
    var sshMayRun: Bool { FileManager.default.fileExists(atPath: ssh.directory) }

    var dhcpConfiguration: DHCPLabConfiguration { DHCPLabConfiguration(root: root, namespace: settings.dhcpNamespace) }

    var dhcp: DHCPLab { DHCPLab(configuration: dhcpConfiguration) }

    /// Whether this root ever started its storage: `StorageLab.up` makes its directory first. Without it,
    /// `lab down` leaves storage alone (its fallback would look for a tgtd by its arguments alone).
    var storageMayRun: Bool {
        FileManager.default.fileExists(atPath: storageConfiguration.root)
            || FileManager.default.fileExists(atPath: storageConfiguration.mountPoint)
    }

    /// Whether this root ever started its DHCP server: `DHCPLab.up` makes its directory before the namespace.
    var dhcpMayRun: Bool { FileManager.default.fileExists(atPath: dhcpConfiguration.directory) }

    /// Whether any part of this lab runs (then its settings must not change).
    func anythingRuns() async -> Bool {
        for status in await hypervisors.status() {
            if case .down = status.state { continue }
            return true
        }
        if await storageRuns() { return true }
        return await dhcpRuns()
    }

    /// Whether the pool is mounted or tgtd runs.
    func storageRuns() async -> Bool {
        guard storageMayRun else { return false }
        let status = await storage.status()
        return status.poolMounted || status.tgtdPID != nil
    }

    /// Whether the DHCP server is anything but down.
    func dhcpRuns() async -> Bool {
        guard dhcpMayRun else { return false }
        if case .down = await dhcp.status() { return false }
        return true
    }

    /// Why this lab must not start or stop its hosts: a libvirtd of one of its users that belongs
    /// to a lab under another root (`HypervisorLab.down` ends every lab process of its users).
    func foreignDaemons(hosts count: Int?) -> String? {
        let indices = count.map { Array(1...max($0, 1)) } ?? hostIndices()
        let users = Set(indices.map { "\(settings.userPrefix)\($0)" })
        let prefix = (root as NSString).standardizingPath + "/"
        var found: [String] = []
        for pid in ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap(Int32.init) {
            guard let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8),
                comm.trimmingCharacters(in: .whitespacesAndNewlines) == "libvirtd",
                let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                let uidLine = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }),
                let uid = uidLine.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first.flatMap({ UInt32($0) }),
                let entry = getpwuid(uid), let name = String(validatingCString: entry.pointee.pw_name), users.contains(name),
                let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline")
            else { continue }
            let argv = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            let pidFile = argv.firstIndex(of: "--pid-file").flatMap { argv.indices.contains($0 + 1) ? argv[$0 + 1] : nil } ?? "?"
            if !(pidFile as NSString).standardizingPath.hasPrefix(prefix) { found.append("\(name) (libvirtd pid \(pid), \(pidFile))") }
        }
        guard !found.isEmpty else { return nil }
        return "users of this lab run another lab's daemons: \(found.sorted().joined(separator: ", ")); "
            + "give this lab its own --user-prefix"
    }

    /// Why `lab down` must leave this lab's storage alone: without a tgtd PID file of its own,
    /// `StorageLab.down` looks for a tgtd by its arguments, and the default lab's tgtd has the
    /// same ones when this lab uses the default ports.
    func foreignTgtd() -> String? {
        let defaultRoot = LabOptions.defaultRoot
        guard (root as NSString).standardizingPath != defaultRoot, !FileManager.default.fileExists(atPath: storageConfiguration.pidFile),
            let text = try? String(contentsOfFile: "\(defaultRoot)/storage/tgtd.pid", encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
            let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline")
        else { return nil }
        let argv = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard argv.contains("portal=\(storageConfiguration.portal)"),
            let c = argv.firstIndex(of: "-C"), argv.indices.contains(c + 1), argv[c + 1] == String(settings.tgtControlPort)
        else { return nil }
        return "the tgtd on \(storageConfiguration.portal) (pid \(pid)) belongs to the lab under \(defaultRoot); "
            + "pass this lab's --iscsi-port and --tgt-control-port"
    }

    /// Indices of the host directories under the root (`lab-h1` …).
    func hostIndices() -> [Int] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.compactMap { $0.hasPrefix("lab-h") ? Int($0.dropFirst(5)) : nil }.filter { $0 > 0 }.sorted()
    }
}

/// What each part of the lab needs, with the Debian package that provides it.
enum LabRequirements {
    typealias Need = (program: String, package: String)

    static let hosts: [Need] = [
        ("libvirtd", "libvirt-daemon"), ("virsh", "libvirt-clients"), ("qemu-system-x86_64", "qemu-system-x86"),
        ("runuser", "util-linux"), ("useradd", "passwd"),
    ]
    static let storage: [Need] = [
        ("mkfs.btrfs", "btrfs-progs"), ("btrfs", "btrfs-progs"), ("mount", "mount"), ("umount", "mount"), ("losetup", "mount"),
        ("tgtd", "tgt"), ("tgtadm", "tgt"),
    ]
    static let dhcp: [Need] = [("ip", "iproute2"), ("kea-dhcp4", "kea-dhcp4-server"), ("busybox", "busybox")]
    static let ssh: [Need] = [("sshd", "openssh-server"), ("ssh", "openssh-client"), ("ssh-keygen", "openssh-client"),
                              ("usermod", "passwd"), ("virt-ssh-helper", "libvirt-daemon")]

    /// nil, or one message naming everything missing and the packages to install.
    static func unmet(storage withStorage: Bool, dhcp withDHCP: Bool, ssh withSSH: Bool = false) -> String? {
        var problems: [String] = []
        if geteuid() != 0 { problems.append("root (running as uid \(geteuid()))") }
        var needs = hosts
        if withStorage { needs += storage }
        if withDHCP { needs += dhcp }
        if withSSH { needs += ssh }
        var packages: [String] = []
        for need in needs where find(need.program) == nil {
            problems.append("\(need.program) (Debian package \(need.package))")
            if !packages.contains(need.package) { packages.append(need.package) }
        }
        if !FileManager.default.fileExists(atPath: "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so"),
            !FileManager.default.fileExists(atPath: "/usr/lib64/libvirt/connection-driver/libvirt_driver_qemu.so")
        {
            problems.append("libvirt's QEMU driver (Debian package libvirt-daemon-driver-qemu)")
            packages.append("libvirt-daemon-driver-qemu")
        }
        guard !problems.isEmpty else { return nil }
        var message = "the lab needs " + problems.joined(separator: ", ")
        if !packages.isEmpty {
            message += "\ninstall them with: apt-get install --no-install-recommends \(packages.joined(separator: " ")) (or run scripts/setup)"
        }
        return message
    }

    /// The first executable `name` in the system directories (the lab's daemons are looked up there too).
    static func find(_ name: String) -> String? {
        for directory in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"] {
            let path = "\(directory)/\(name)"
            if access(path, X_OK) == 0 { return path }
        }
        return nil
    }
}

/// One line per part of the lab: `up  pool: …`.
struct LabReport {
    let output: Output
    private(set) var failures = 0

    init(output: Output = .current) { self.output = output }

    enum State { case up, down, unknown, failed, skipped }

    mutating func line(_ state: State, _ part: String, _ detail: String) {
        let word: String
        switch state {
        case .up: word = output.paint("up     ", .green)
        case .down: word = output.paint("down   ", .red)
        case .unknown: word = output.paint("unknown", .yellow)
        case .failed: word = output.paint("failed ", .red)
        case .skipped: word = output.paint("-      ", .dim)
        }
        let text = "\(word) \(part): \(detail)"
        if state == .failed {
            failures += 1
            output.errorLine(text)
        } else {
            output.line(text)
        }
    }

    /// Runs `body` for `part`: `done` as the line when it succeeds, its error when it fails.
    mutating func attempt(_ part: String, _ state: State, _ done: String, _ body: () async throws -> Void) async {
        do {
            try await body()
            line(state, part, done)
        } catch {
            line(.failed, part, "\(error)")
        }
    }
}
