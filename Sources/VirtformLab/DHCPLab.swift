import Foundation
import VirtformSystem

#if canImport(Glibc)
    import Glibc
#endif

/// One subnet the lab's DHCP server serves, on a bridge of its own inside the server namespace.
public struct DHCPLabSubnet: Sendable, Hashable {
    /// `public`, `backend`.
    public var name: String
    /// The network address, e.g. `192.168.76.0`.
    public var network: String
    /// Handed to clients as their router (option 3), when set.
    public var gateway: String?
    /// 8...24; the pool and the server's address are taken from the first /24 either way.
    public var prefixLength: Int

    public init(name: String, network: String, gateway: String? = nil, prefixLength: Int = 24) {
        self.name = name
        self.network = network
        self.gateway = gateway
        self.prefixLength = prefixLength
    }

    /// `192.168.76.0/24`.
    public var cidr: String { "\(network)/\(prefixLength)" }
    var netmask: String {
        let mask = UInt32.max << (32 - UInt32(prefixLength))
        return [24, 16, 8, 0].map { String(mask >> $0 & 0xff) }.joined(separator: ".")
    }
    var base: String { String(network.split(separator: ".").prefix(3).joined(separator: ".")) }
    /// The server's own address on the subnet: `.2` (`.1` is left for the gateway).
    public var serverAddress: String { "\(base).2" }
    var poolStart: String { "\(base).200" }
    var poolEnd: String { "\(base).250" }
}

/// Which DHCP daemon the lab runs.
public enum DHCPLabServer: String, Sendable, Hashable, CaseIterable {
    /// kea-dhcp4 with a unix control socket and memfile leases.
    case kea
    /// dnsmasq (DHCP only, `--port=0`) reading a `--dhcp-hostsfile`.
    case dnsmasq

    var program: String { self == .kea ? "kea-dhcp4" : "dnsmasq" }
    var package: String { self == .kea ? "kea-dhcp4-server" : "dnsmasq-base" }
}

/// Where and how the lab's DHCP server runs.
public struct DHCPLabConfiguration: Sendable, Hashable {
    /// Parent directory; the server keeps its files in `root/kea` or `root/dnsmasq`.
    public var root: String
    public var server: DHCPLabServer
    /// The network namespace the server runs in (made and deleted by the lab).
    public var namespace: String
    /// Client namespaces are `"\(clientNamespacePrefix)\(n)"`.
    public var clientNamespacePrefix: String
    public var subnets: [DHCPLabSubnet]
    /// File name of Kea's control socket inside `root/kea`.
    public var socketName: String
    public var startTimeout: Duration
    public var stopTimeout: Duration

    public init(
        root: String = "/var/lib/virtform-lab", server: DHCPLabServer = .kea, namespace: String = "vflab-dhcp",
        clientNamespacePrefix: String? = nil,
        subnets: [DHCPLabSubnet] = [
            DHCPLabSubnet(name: "public", network: "192.168.76.0", gateway: "192.168.76.1"),
            DHCPLabSubnet(name: "backend", network: "192.168.78.0"),
        ],
        socketName: String = "kea-1.sock", startTimeout: Duration = .seconds(20), stopTimeout: Duration = .seconds(10)
    ) {
        self.root = root
        self.server = server
        self.namespace = namespace
        self.clientNamespacePrefix = clientNamespacePrefix ?? "\(namespace)-c"
        self.subnets = subnets
        self.socketName = socketName
        self.startTimeout = startTimeout
        self.stopTimeout = stopTimeout
    }

    /// `root/kea` or `root/dnsmasq`: everything the server writes.
    public var directory: String { "\(root)/\(server.rawValue)" }
    /// Kea's control socket: `/var/lib/virtform-lab/kea/kea-1.sock` by default, as the
    /// reference manifests say.
    public var controlSocket: String { "\(directory)/\(socketName)" }
    /// Kea's configuration file (`config-write` writes here).
    public var keaConfigFile: String { "\(directory)/kea-dhcp4.json" }
    /// dnsmasq's `--dhcp-hostsfile`.
    public var hostsFile: String { "\(directory)/dhcp-hosts" }
    /// The server's PID as the lab recorded it (dnsmasq writes it itself with `--pid-file`).
    public var pidFile: String { "\(directory)/\(server.program).pid" }
    var logFile: String { "\(directory)/\(server.program).log" }
    var leaseFile: String { "\(directory)/leases4.csv" }
    var clientScript: String { "\(directory)/udhcpc-script" }
    /// The bridge of subnet `i` inside the server namespace.
    func bridge(_ i: Int) -> String { "vfbr\(i)" }
}

/// What `DHCPLab.status()` found.
public enum DHCPLabState: Sendable, Hashable {
    /// The server runs (this PID) in the namespace and answers (Kea: its socket accepts).
    case up(pid: Int32)
    case down(reason: String)
    /// Could not tell (a PID file that does not parse, a server that runs but does not answer).
    case unknown(reason: String)
}

/// What a DHCP client obtained.
public struct DHCPLease: Sendable, Hashable {
    public var address: String
    /// Option 12 as the client received it, nil when the server sent none.
    public var hostname: String?
    /// Everything udhcpc printed, for failure messages.
    public var output: String
}

/// The lab's DHCP server: a network namespace of its own with one bridge per subnet, a real
/// kea-dhcp4 (or dnsmasq) in it, and throw-away client namespaces, each joined to a bridge by a
/// veth pair, in which `busybox udhcpc` asks for a lease. Every interface and address lives
/// inside namespaces the lab made; nothing touches the host's own network.
///
/// Needs root. `up()` keeps a server that is already up and keeps an existing Kea
/// configuration (so reservations written with `config-write` survive); `down()` is idempotent
/// and copes with a half-made lab.
public actor DHCPLab {
    public nonisolated let configuration: DHCPLabConfiguration
    private var clients = 0

    public init(configuration: DHCPLabConfiguration = DHCPLabConfiguration()) {
        self.configuration = configuration
    }

    /// Why this machine cannot run the DHCP lab with `server`, or nil if it can.
    public static func unmetRequirements(server: DHCPLabServer = .kea) -> String? {
        var missing: [String] = []
        if geteuid() != 0 { missing.append("root privileges (running as uid \(geteuid()))") }
        for (program, package) in [("ip", "iproute2"), ("busybox", "busybox-static"), (server.program, server.package)]
        where Executables.find(program) == nil {
            missing.append("\(program) (install \(package))")
        }
        return missing.isEmpty ? nil : "the DHCP lab needs " + missing.joined(separator: ", ")
    }

    // MARK: Up

    /// Makes the namespace and bridges and starts the server unless it is up; returns its PID.
    @discardableResult
    public func up() async throws -> Int32 {
        if let problem = Self.unmetRequirements(server: configuration.server) {
            throw LabError("failed to start the DHCP lab: \(problem)")
        }
        if case .up(let pid) = await status() { return pid }
        // Half-made or stopped: start over from the namespace up, keeping the server's files.
        try await stopServer()
        try await deleteNamespace(configuration.namespace)
        try prepareDirectory()
        try await makeNamespace()
        return try await startServer()
    }

    private func prepareDirectory() throws {
        let c = configuration
        guard c.root.hasPrefix("/") else { throw LabError("the DHCP lab root must be an absolute path, not '\(c.root)'") }
        guard c.controlSocket.utf8.count <= UnixSocket.maximumPathLength else {
            throw LabError("the DHCP lab root '\(c.root)' is too long: \(c.controlSocket) exceeds \(UnixSocket.maximumPathLength) bytes")
        }
        try FileManager.default.createDirectory(atPath: c.directory, withIntermediateDirectories: true)
        try FileSystem.writeFile(
            c.clientScript,
            """
            #!/bin/sh
            # udhcpc calls this with the event first; on bound/renew the lease is in the environment.
            case "$1" in
              bound|renew) echo "VFLEASE ip=$ip hostname=$hostname" ;;
            esac
            exit 0

            """, mode: 0o755, owner: nil)
    }

    private func makeNamespace() async throws {
        let ns = configuration.namespace
        try await ip(["netns", "add", ns])
        try await ip(["-n", ns, "link", "set", "lo", "up"])
        for (i, subnet) in configuration.subnets.enumerated() {
            let bridge = configuration.bridge(i)
            try await ip(["-n", ns, "link", "add", bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0"])
            try await ip(["-n", ns, "address", "add", "\(subnet.serverAddress)/\(subnet.prefixLength)", "dev", bridge])
            try await ip(["-n", ns, "link", "set", bridge, "up"])
            // A bridge without a running port has no carrier, and Kea gives up on an interface
            // that is "not running" when it (re)opens its sockets at config-set. A spare port
            // keeps the bridge up between clients (a veth pair: this kernel has no dummy devices).
            let anchor = "vfanchor\(i)"
            try await ip(["-n", ns, "link", "add", anchor, "type", "veth", "peer", "name", "\(anchor)p"])
            try await ip(["-n", ns, "link", "set", "\(anchor)p", "up"])
            try await ip(["-n", ns, "link", "set", anchor, "master", bridge, "up"])
        }
    }

    private func startServer() async throws -> Int32 {
        let c = configuration
        let pid: Int32
        switch c.server {
        case .kea:
            if !FileSystem.exists(c.keaConfigFile) {
                try FileSystem.writeFile(c.keaConfigFile, keaConfiguration(), mode: 0o644, owner: nil)
            }
            // kea-dhcp4 stays in the foreground: a shell puts it in the background and records
            // its PID (`ip netns exec` execs the program, so `$!` is Kea itself).
            let command = [
                "KEA_PIDFILE_DIR=\(quote(c.directory))", "KEA_LOCKFILE_DIR=\(quote(c.directory))",
                quote(try program("ip")), "netns", "exec", quote(c.namespace), quote(try program("kea-dhcp4")),
                "-c", quote(c.keaConfigFile), ">>", quote(c.logFile), "2>&1", "&", "echo", "$!", ">", quote(c.pidFile),
            ].joined(separator: " ")
            unlink(c.pidFile)
            // Kea refuses to start while its own PID file names a live process; a Kea killed
            // earlier lingers as a zombie here (PID 1 does not reap), which kill(pid, 0) counts as
            // alive. Such a file is stale.
            let keaPidFile = "\(c.directory)/kea-dhcp4.kea-dhcp4.pid"
            if let stale = Self.readPid(keaPidFile), !Processes.isRunning(stale) { unlink(keaPidFile) }
            let status = try await DaemonLauncher.run(["/bin/sh", "-c", command], logFile: c.logFile, timeout: c.startTimeout)
            guard status == 0, let recorded = Self.readPid(c.pidFile) else {
                throw LabError("failed to start kea-dhcp4 in \(c.namespace) (exit \(status))\(logTail())")
            }
            pid = recorded
            guard await poll(within: c.startTimeout, { UnixSocket.probe(c.controlSocket) == nil || !Processes.isRunning(pid) }),
                Processes.isRunning(pid)
            else {
                let exited = !Processes.isRunning(pid)
                await Processes.terminate([pid], grace: c.stopTimeout)
                let what = exited ? "it exited" : "its control socket \(c.controlSocket) did not answer within \(c.startTimeout)"
                throw LabError("failed to start kea-dhcp4 (pid \(pid)) in \(c.namespace): \(what)\(logTail())")
            }
        case .dnsmasq:
            if !FileSystem.exists(c.hostsFile) { try FileSystem.writeFile(c.hostsFile, "", mode: 0o644, owner: nil) }
            unlink(c.pidFile)
            var arguments = [
                try program("ip"), "netns", "exec", c.namespace, try program("dnsmasq"), "--conf-file=/dev/null", "--port=0",
                "--pid-file=\(c.pidFile)", "--dhcp-hostsfile=\(c.hostsFile)", "--dhcp-leasefile=\(c.leaseFile)",
                "--log-facility=\(c.logFile)", "--log-dhcp", "--user=root", "--group=root", "--bind-interfaces",
                "--dhcp-authoritative",
            ]
            for (i, subnet) in c.subnets.enumerated() {
                arguments.append("--interface=\(c.bridge(i))")
                arguments.append("--dhcp-range=\(subnet.poolStart),\(subnet.poolEnd),\(subnet.netmask),10m")
            }
            // dnsmasq forks into the background once it is ready; the first process exits.
            let status = try await DaemonLauncher.run(arguments, logFile: c.logFile, timeout: c.startTimeout)
            guard status == 0 else { throw LabError("failed to start dnsmasq in \(c.namespace) (exit \(status))\(logTail())") }
            guard await poll(within: c.startTimeout, { Self.readPid(c.pidFile).map(Processes.isRunning) == true }),
                let recorded = Self.readPid(c.pidFile)
            else { throw LabError("failed to start dnsmasq in \(c.namespace): no live PID in \(c.pidFile)\(logTail())") }
            pid = recorded
        }
        return pid
    }

    private func keaConfiguration() -> String {
        let c = configuration
        let interfaces = c.subnets.indices.map { "\"\(c.bridge($0))\"" }.joined(separator: ", ")
        let subnets = c.subnets.enumerated().map { i, s in
            let routers = s.gateway.map { ", \"option-data\": [{\"name\": \"routers\", \"data\": \"\($0)\"}]" } ?? ""
            return "    {\"id\": \(i + 1), \"subnet\": \"\(s.cidr)\", \"pools\": [{\"pool\": \"\(s.poolStart) - \(s.poolEnd)\"}], \"reservations\": []\(routers)}"
        }.joined(separator: ",\n")
        return """
            {"Dhcp4": {
              "interfaces-config": {"interfaces": [\(interfaces)]},
              "control-socket": {"socket-type": "unix", "socket-name": "\(c.controlSocket)"},
              "lease-database": {"type": "memfile", "persist": true, "name": "\(c.leaseFile)", "lfc-interval": 0},
              "valid-lifetime": 600,
              "subnet4": [
            \(subnets)
              ],
              "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "\(c.logFile)"}], "severity": "INFO"}]
            }}

            """
    }

    // MARK: Status

    /// Whether the server runs in its namespace and answers.
    public func status() async -> DHCPLabState {
        let c = configuration
        guard FileSystem.exists("/run/netns/\(c.namespace)") else { return .down(reason: "namespace \(c.namespace) does not exist") }
        guard FileSystem.exists(c.pidFile) else { return .down(reason: "not started") }
        guard let pid = Self.readPid(c.pidFile) else { return .unknown(reason: "cannot read \(c.pidFile)") }
        guard Processes.isRunning(pid) else { return .down(reason: "\(c.server.program) (pid \(pid)) is not running") }
        guard isServer(pid) else { return .unknown(reason: "pid \(pid) in \(c.pidFile) is not \(c.server.program)") }
        if c.server == .kea, let reason = UnixSocket.probe(c.controlSocket) {
            return .unknown(reason: "kea-dhcp4 (pid \(pid)) runs but \(c.controlSocket) does not answer: \(reason)")
        }
        return .up(pid: pid)
    }

    // MARK: Stop, restart, down

    /// Stops the server by its recorded PID; files and namespace stay.
    public func stopServer() async throws {
        let c = configuration
        guard let pid = Self.readPid(c.pidFile) else { return }
        if Processes.isRunning(pid), isServer(pid) {
            let left = await Processes.terminate([pid], grace: c.stopTimeout)
            guard left.isEmpty else { throw LabError("failed to stop \(c.server.program) (pid \(pid))") }
        }
        unlink(c.pidFile)
        // Kea leaves its socket file behind when killed; a new Kea replaces it anyway.
    }

    /// Stops the server and starts it again from its files (Kea: the configuration
    /// `config-write` wrote). Returns the new PID.
    @discardableResult
    public func restartServer() async throws -> Int32 {
        try await stopServer()
        return try await startServer()
    }

    /// Stops the server, deletes every namespace the lab made and the server's directory.
    /// Idempotent; reports every problem at once.
    public func down() async throws {
        var problems: [String] = []
        do { try await stopServer() } catch { problems.append("\(error)") }
        for ns in await namespaces() where ns.hasPrefix(configuration.clientNamespacePrefix) || ns == configuration.namespace {
            do { try await deleteNamespace(ns) } catch { problems.append("\(error)") }
        }
        do { try FileSystem.remove(configuration.directory) } catch { problems.append("\(error)") }
        guard problems.isEmpty else { throw LabError("failed to tear down the DHCP lab: " + problems.joined(separator: "; ")) }
    }

    // MARK: Clients

    /// Runs a DHCP client in a new namespace joined to subnet `subnetIndex`'s bridge, its
    /// interface's MAC set to `mac`: `busybox udhcpc -i vfc0 -n -q -t 6` with a script that
    /// prints the lease's `$ip` and `$hostname`. The namespace is deleted afterwards, also on
    /// failure. Throws when no lease was obtained.
    public func requestLease(mac: String, subnet subnetIndex: Int = 0, timeout: Duration = .seconds(30)) async throws -> DHCPLease {
        let c = configuration
        guard c.subnets.indices.contains(subnetIndex) else { throw LabError("the DHCP lab has no subnet \(subnetIndex)") }
        clients += 1
        let ns = "\(c.clientNamespacePrefix)\(clients)"
        let peer = "vfp\(clients)"
        let outcome: Result<DHCPLease, any Error>
        do {
            try await deleteNamespace(ns)
            try await ip(["netns", "add", ns])
            try await ip(["link", "add", "vfc0", "netns", ns, "address", mac, "type", "veth", "peer", "name", peer, "netns", c.namespace])
            try await ip(["-n", c.namespace, "link", "set", peer, "master", c.bridge(subnetIndex), "up"])
            try await ip(["-n", ns, "link", "set", "vfc0", "up"])
            let arguments = [
                try program("ip"), "netns", "exec", ns, try program("busybox"), "udhcpc", "-f", "-i", "vfc0", "-n", "-q",
                "-t", "6", "-T", "2", "-O", "hostname", "-s", c.clientScript,
            ]
            let result = try await Command.run(arguments, timeout: timeout)
            let output = result.standardOutput + result.standardError
            guard let line = result.standardOutput.split(separator: "\n").last(where: { $0.hasPrefix("VFLEASE ") }) else {
                throw LabError("udhcpc with MAC \(mac) in \(ns) obtained no lease (exit \(result.status)): \(output.trimmingCharacters(in: .whitespacesAndNewlines))\(logTail())")
            }
            var fields: [String: String] = [:]
            for token in line.dropFirst("VFLEASE ".count).split(separator: " ") {
                if let eq = token.firstIndex(of: "=") { fields[String(token[..<eq])] = String(token[token.index(after: eq)...]) }
            }
            let hostname = fields["hostname"].flatMap { $0.isEmpty ? nil : $0 }
            outcome = .success(DHCPLease(address: fields["ip"] ?? "", hostname: hostname, output: output))
        } catch {
            outcome = .failure(error)
        }
        try? await deleteNamespace(ns)
        return try outcome.get()
    }

    // MARK: Helpers

    private func ip(_ arguments: [String]) async throws {
        let command = [try program("ip")] + arguments
        try await Command.run(command, timeout: .seconds(15)).checked(command)
    }

    private func namespaces() async -> [String] {
        // `ip netns list` prints "name (id: N)" per line; the files under /run/netns are the truth.
        (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []
    }

    private func deleteNamespace(_ ns: String) async throws {
        guard FileSystem.exists("/run/netns/\(ns)") else { return }
        try await ip(["netns", "delete", ns])
    }

    private func program(_ name: String) throws -> String {
        guard let path = Executables.find(name) else { throw LabError("\(name) is not installed") }
        return path
    }

    private func isServer(_ pid: Int32) -> Bool {
        Processes.entry(pid)?.command == configuration.server.program
    }

    private func quote(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    static func readPid(_ path: String) -> Int32? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    private func logTail() -> String {
        guard let text = try? String(contentsOfFile: configuration.logFile, encoding: .utf8) else { return "" }
        let tail = text.split(separator: "\n").suffix(5).joined(separator: "\n")
        return tail.isEmpty ? "" : "\nlast lines of \(configuration.logFile):\n\(tail)"
    }
}
