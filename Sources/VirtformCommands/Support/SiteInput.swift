import ArgumentParser
import Foundation
import Libvirt
import VirtformHypervisor
import VirtformManifests
import VirtformExecution
import VirtformState
import VirtformModel
import VirtformPlanning

/// The manifest paths every site command takes.
struct SiteOptions: ParsableArguments {
    @Argument(help: "Manifest files or directories (one site). Default: manifests")
    var paths: [String] = []

    /// The paths to load: the given ones, or `manifests`.
    var effectivePaths: [String] { paths.isEmpty ? ["manifests"] : paths }

    /// Loads and validates the site; on errors prints them and exits 1, as `validate` would.
    /// With `json`, the errors are also written to standard output as a plan with an `errors`
    /// section, so a CI step reading the JSON always finds a document.
    func load(json: Bool = false) throws -> Site {
        try loadResult(json: json).site
    }

    /// The same, with the files read and their digests. The parsed documents are let go once
    /// the site is valid: a plan names files, not fields, and for a large site they are most of
    /// its memory.
    func loadResult(json: Bool = false) throws -> LoadResult {
        var result = ManifestLoader.load(paths: effectivePaths)
        if !result.isValid {
            let output = Output.current
            output.writeError(DiagnosticReport.text(result, output: output))
            if json {
                var plan = Plan()
                plan.errors = result.diagnostics.filter { $0.severity == .error }.map { diagnostic in
                    let location = diagnostic.location
                    return Plan.Problem(resource: "\(location.file):\(location.line):\(location.column)",
                                        message: [diagnostic.object, diagnostic.field.isEmpty ? nil : diagnostic.field, diagnostic.message]
                                            .compactMap { $0 }.joined(separator: ": "))
                }
                plan.summarize()
                output.write(PlanRenderer.json(plan))
            }
            throw ExitCode(1)
        }
        result.site.dropSourceMaps()
        return result
    }
}

/// How long reading the systems may take: shared by `plan`, `drift` and `apply`.
struct ReadOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Seconds each system has to answer when it is connected to.",
                               discussion: "A system's whole reading — every domain of a host, a pool with its targets and what its portal serves, a DHCP server's endpoints — may take three times as long; one that does not answer in time is unreachable, never empty."))
    var readTimeout: Double = 10

    func validate() throws {
        if !(readTimeout > 0) { throw ValidationError("--read-timeout must be a number of seconds above 0, not \(readTimeout)") }
    }

    var timeout: Duration { .milliseconds(Int(readTimeout * 1000)) }
}

/// How a plan is carried out: shared by `apply` and `reconcile`.
struct ExecutionOptions: ParsableArguments {
    @Option(help: "Most actions in flight at once.")
    var parallelism = 16

    @Option(help: "Most actions in flight on one host or storage pool.")
    var perHost = 4

    @Option(help: "Seconds a guest has to shut down before it is forced off.")
    var shutdownTimeout: Double = 60

    @Option(help: ArgumentHelp(
        "Seconds each action may take, for every kind of system.",
        discussion: "Without it: 120 on a hypervisor (plus the shutdown timeout for a stop or restart), 1800 on a storage pool (copies of large images), 60 on an iSCSI target server, 120 on a DHCP server. An action past its deadline fails and its dependents are skipped; the system it ran on is then taken as not answering, so its remaining actions fail at once instead of each waiting out a deadline of its own."))
    var operationTimeout: Double?

    func validate() throws {
        if let operationTimeout, !(operationTimeout > 0) {
            throw ValidationError("--operation-timeout must be a number of seconds above 0, not \(operationTimeout)")
        }
        if !(shutdownTimeout >= 0) { throw ValidationError("--shutdown-timeout must be 0 or more seconds, not \(shutdownTimeout)") }
    }

    func settings(runID: String?) -> PlanExecution.Settings {
        PlanExecution.Settings(parallelism: parallelism, perHost: perHost, shutdownTimeout: shutdownTimeout, operationTimeout: operationTimeout,
                               runID: runID)
    }
}

/// What a plan may do beyond creating and updating: shared by `plan` and `apply`.
struct AllowanceOptions: ParsableArguments {
    @Flag(help: "Carry out deletions of managed objects that left the manifests (otherwise they are shown, not applied).")
    var allowDestroy = false

    @Flag(help: "Clone a missing LUN of a defined VM again from its master snapshot (what the VM wrote is gone).")
    var recreateLostDisks = false

    @Flag(help: "Restart running guests whose changes cannot be made live (otherwise shown as restart pending).")
    var allowRestart = false

    @Option(help: ArgumentHelp("Say that a host that cannot be read is down for certain (powered off, disconnected): its guests with ha: restart are started on other hosts of their cluster without fencing it. Repeatable.",
                               valueName: "host"))
    var confirmHostDown: [String] = []

    @Flag(help: "Carry out the rebalancing migrations of clusters whose rebalance mode is manual (otherwise they are shown, not applied).")
    var allowRebalance = false

    var allowances: Plan.Allowances {
        Plan.Allowances(destroy: allowDestroy, recreateLostDisks: recreateLostDisks, restart: allowRestart, confirmedDown: confirmHostDown,
                        rebalance: allowRebalance)
    }
}

extension Planner.Options {
    init(_ allowed: Plan.Allowances, showUnmanaged: Bool = false) {
        self.init(allowDestroy: allowed.destroy, showUnmanaged: showUnmanaged, recreateLostDisks: allowed.recreateLostDisks,
                  allowRestart: allowed.restart, confirmedDown: Set(allowed.confirmedDown), allowRebalance: allowed.rebalance)
    }
}

/// Observation and planning, shared by `plan`, `drift` and `apply`: every system is read at
/// the same time, then the site planner makes one plan of it.
struct Reconciliation {
    var site: Site
    var plan: Plan
    /// The systems as connected, for apply.
    var systems: ConnectedSystems

    /// `connected`: keep the systems' sessions open for apply, which closes them when done;
    /// plan and drift need only the plan, and the sessions are closed at once.
    /// `state`: the site's backend, for plan and drift to say when an apply is running (never locked).
    static func make(site: Site, options: Planner.Options, timeout: Duration = .seconds(10), connected: Bool = false,
                     state: (any StateBackend)? = nil) async -> Reconciliation {
        LibvirtRuntime.enableEventLoopIfAnyRemote(site.hosts.map(\.uri))
        let reading = await SiteReader.read(site: site, timeout: timeout)
        var options = options
        if options.now == 0 { options.now = Int(Date().timeIntervalSince1970) }
        var plan = Planner(site: site, observation: reading.observation, options: options).plan()
        plan.warnings += StandIns.warnings(site)
        if !connected, let state, case .held(let holder) = try? await state.status() {
            // Read while an apply runs: what it has not finished yet shows as changes.
            let who = holder.map { "run \($0.run) by \($0.user)@\($0.machine) since \(ISO8601DateFormatter().string(from: $0.since))" } ?? "a run just starting"
            plan.warnings.append("an apply of this site is running (\(who)): what it is still making or removing shows below as changes, not as anybody else's")
        }
        if !connected { await reading.systems.closeAll() }
        return Reconciliation(site: site, plan: plan, systems: connected ? reading.systems : ConnectedSystems())
    }
}
