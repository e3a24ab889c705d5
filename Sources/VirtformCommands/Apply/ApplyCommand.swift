import ArgumentParser
import Foundation
import VirtformExecution
import VirtformHypervisor
import VirtformModel
import VirtformPlanning

/// `virtform apply`: make the hypervisors match the manifests (or carry out a saved plan).
struct ApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Plan, confirm and carry out the changes (or apply a plan saved with `plan --out`).",
        discussion: """
            With a saved plan, apply first checks that every resource is still as the plan saw it and \
            refuses, naming the resources that moved on, if not. Only one apply runs per site at a time. \
            Exit status: 0 when everything was applied, 1 otherwise.
            """
    )

    @Argument(help: "Manifest files or directories, or one saved plan file. Default: manifests")
    var paths: [String] = []

    @Flag(help: "Apply without asking for confirmation (needed when not on a terminal).")
    var autoApprove = false

    @Flag(help: "Carry out deletions of managed VMs that left the manifests.")
    var allowDestroy = false

    @Option(help: "Seconds to wait for another apply of the same site to finish (default: fail at once).")
    var lockTimeout: Double = 0

    @Option(help: "Most actions in flight at once.")
    var parallelism = 16

    @Option(help: "Most actions in flight on one host.")
    var perHost = 4

    @Option(help: "Seconds a guest has to shut down before it is forced off.")
    var shutdownTimeout: Double = 60

    func run() async throws {
        let output = Output.current
        let savedPlan = try loadSavedPlan()
        let hosts: [(name: String, uri: String)]
        let site: Site?
        if let savedPlan {
            hosts = savedPlan.hosts.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            site = nil
        } else {
            let loaded = try SiteOptions.parse(paths).load()
            hosts = loaded.hosts.map { ($0.name, $0.uri) }
            site = loaded
        }

        // One apply per site: the lock is named after the site's hypervisors and held to the end.
        let lockPath = Self.lockPath(for: hosts.map(\.uri))
        let lock: RunLock
        do {
            lock = lockTimeout > 0
                ? try await RunLock.lock(at: lockPath, command: "virtform apply", timeout: .milliseconds(Int(lockTimeout * 1000)))
                : try RunLock.tryLock(at: lockPath, command: "virtform apply")
        } catch {
            throw ValidationError("another apply is running for this site: \(error)\nWait for it, or pass --lock-timeout SECONDS.")
        }
        defer { lock.unlock() }

        let observation = await SiteObserver.observe(hosts)
        let plan: Plan
        if let savedPlan {
            let moved = Self.movedOn(savedPlan, observed: observation.observed)
            if !moved.isEmpty {
                throw ValidationError("the saved plan is out of date; these resources changed since it was made:\n"
                    + moved.map { "  \($0)" }.joined(separator: "\n") + "\nRun `virtform plan --out FILE` again.")
            }
            plan = savedPlan
        } else {
            plan = Planner(site: site!, observed: observation.observed, options: .init(allowDestroy: allowDestroy)).plan()
        }

        output.write(PlanRenderer.text(plan, color: output.useColor))
        let runnable = plan.changes.filter { $0.blocked == nil }
        if !plan.errors.isEmpty {
            output.errorLine("error: the plan has errors; fix them and plan again. Nothing was changed.")
            throw ExitCode(1)
        }
        guard !runnable.isEmpty else {
            if !plan.unreachableHosts.isEmpty { throw ExitCode(1) }
            return
        }
        if !autoApprove { try confirm(count: runnable.count) }

        let summary = try await Self.execute(runnable, sessions: observation.sessions,
                                             limits: (parallelism, perHost), shutdownTimeout: shutdownTimeout, output: output)
        let blocked = plan.changes.count - runnable.count
        output.line("Apply: \(summary.succeeded) done, \(summary.failed) failed, \(summary.skipped) skipped"
            + (summary.notStarted > 0 ? ", \(summary.notStarted) not started" : "")
            + (blocked > 0 ? "; \(blocked) shown but not applied" : "") + ".")
        if !summary.isSuccess || !plan.unreachableHosts.isEmpty { throw ExitCode(1) }
    }

    /// A single argument that is a plan file (JSON with a format version) selects saved-plan mode.
    private func loadSavedPlan() throws -> Plan? {
        guard paths.count == 1, paths[0].hasSuffix(".json"), let data = FileManager.default.contents(atPath: paths[0]) else {
            return nil
        }
        do {
            let plan = try PlanRenderer.decode(data)
            guard plan.formatVersion == Plan.formatVersion else {
                throw ValidationError("\(paths[0]) is a plan of format \(plan.formatVersion); this virtform reads \(Plan.formatVersion)")
            }
            return plan
        } catch let error as ValidationError {
            throw error
        } catch {
            throw ValidationError("\(paths[0]) is not a saved plan: \(error)")
        }
    }

    private func confirm(count: Int) throws {
        guard isatty(STDIN_FILENO) == 1 else {
            throw ValidationError("refusing to apply \(count) change(s) without confirmation: standard input is not a terminal. Pass --auto-approve.")
        }
        Output.current.write("Apply these \(count) change(s)? Only 'yes' is accepted: ")
        guard readLine()?.trimmingCharacters(in: .whitespaces) == "yes" else {
            Output.current.line("Apply cancelled; nothing was changed.")
            throw ExitCode(1)
        }
    }

    static func lockPath(for uris: [String]) -> String {
        let directory = ProcessInfo.processInfo.environment["VIRTFORM_LOCK_DIR"] ?? NSTemporaryDirectory()
        return (directory as NSString).appendingPathComponent("virtform-apply-\(StableHash.of(uris.sorted().joined(separator: "\n")).hex).lock")
    }

    /// Resources whose observed fingerprint differs from the one the plan was made against.
    static func movedOn(_ plan: Plan, observed: ObservedSite) -> [String] {
        var current: [String: String] = [:]
        for domain in observed.domains {
            if let owner = domain.ownership { current["VirtualMachine/\(owner.vm)"] = domain.fingerprint }
        }
        var moved: [String] = []
        for (resource, fingerprint) in plan.observed.sorted(by: { $0.key < $1.key }) {
            let now = current[resource] ?? Plan.absent
            if now != fingerprint { moved.append(fingerprint == Plan.absent ? "\(resource): now exists" : now == Plan.absent ? "\(resource): now gone" : "\(resource): changed") }
        }
        for host in observed.unreachableHosts { moved.append("host \(host.host): cannot be read now (\(host.reason))") }
        return moved
    }

    /// Runs the changes as a graph: a VM's start waits for its create or update; every action
    /// counts against its host's limit.
    static func execute(_ changes: [Change], sessions: [String: LibvirtHost], limits: (Int, Int), shutdownTimeout: Double,
                        output: Output) async throws -> Executor.Summary<String> {
        var builder = ActionGraph<String>.Builder()
        let ids = Set(changes.map { "\($0.action.rawValue) \($0.resource)" })
        for change in changes {
            let id = "\(change.action.rawValue) \(change.resource)"
            let session = sessions[change.host]
            let dependencies = change.action == .start
                ? ["create \(change.resource)", "update \(change.resource)"].filter(ids.contains) : []
            builder.add(id, group: change.host, label: "\(id) on \(change.host)", dependsOn: dependencies) {
                guard let session else { throw HypervisorError("host \(change.host) is not connected") }
                let vm = VMID(parsing: change.resource.replacingOccurrences(of: "VirtualMachine/", with: ""))
                guard let domainName = change.after?.name ?? change.before?.name ?? vm?.domainName else {
                    throw HypervisorError("the plan names no domain for \(id)")
                }
                switch change.action {
                case .create, .update:
                    guard let spec = change.after, let ownership = change.ownership else { throw HypervisorError("the plan lacks the domain for \(id)") }
                    try await session.define(spec, ownership: ownership, replacing: change.action == .update)
                    try await session.applyLive(spec, to: domainName, liveMemory: change.fields.contains { $0.field == "memory" && $0.live })
                case .start:
                    try await session.start(domainName)
                case .stop:
                    try await session.stop(domainName, timeout: .milliseconds(Int(shutdownTimeout * 1000)))
                case .delete:
                    try await session.delete(domainName)
                case .migrate:
                    throw HypervisorError("migration is not supported yet")
                }
            }
        }
        let graph = try builder.build()
        return await Executor.run(graph, limits: (global: limits.0, perGroup: limits.1)) { event in
            switch event {
            case .started(_, let label): output.line("  … \(label)")
            case .succeeded(let id, let duration): output.line("  \(output.paint("✓", .green)) \(id) (\(duration.formatted(.units(allowed: [.seconds, .milliseconds], width: .narrow))))")
            case .failed(let id, let error): output.line("  \(output.paint("✗", .red)) \(id): \(error)")
            case .skipped(let id, let cause): output.line("  \(output.paint("-", .yellow)) \(id) skipped: \(cause) failed")
            }
        }
    }
}
