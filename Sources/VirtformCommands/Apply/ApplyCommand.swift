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
        let manifestPaths: [String]
        if let savedPlan {
            guard let sources = savedPlan.sources, !sources.isEmpty else {
                throw CommandFailure("\(paths[0]) does not name the manifests it was made from; make it again with `virtform plan --out FILE`")
            }
            manifestPaths = sources
        } else {
            manifestPaths = paths
        }
        let site = try SiteOptions.parse(manifestPaths).load()

        // One apply per site: the lock is named after the site's hypervisors and held to the end.
        let lockPath = Self.lockPath(for: site.hosts.map(\.uri))
        let lock: RunLock
        do {
            lock = lockTimeout > 0
                ? try await RunLock.lock(at: lockPath, command: "virtform apply", timeout: .milliseconds(Int(lockTimeout * 1000)))
                : try RunLock.tryLock(at: lockPath, command: "virtform apply")
        } catch {
            throw CommandFailure("another apply is running for this site: \(error)\nWait for it, or pass --lock-timeout SECONDS.")
        }
        defer { lock.unlock() }

        let options = Planner.Options(allowDestroy: savedPlan?.allowDestroy ?? allowDestroy)
        let reconciliation = await Reconciliation.make(site: site, options: options)
        var plan = reconciliation.plan
        if let savedPlan {
            // The plan is made again from the same manifests against what is there now; it must
            // be the plan that was saved, resource for resource.
            let moved = Self.movedOn(savedPlan, now: plan)
            if !moved.isEmpty {
                throw CommandFailure("the saved plan is out of date; these resources changed since it was made:\n"
                    + moved.map { "  \($0)" }.joined(separator: "\n") + "\nRun `virtform plan --out FILE` again.")
            }
            plan = savedPlan
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

        let summary = try await Self.execute(runnable, sessions: reconciliation.observation.sessions, sides: reconciliation.sides,
                                             limits: (parallelism, perHost), shutdownTimeout: shutdownTimeout, output: output)
        let blocked = plan.changes.count - runnable.count
        output.line("Apply: \(summary.succeeded) done, \(summary.failed) failed, \(summary.skipped) skipped"
            + (summary.notStarted > 0 ? ", \(summary.notStarted) not started" : "")
            + (blocked > 0 ? "; \(blocked) shown but not applied" : "") + "."
            + (summary.order.count != runnable.count ? " (\(runnable.count) changes in \(summary.order.count) actions: each DHCP server's reservations are written at once)" : ""))
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
                throw CommandFailure("\(paths[0]) is a plan of format \(plan.formatVersion); this virtform reads \(Plan.formatVersion)")
            }
            return plan
        } catch let error as CommandFailure {
            throw error
        } catch {
            throw CommandFailure("\(paths[0]) is not a saved plan: \(error)")
        }
    }

    private func confirm(count: Int) throws {
        guard isatty(STDIN_FILENO) == 1 else {
            throw CommandFailure("refusing to apply \(count) change(s) without confirmation: standard input is not a terminal. Pass --auto-approve.")
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

    /// What differs between a saved plan and the same plan made now: resources whose observed
    /// fingerprint moved on, changes that appeared or went away, systems that cannot be read.
    static func movedOn(_ saved: Plan, now: Plan) -> [String] {
        var moved: [String] = []
        for (resource, fingerprint) in saved.observed.sorted(by: { $0.key < $1.key }) {
            let current = now.observed[resource] ?? "unchanged by this plan"
            if current != fingerprint {
                moved.append(fingerprint == Plan.absent ? "\(resource): now exists" : current == Plan.absent ? "\(resource): now gone" : "\(resource): changed")
            }
        }
        let before = Set(saved.changes.map { "\($0.action.rawValue) \($0.resource)" })
        let after = Set(now.changes.map { "\($0.action.rawValue) \($0.resource)" })
        for change in before.subtracting(after).sorted() { moved.append("\(change): no longer needed") }
        for change in after.subtracting(before).sorted() { moved.append("\(change): needed now, not in the saved plan") }
        for host in now.unreachableHosts { moved.append("\(host.host): cannot be read now (\(host.reason))") }
        return moved
    }

    /// Runs the changes as a graph: a VM's start waits for its create or update; every action
    /// counts against its host's limit.
    static func execute(_ changes: [Change], sessions: [String: LibvirtHost], sides: [SidePlan], limits: (Int, Int),
                        shutdownTimeout: Double, output: Output) async throws -> Executor.Summary<String> {
        var builder = ActionGraph<String>.Builder()
        let sideActions = sides.flatMap { $0.actions(changes) }
        var waitsForDefine: [VMID: [String]] = [:]
        var waitsForStart: [VMID: [String]] = [:]
        var followsDelete: [VMID: [String]] = [:]
        for action in sideActions {
            for vm in action.beforeDefine { waitsForDefine[vm, default: []].append(action.id) }
            for vm in action.beforeStart { waitsForStart[vm, default: []].append(action.id) }
            for vm in action.afterDelete { followsDelete[vm, default: []].append(action.id) }
        }
        let ids = Set(changes.map { "\($0.action.rawValue) \($0.resource)" })
        for action in sideActions {
            let deletions = action.afterDelete.map { "delete VirtualMachine/\($0)" }.filter(ids.contains)
            builder.add(action.id, group: action.group, label: action.label, dependsOn: action.dependsOn + deletions, body: action.run)
        }
        for change in changes where !Plan.isSystem(change.host) {
            let id = "\(change.action.rawValue) \(change.resource)"
            let session = sessions[change.host]
            let vm = VMID(resource: change.resource)
            var dependencies: [String] = []
            switch change.action {
            case .start:
                dependencies = ["create \(change.resource)", "update \(change.resource)"].filter(ids.contains)
                    + (vm.flatMap { waitsForStart[$0] } ?? [])
            case .create, .update:
                dependencies = vm.flatMap { waitsForDefine[$0] } ?? []
            default:
                break
            }
            builder.add(id, group: change.host, label: "\(id) on \(change.host)", dependsOn: dependencies) {
                guard let session else { throw HypervisorError("host \(change.host) is not connected") }
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
            case .succeeded(let id, let duration): output.line("  \(output.paint("✓", .green)) \(id) (\(Self.milliseconds(duration)))")
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
