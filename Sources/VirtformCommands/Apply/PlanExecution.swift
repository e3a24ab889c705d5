import VirtformExecution
import VirtformHypervisor
import VirtformModel
import VirtformPlanning
import VirtformDHCP
import VirtformStorage

/// Carries a plan out: builds the action graph from the plan's own changes and dependencies
/// (nothing is derived again from the manifests) and runs each change's operation on its
/// system. One DHCP server's reservation edits form one node: one write per endpoint.
enum PlanExecution {
    struct Settings: Sendable {
        var parallelism: Int
        var perHost: Int
        var shutdownTimeout: Double
    }

    /// The graph node that carries out change `id`.
    static func nodeID(for change: Change) -> String {
        change.system.kind == .dhcpServer ? "write \(change.system)" : change.id
    }

    /// The resource keys an operation counts against, and the limits of the keys whose limit
    /// is not `perHost`: an export server changes one target at a time (target ids come from
    /// a listing, so two exports at once could pick the same one).
    static func keys(for change: Change) -> [String] {
        switch change.operation {
        case .migrateDomain(_, let destination): [change.system.description, destination, "migrations"]
        default: [change.system.description]
        }
    }

    static func build(_ runnable: [Change], systems: ConnectedSystems, settings: Settings) throws -> (ActionGraph<String>, [String: Int]) {
        var nodeOf: [String: String] = [:]
        for change in runnable { nodeOf[change.id] = nodeID(for: change) }
        var builder = ActionGraph<String>.Builder()
        var keyLimits: [String: Int] = [:]

        // DHCP: one node per server, waiting for everything any of its edits waits for.
        var batches: [SystemAddress: [Change]] = [:]
        for change in runnable where change.system.kind == .dhcpServer { batches[change.system, default: []].append(change) }

        for change in runnable {
            if change.system.kind == .exportServer { keyLimits[change.system.description] = 1 }
            if change.system.kind == .dhcpServer {
                guard let batch = batches.removeValue(forKey: change.system) else { continue }
                let id = nodeID(for: change)
                let dependencies = try Set(batch.flatMap(\.dependsOn)).sorted().map { try node($0, of: nodeOf, for: change) }.filter { $0 != id }
                let edits = batch.compactMap { change -> ReservationChange? in
                    if case .reservation(let edit) = change.operation { return edit }
                    return nil
                }
                let server = change.system.name
                let system = change.system.description
                builder.add(id, keys: keys(for: change),
                            label: "write \(edits.count) reservation change\(edits.count == 1 ? "" : "s") to \(change.system)",
                            dependsOn: dependencies) {
                    do {
                        try await systems.writeReservations(edits, server: server)
                    } catch {
                        throw SystemFailure.from(error, system: system)
                    }
                }
                continue
            }
            let dependencies = try change.dependsOn.map { try node($0, of: nodeOf, for: change) }
            builder.add(change.id, keys: keys(for: change), label: "\(change.id) on \(change.system)", dependsOn: dependencies) {
                do {
                    try await systems.run(change, shutdownTimeout: settings.shutdownTimeout)
                } catch {
                    throw SystemFailure.from(error, system: change.system.description)
                }
            }
        }
        return (try builder.build(), keyLimits)
    }

    private static func node(_ dependency: String, of nodes: [String: String], for change: Change) throws -> String {
        guard let node = nodes[dependency] else {
            throw CommandFailure("the plan is inconsistent: \(change.id) waits for \(dependency), which is not to be applied")
        }
        return node
    }

    /// Runs `runnable`, the plan's changes that are not blocked.
    static func run(_ runnable: [Change], systems: ConnectedSystems, settings: Settings, output: Output) async throws -> Executor.Summary<String> {
        let (graph, keyLimits) = try build(runnable, systems: systems, settings: settings)
        let limits = Executor.Limits(global: settings.parallelism, perKey: settings.perHost, keyLimits: keyLimits)
        return await Executor.run(graph, limits: limits) { event in
            switch event {
            case .started(_, let label): output.line("  … \(label)")
            case .succeeded(let id, let duration): output.line("  \(output.paint("✓", .green)) \(id) (\(milliseconds(duration)))")
            case .failed(let id, let error): output.line("  \(output.paint("✗", .red)) \(id): \(error)")
            case .skipped(let id, let cause): output.line("  \(output.paint("-", .yellow)) \(id) skipped: \(cause) failed")
            }
        }
    }

    /// `12ms`, `1.5s`: cheap enough to print for each of ten thousand actions.
    static func milliseconds(_ duration: Duration) -> String {
        let ms = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        return ms < 1000 ? "\(ms)ms" : "\(ms / 1000).\(ms % 1000 / 100)s"
    }
}

extension ConnectedSystems {
    /// Runs one change's operation on its system.
    func run(_ change: Change, shutdownTimeout: Double) async throws {
        let system = change.system
        switch change.operation {
        case .defineDomain(let spec, let ownership, let replacing, let live):
            let host = try host(system)
            try await host.define(spec, ownership: ownership, replacing: replacing)
            if let memory = live?.memoryKiB { try await host.setLiveMemory(spec.name, kib: memory) }
        case .startDomain(let name):
            try await host(system).start(name)
        case .stopDomain(let name):
            try await host(system).stop(name, timeout: .milliseconds(Int(shutdownTimeout * 1000)))
        case .restartDomain(let name):
            let host = try host(system)
            try await host.stop(name, timeout: .milliseconds(Int(shutdownTimeout * 1000)))
            try await host.start(name)
        case .deleteDomain(let name):
            try await host(system).delete(name)
        case .migrateDomain:
            throw HypervisorError("migration is not carried out yet (the cluster feature)")
        case .createProject(let name):
            try await pool(system).createProject(name)
        case .deleteProject(let name):
            try await pool(system).deleteProject(name)
        case .createImage(let project, let name, let size, let source):
            if let source {
                try await pool(system).importImage(project: project, name: name, source: source, size: size)
            } else {
                try await pool(system).createImage(project: project, name: name, size: size ?? 0)
            }
        case .createSnapshot(let reference):
            try await pool(system).createSnapshot(reference)
        case .deleteSnapshot(let reference):
            try await pool(system).deleteSnapshot(reference)
        case .cloneVolume(let source, let project, let name, let size):
            try await pool(system).clone(from: source, project: project, name: name, size: size)
        case .growVolume(let project, let name, let size):
            try await pool(system).grow(project: project, name: name, to: size)
        case .deleteVolume(let project, let name):
            try await pool(system).deleteVolume(project: project, name: name)
        case .exportVolume(let request):
            try await exporter(system).export([request])
        case .reexportVolume(let iqn, let request):
            let exporter = try exporter(system)
            try await exporter.unexport(iqn: iqn, force: false)
            try await exporter.export([request])
        case .unexportVolume(let iqn):
            try await exporter(system).unexport(iqn: iqn, force: false)
        case .reservation(let edit):
            try await writeReservations([edit], server: system.name)
        case .manual:
            throw CommandFailure("\(change.id) cannot be carried out by virtform: \(change.blocked ?? change.reason)")
        }
    }

    /// One server's reservation edits, in one write per endpoint, against the state read for
    /// this run (a server edited since is re-checked by the driver).
    func writeReservations(_ edits: [ReservationChange], server: String) async throws {
        guard let (driver, token) = dhcpServers[server] else { throw CommandFailure("DHCPServer/\(server) is not connected") }
        _ = try await driver.apply(edits, basedOn: token)
    }

    private func host(_ system: SystemAddress) throws -> LibvirtHost {
        guard system.kind == .host, let host = hosts[system.name] else { throw HypervisorError("host \(system.name) is not connected") }
        return host
    }

    private func pool(_ system: SystemAddress) throws -> any StorageDriver {
        guard system.kind == .storagePool, let pool = pools[system.name] else { throw CommandFailure("\(system) is not connected") }
        return pool
    }

    private func exporter(_ system: SystemAddress) throws -> any ExportDriver {
        guard system.kind == .exportServer, let exporter = exporters[system.name] else { throw CommandFailure("\(system) is not connected") }
        return exporter
    }
}
