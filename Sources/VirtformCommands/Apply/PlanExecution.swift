import Foundation
import Synchronization
import VirtformExecution
import VirtformHypervisor
import VirtformModel
import VirtformPlanning
import VirtformSystem

/// Carries a plan out: builds the action graph from the plan's own changes and dependencies
/// (nothing is derived again from the manifests) and runs each change's operation on its
/// system. One DHCP server's reservation edits form one node: one write per endpoint.
enum PlanExecution {
    struct Settings: Sendable {
        var parallelism: Int
        var perHost: Int
        var shutdownTimeout: Double
        /// Seconds for every action, overriding `deadline(for:)`'s defaults.
        var operationTimeout: Double?
        /// The run, stamped into the marks of what it changes.
        var runID: String?

        /// How long `change` may take on its system.
        func deadline(for change: Change) -> Duration {
            if let operationTimeout { return .milliseconds(Int(operationTimeout * 1000)) }
            switch change.system.kind {
            case .host:
                // A live migration bounds itself (and aborts its job); the deadline only catches a hung abort.
                if case .migrateDomain(_, let request) = change.operation, request.live {
                    return .seconds(request.completionSeconds + 60)
                }
                let stops: Bool = switch change.operation {
                case .stopDomain, .restartDomain: true
                default: false
                }
                return .seconds(120) + (stops ? .milliseconds(Int(shutdownTimeout * 1000)) : .zero)
            case .storagePool: return .seconds(1800)
            case .exportServer: return .seconds(60)
            case .dhcpServer: return .seconds(120)
            }
        }
    }

    /// Systems that let an action run past its deadline in this run: their other actions fail
    /// at once (a frozen daemon costs one deadline, not one per action).
    final class Unanswering: Sendable {
        private let systems = Mutex<[SystemAddress: String]>([:])
        func mark(_ system: SystemAddress, _ why: String) { systems.withLock { $0[system] = $0[system] ?? why } }
        func reason(_ system: SystemAddress) -> String? { systems.withLock { $0[system] } }
    }

    /// Whether a system takes all of a run's changes in one write: DHCP servers (one write per
    /// endpoint).
    static func writesInOneGo(_ kind: SystemAddress.Kind) -> Bool { kind == .dhcpServer }

    /// The graph node that carries out change `id`.
    static func nodeID(for change: Change) -> String {
        writesInOneGo(change.system.kind) ? "write \(change.system)" : change.id
    }

    /// The resource keys an operation counts against, and the limits of the keys whose limit
    /// is not `perHost`: an export server changes one target at a time (target ids come from
    /// a listing, so two exports at once could pick the same one).
    static func keys(for change: Change) -> [String] {
        switch change.operation {
        case .migrateDomain(_, let request) where request.live:
            [change.system.description, request.destination] + migrationKeys(change.system.description, request).map(\.key)
        case .migrateDomain(_, let request): [change.system.description, request.destination]
        default: [change.system.description]
        }
    }

    /// A live migration's own limits: outbound migrations of its source host, and of its cluster.
    static func migrationKeys(_ source: String, _ request: MigrationRequest) -> [(key: String, limit: Int)] {
        [("migrations from \(source)", request.maxPerHost), ("migrations in \(request.limitGroup)", request.maxInGroup)]
    }

    /// One node of the action graph: the change (or, for a system that writes in one go, every
    /// change to it) it carries out, and the nodes it waits for.
    struct Node {
        var id: String
        var label: String
        /// The change whose system, keys and deadline the node has (the first of a batch).
        var change: Change
        var batch: [Change]
        var dependsOn: [String]
    }

    /// The graph's nodes in plan order, as the executor will follow them (`virtform graph`
    /// draws the same). A system that writes many changes at once (DHCP) gets one node for all
    /// of them, waiting for everything any of them waits for.
    static func nodes(_ runnable: [Change]) throws -> [Node] {
        var nodeOf: [String: String] = [:]
        for change in runnable { nodeOf[change.id] = nodeID(for: change) }
        var batches: [SystemAddress: [Change]] = [:]
        for change in runnable where writesInOneGo(change.system.kind) { batches[change.system, default: []].append(change) }
        var nodes: [Node] = []
        for change in runnable {
            let address = change.system
            var batch = [change]
            var label = "\(change.id) on \(address)"
            var dependencies = change.dependsOn
            if writesInOneGo(address.kind) {
                guard let all = batches.removeValue(forKey: address) else { continue }
                batch = all
                label = "write \(all.count) reservation change\(all.count == 1 ? "" : "s") to \(address)"
                dependencies = Set(all.flatMap(\.dependsOn)).sorted()
            }
            let id = nodeID(for: change)
            nodes.append(Node(id: id, label: label, change: change, batch: batch,
                              dependsOn: try dependencies.map { try node($0, of: nodeOf, for: change) }.filter { $0 != id }))
        }
        return nodes
    }

    /// The failures of one run by node, whole (the executor keeps only their text): the
    /// reconcile loop backs off from the ones retrying can help and parks the rest.
    final class Failures: Sendable {
        private let failures = Mutex<[String: SystemFailure]>([:])
        func record(_ node: String, _ failure: SystemFailure) { failures.withLock { $0[node] = failure } }
        subscript(node: String) -> SystemFailure? { failures.withLock { $0[node] } }
    }

    static func build(_ runnable: [Change], systems: ConnectedSystems, settings: Settings,
                      failures: Failures? = nil) throws -> (ActionGraph<String>, [String: Int]) {
        var builder = ActionGraph<String>.Builder()
        var keyLimits: [String: Int] = [:]
        let unanswering = Unanswering()
        let deadlines = DeadlineWatch()
        for node in try nodes(runnable) {
            let (change, batch, id) = (node.change, node.batch, node.id)
            if change.system.kind == .exportServer { keyLimits[change.system.description] = 1 }
            if case .migrateDomain(_, let request) = change.operation, request.live {
                for (key, limit) in migrationKeys(change.system.description, request) { keyLimits[key] = limit }
            }
            let address = change.system
            let session = systems[address]
            builder.add(id, keys: keys(for: change), label: node.label, dependsOn: node.dependsOn) {
                if case .fenceHost(let command, let uri) = change.operation {
                    // The host could not be read, so it has no session: fencing runs here.
                    do {
                        try await fence(address.name, command: command, uri: uri)
                    } catch let failure as SystemFailure {
                        failures?.record(id, failure)
                        throw failure
                    }
                    return
                }
                do {
                    guard let session else { throw CommandFailure("\(address) is not connected") }
                    if let why = unanswering.reason(address) {
                        throw SystemFailure(.unreachable, system: address.description,
                                            message: "not tried: \(address) did not answer an earlier action (\(why))", retryable: true)
                    }
                    let deadline = settings.deadline(for: change)
                    try await deadlines.run(deadline, "\(id) on \(address)") {
                        // The marks of what the action makes name the run.
                        try await OwnershipMark.$writingRun.withValue(settings.runID) {
                            try await session.execute(batch, on: address, settings: settings)
                        }
                    }
                } catch let error as SystemError where error.timedOut {
                    unanswering.mark(address, error.message)
                    let failure = SystemFailure(.timeout, system: address.description, message: error.message, retryable: true)
                    failures?.record(id, failure)
                    throw failure
                } catch {
                    let failure = SystemFailure.from(error, system: address.description)
                    failures?.record(id, failure)
                    throw failure
                }
            }
        }
        return (try builder.build(), keyLimits)
    }

    /// Powers host `name` off with its fencing command, after checking once more that it does
    /// not answer (a host back from a blip is not fenced). Succeeds only on exit status 0.
    static func fence(_ name: String, command: [String], uri: String) async throws {
        if let host = try? await LibvirtHost.connect(name: name, uri: uri, timeout: .seconds(5)) {
            await host.close()
            throw SystemFailure(.refused, system: "host \(name)", message: "not fenced: host \(name) answers again", retryable: false)
        }
        guard let program = command.first.flatMap({ $0.hasPrefix("/") ? $0 : Executables.find($0) }) else {
            throw SystemFailure(.failed, system: "host \(name)", message: "fencing command \(command.first ?? "") not found", retryable: false)
        }
        let result: CommandResult
        do {
            result = try await Command.run([program] + command.dropFirst(), timeout: .seconds(120))
        } catch {
            throw SystemFailure(.failed, system: "host \(name)", message: "fencing failed: \(error)", retryable: false)
        }
        guard result.status == 0 else {
            let said = (result.standardError + result.standardOutput).trimmingCharacters(in: .whitespacesAndNewlines)
            throw SystemFailure(.failed, system: "host \(name)",
                                message: "fencing command exited \(result.status)\(said.isEmpty ? "" : ": \(said)"); its guests are not started elsewhere",
                                retryable: false)
        }
    }

    private static func node(_ dependency: String, of nodes: [String: String], for change: Change) throws -> String {
        guard let node = nodes[dependency] else {
            throw CommandFailure("the plan is inconsistent: \(change.id) waits for \(dependency), which is not to be applied")
        }
        return node
    }

    /// Runs `runnable`, the plan's changes that are not blocked.
    /// `drain`: set, nothing new starts and running actions finish (a graceful shutdown);
    /// `failures` receives each failure whole.
    static func run(_ runnable: [Change], systems: ConnectedSystems, settings: Settings, output: Output,
                    drain: Executor.Drain? = nil, failures: Failures? = nil,
                    observe: (@Sendable (Executor.Event<String>) -> Void)? = nil) async throws -> Executor.Summary<String> {
        let (graph, keyLimits) = try build(runnable, systems: systems, settings: settings, failures: failures)
        let limits = Executor.Limits(global: settings.parallelism, perKey: settings.perHost, keyLimits: keyLimits)
        return await Executor.run(graph, limits: limits, drain: drain) { event in
            observe?(event)
            switch event {
            case .started(_, let label): output.line("  … \(label)")
            case .succeeded(let id, let duration): output.line("  \(output.paint("✓", .green)) \(id) (\(milliseconds(duration)))")
            case .failed(let id, let error): output.line("  \(output.paint("✗", .red)) \(id): \(Redaction.escapingControls("\(error)"))")
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
