import Foundation
import Libvirt
import Synchronization
import VirtformHypervisor
import VirtformModel
import VirtformPlanning
import VirtformSystem

/// Hypervisors: one libvirt session per host, whatever its domain type (`Drivers` holds what
/// each type changes live; the planner reads it from there).
enum Hypervisors: SystemKind {
    static func drivers(for site: Site, context: ReadContext) -> [any SystemDriver] {
        let peers = Peers()
        // The CHAP secrets the hosts keep for the pools that ask for CHAP, by libvirt usage.
        var secrets: [String: SecretRef] = [:]
        for pool in site.pools { if let export = pool.export, let chap = export.chap { secrets[export.secretUsage] = chap.initiator.secret } }
        return site.hosts.map {
            HostDriver(name: $0.name, uri: $0.connectionURI, peers: peers, hostKeys: HostKeys(host: $0), secrets: secrets,
                       connections: context.hostConnections)
        }
    }

    /// The site's hosts that were read, by name: a migration's source reaches its destination here.
    final class Peers: Sendable {
        private let hosts = Mutex<[String: LibvirtHost]>([:])
        func add(_ host: LibvirtHost) { hosts.withLock { $0[host.name] = host } }
        func host(_ name: String) -> LibvirtHost? { hosts.withLock { $0[name] } }
    }

    struct HostDriver: SystemDriver {
        let name: String
        let uri: String
        let peers: Peers
        let hostKeys: HostKeys
        let secrets: [String: SecretRef]
        /// Kept connections (the reconcile loop); nil: one connection for this reading.
        var connections: Connections?
        var address: SystemAddress { .host(name) }

        func read(timeout: Duration) async throws -> SystemRead {
            let host: LibvirtHost
            if let kept = connections?.host(name, uri: uri) {
                host = kept
            } else {
                do {
                    host = try await LibvirtHost.connect(name: name, uri: uri, timeout: timeout)
                } catch {
                    throw hostKeys.explained(error) ?? error
                }
                connections?.add(host, uri: uri)
            }
            let domains: [ObservedDomain]
            do {
                if connections != nil {
                    // A kept connection whose daemon stopped answering is let go, not asked again.
                    domains = try await withDeadline(timeout * 2, "reading host \(name)") { try await host.observe() }
                } else {
                    domains = try await host.observe()
                }
            } catch {
                // A kept connection that fails is let go: the next reading connects anew.
                if let connections { await connections.drop(name) } else { await host.close() }
                throw error
            }
            // Secrets that cannot be listed leave the host readable: they are unknown (nil), and
            // the planner plans nothing for them.
            let secrets = self.secrets.isEmpty ? nil : try? await SecretDigest.observe(on: host.connection, wanted: self.secrets)
            let reading = SystemRead(reading: .host(domains, secrets: secrets), session: HostSession(address: address, host: host, peers: peers, kept: connections != nil))
            peers.add(host)
            return reading
        }
    }

    /// The hypervisors' connections a long-running process keeps between readings, one per
    /// host and URI. A connection that libvirt reports dead (keepalive, a closed socket) or whose
    /// reading failed is closed and made anew by the next reading. `onConnect` sees every new
    /// connection once (the reconcile loop subscribes to its domain events).
    final class Connections: Sendable {
        private let hosts = Mutex<[String: (uri: String, host: LibvirtHost)]>([:])
        private let onConnect: @Sendable (LibvirtHost) -> Void
        private let onDrop: @Sendable (String) -> Void

        /// `onDrop` hears of each host whose connection is let go.
        init(onConnect: @escaping @Sendable (LibvirtHost) -> Void = { _ in }, onDrop: @escaping @Sendable (String) -> Void = { _ in }) {
            self.onConnect = onConnect
            self.onDrop = onDrop
        }

        /// The kept, live connection to host `name` at `uri`, if any.
        func host(_ name: String, uri: String) -> LibvirtHost? {
            let kept = hosts.withLock { hosts -> LibvirtHost? in
                guard let entry = hosts[name] else { return nil }
                if entry.uri == uri && entry.host.connection.isAlive { return entry.host }
                hosts[name] = nil
                onDrop(name)
                // Closed below, off the lock; a dead connection's close costs nothing.
                Task { await entry.host.close() }
                return nil
            }
            return kept
        }

        func add(_ host: LibvirtHost, uri: String) {
            let replaced = hosts.withLock { hosts in
                defer { hosts[host.name] = (uri, host) }
                return hosts[host.name]?.host
            }
            if let replaced { Task { await replaced.close() } }
            onConnect(host)
        }

        func drop(_ name: String) async {
            guard let entry = hosts.withLock({ $0.removeValue(forKey: name) }) else { return }
            onDrop(name)
            await entry.host.close()
        }

        var count: Int { hosts.withLock { $0.count } }

        func closeAll() async {
            let all = hosts.withLock { hosts in
                defer { hosts = [:] }
                return hosts.values.map(\.host)
            }
            for host in all { await host.close() }
        }
    }

    /// Where a host's SSH host key is checked, to say so when libvirt's client refuses it.
    struct HostKeys: Sendable {
        let host: String
        /// `host:port` as the URI names it.
        let address: String
        let transport: String?
        let file: String

        init(host: VirtformModel.Host) {
            self.host = host.name
            transport = host.sshTransport
            let afterScheme = host.uri.split(separator: "://", maxSplits: 1).dropFirst().first ?? ""
            let authority = afterScheme.prefix { $0 != "/" && $0 != "?" }
            address = String(authority.split(separator: "@").last ?? authority)
            file = host.ssh?.knownHosts ?? "~/.ssh/known_hosts of the user virtform runs as"
        }

        /// The refusal of an unknown or changed host key as an error naming the host and the
        /// file; nil for any other error.
        func explained(_ error: any Error) -> HypervisorError? {
            guard transport != nil else { return nil }
            let text = "\(error)"
            if text.contains("HOST KEY VERIFICATION FAILED") || text.contains("differs from stored identity") || text.contains("is not the one we expected") {
                return HypervisorError("host \(host): the SSH host key of \(address) differs from the one in \(file) — the host was reinstalled, "
                                       + "or something is in the way; compare the key's fingerprint with the host's own, then replace its line in that file")
            }
            if text.contains("verify the session host key") || text.contains("was not accepted") {
                return HypervisorError("host \(host): the SSH host key of \(address) is unknown: it is not in \(file); compare its fingerprint with the "
                                       + "host's own, then add it (ssh-keyscan, with -p for a port other than 22); it is never accepted unseen")
            }
            if text.contains("Host key verification failed") {
                return HypervisorError("host \(host): the OpenSSH client refused the SSH host key of \(address), unknown or changed in \(file) "
                                       + "(qemu+ssh: OpenSSH's own known_hosts; qemu+libssh takes spec.ssh.knownHosts)")
            }
            return nil
        }
    }

    /// Domain operations through the host's libvirt session.
    struct HostSession: SystemSession {
        let address: SystemAddress
        let host: LibvirtHost
        let peers: Peers
        /// The connection is kept for later readings (`Connections`), not closed with the session.
        var kept = false
        var addresses: [SystemAddress] { [address] }

        func execute(_ changes: [Change], on address: SystemAddress, settings: PlanExecution.Settings) async throws {
            for change in changes { try await execute(change, settings: settings) }
        }

        func close() async {
            if kept { host.forgetDefined() } else { await host.close() }
        }

        /// QEMU's refused iSCSI login, said as what it is: the target and the host, and why.
        static func loginRefusal(_ error: any Error, domain: String, host: String) -> HypervisorError? {
            let text = "\(error)"
            guard text.contains("iSCSI") || text.contains("iscsi") else { return nil }
            let target = text.range(of: "iqn.").map { String(text[$0.lowerBound...].prefix { !" ,;'\"".contains($0) }) } ?? "its target"
            if text.contains("Authentication failure") {
                return HypervisorError("the disk of \(domain) could not log in to \(target) from host \(host): the target refused the CHAP secret "
                                       + "(the host's libvirt secret is not the one the target holds; plan again after a rotation) — \(text)")
            }
            if text.contains("Target not found") || text.contains("Authorization failure") {
                return HypervisorError("the disk of \(domain) could not log in to \(target) from host \(host): the target does not admit this host's "
                                       + "initiator name (the pool's initiators, the host's initiatorName) — \(text)")
            }
            return nil
        }

        private func execute(_ change: Change, settings: PlanExecution.Settings) async throws {
            let timeout = Duration.milliseconds(Int(settings.shutdownTimeout * 1000))
            switch change.operation {
            case .defineDomain(let spec, let ownership, let replacing, let live):
                try await host.define(spec, ownership: stamped(ownership, settings), replacing: replacing)
                if let live {
                    if let memory = live.memoryKiB { try await host.setLiveMemory(spec.name, kib: memory) }
                    if let vcpus = live.vcpus { try await host.setLiveVCPUs(spec.name, count: vcpus) }
                    if !live.attach.isEmpty || !live.detach.isEmpty {
                        try await host.hotplug(spec.name, attach: live.attach, detach: live.detach)
                    }
                }
            case .defineSecret(let usage, let username, let secret):
                let value = try Secrets.value(secret, for: "the CHAP secret of \(username)")
                let existing = try await host.connection.listAllSecrets().first { $0.usageID == usage }
                // First without the digest, then with it: a secret an apply was killed in the
                // middle of defining never reads as current (the next plan defines it again).
                try await host.connection.defineISCSISecret(usage: usage, description: SecretDigest.pending(username: username),
                                                            value: Data(value.utf8), uuid: existing?.uuid)
                let defined = try await host.connection.listAllSecrets().first { $0.usageID == usage }
                try await host.connection.defineISCSISecret(usage: usage, description: SecretDigest.describe(value, username: username),
                                                            value: Data(value.utf8), uuid: defined?.uuid)
            case .importDomain(let spec, let ownership):
                try await host.define(spec, ownership: stamped(ownership, settings), replacing: true, overUnmarked: true)
            case .startDomain(let name, let mark):
                do {
                    try await host.start(name)
                } catch {
                    throw Self.loginRefusal(error, domain: name, host: address.name) ?? error
                }
                if let mark { try await host.writeMark(name, stamped(mark, settings)) }
            case .stopDomain(let name, let mark):
                try await host.stop(name, timeout: timeout)
                if let mark { try await host.writeMark(name, stamped(mark, settings)) }
            case .restartDomain(let name):
                try await host.stop(name, timeout: timeout)
                try await host.start(name)
            case .deleteDomain(let name):
                try await host.delete(name)
            case .migrateDomain(let name, let request):
                guard let destination = peers.host(request.destination) else {
                    throw HypervisorError("host \(request.destination), where \(name) was to go, could not be read in this run")
                }
                if request.live {
                    let limits = LibvirtHost.MigrationLimits(uri: request.uri, completion: .seconds(request.completionSeconds),
                                                             noProgress: .seconds(request.noProgressSeconds), bandwidthMiBps: request.bandwidthMiBps)
                    let output = Output.current
                    let shown = Mutex(ContinuousClock.now - .seconds(10))
                    try await host.migrateLive(name, to: destination, uuid: request.uuid, spec: request.spec, ownership: stamped(request.ownership, settings),
                                               limits: limits) { progress in
                        // At most one line a second per migration.
                        guard shown.withLock({ last in
                            let now = ContinuousClock.now
                            guard now - last >= .seconds(1) else { return false }
                            last = now
                            return true
                        }) else { return }
                        output.line("    ⇄ \(change.resource) → \(request.destination): \(ByteSize(bytes: progress.dataRemaining)) of \(ByteSize(bytes: progress.dataTotal)) left")
                    }
                } else {
                    try await host.moveCold(name, to: destination, uuid: request.uuid, spec: request.spec, ownership: stamped(request.ownership, settings))
                }
            default:
                throw CommandFailure.notFor(change, address)
            }
        }

        /// The mark as this run writes it: naming the run.
        private func stamped(_ ownership: Ownership, _ settings: PlanExecution.Settings) -> Ownership {
            var ownership = ownership
            ownership.run = settings.runID
            return ownership
        }
    }
}
