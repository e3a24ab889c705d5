import Synchronization
import ArgumentParser
import Foundation
import VirtformExecution
import VirtformManifests
import VirtformModel
import VirtformPlanning
import VirtformState

/// `virtform apply`: make the hypervisors match the manifests (or carry out a saved plan).
struct ApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Plan, confirm and carry out the changes (or apply a plan saved with `plan --out`).",
        discussion: """
            With a saved plan (--plan FILE), apply first checks that no manifest file changed and that every \
            resource is still as the plan saw it, and refuses, naming what moved on, if not; then it carries out \
            the saved plan's own operations. Only one apply runs per site at a time. \
            Exit status: 0 when everything was applied; 3 when everything that could run was applied but changes \
            stayed blocked (the summary says how many); 1 on an error, a failed action, a system that could not \
            be read or a refused saved plan.
            """
    )

    @Argument(help: "Manifest files or directories. Default: manifests")
    var paths: [String] = []

    @Option(name: .customLong("plan"), help: "Carry out this saved plan (from `plan --out`) instead of planning afresh.")
    var planFile: String?

    @Flag(help: "Apply without asking for confirmation (needed when not on a terminal).")
    var autoApprove = false

    @OptionGroup var allow: AllowanceOptions

    @OptionGroup var reading: ReadOptions

    @Option(help: "Seconds to wait for another apply of the same site to finish (default: fail at once).")
    var lockTimeout: Double = 0

    @OptionGroup var state: BackendOptions

    @OptionGroup var execution: ExecutionOptions

    /// Exit status when everything runnable was applied but some changes stayed blocked.
    static let blockedExitCode: Int32 = 3

    func run() async throws {
        let output = Output.current
        if planFile == nil, paths.count == 1, paths[0].hasSuffix(".json") {
            throw ValidationError("\(paths[0]) looks like a saved plan; apply it with `virtform apply --plan \(paths[0])`")
        }
        let savedPlan = try planFile.map(Self.loadSavedPlan)
        let site: Site
        if let savedPlan, let planFile {
            guard paths.isEmpty else { throw ValidationError("--plan takes the manifests the plan names; give no paths with it") }
            site = try Self.checkSources(of: savedPlan, file: planFile)
        } else {
            site = try SiteOptions.parse(paths).load()
        }

        // One apply per site, wherever it runs: the site's lock, held to the end, names its holder.
        let backend = try await state.open(for: site)
        let holder = LockHolder.current(run: RunID.make(), command: planFile == nil ? "virtform apply" : "virtform apply --plan",
                                        planDigest: savedPlan.map(RunRecorder.digest))
        let lost = CancelSwitch()
        let lease: any LockLease
        do {
            lease = try await backend.acquire(holder, timeout: .milliseconds(Int(lockTimeout * 1000))) { reason in
                Output.current.errorLine("error: the apply lock was lost (\(reason)); starting nothing new")
                lost.cancel()
            }
        } catch let error as StateError where error.code == .locked {
            await backend.close()
            let who = error.holder.map { LockCommand.Status.indent($0.describe()) } ?? "  (a run that has not recorded itself yet)"
            throw CommandFailure("another apply is running for site \(site.name) (\(backend.location)):\n\(who)\n"
                + (lockTimeout > 0 ? "It still held the lock after \(lockTimeout) s." : "Wait for it, or pass --lock-timeout SECONDS."))
        } catch {
            await backend.close()
            throw CommandFailure("cannot take the apply lock: \(error)")
        }
        if let abandoned = try? await backend.abandonUnfinished(site: site.name, except: holder.run), !abandoned.isEmpty {
            output.line("Note: \(abandoned.joined(separator: ", ")) never finished (\(abandoned.count == 1 ? "its process" : "their processes") ended while \(abandoned.count == 1 ? "it" : "they") ran); recorded as abandoned.")
        }
        let recorder = RunRecorder(journal: backend, record: RunRecord.starting(.apply, site: site.name, holder: holder))
        await recorder.begin()

        let options = Planner.Options(savedPlan?.allowed ?? allow.allowances)
        let reconciliation = await Reconciliation.make(site: site, options: options, timeout: reading.timeout, connected: true)
        var failure: (any Error)?
        do {
            try await carryOut(reconciliation, savedPlan: savedPlan, output: output, recorder: recorder, lease: lease, lost: lost)
        } catch {
            failure = error
        }
        await reconciliation.systems.closeAll()
        let outcome: RunOutcome = switch failure {
        case nil: .succeeded
        case let code as ExitCode where code.rawValue == Self.blockedExitCode: .blocked
        default: lost.isCancelled || recorder.record.outcome == .interrupted ? .interrupted : .failed
        }
        let message: String? = switch failure {
        case nil, is ExitCode: recorder.record.message
        case let failure?: Virtform.fullMessage(for: failure)
        }
        await recorder.finish(outcome: outcome, message: message, notStarted: recorder.notStarted)
        await lease.release()
        await backend.close()
        if let failure { throw failure }
    }

    /// Shows the plan, asks, and runs it on the connected systems.
    private func carryOut(_ reconciliation: Reconciliation, savedPlan: Plan?, output: Output, recorder: RunRecorder,
                          lease: any LockLease, lost: CancelSwitch) async throws {
        var plan = reconciliation.plan
        if let savedPlan {
            // What is there now must be what the saved plan was made against, resource for resource;
            // then the saved plan's own operations are carried out.
            let moved = Self.movedOn(savedPlan, now: plan)
            if !moved.isEmpty {
                throw CommandFailure("the saved plan is out of date; these resources changed since it was made:\n"
                    + moved.map { "  \($0)" }.joined(separator: "\n") + "\nRun `virtform plan --out FILE` again.")
            }
            plan = savedPlan
        } else {
            await lease.update(planDigest: RunRecorder.digest(plan))
        }
        let digest = RunRecorder.digest(plan)
        recorder.update { $0.planDigest = digest }

        output.write(PlanRenderer.text(plan, color: output.useColor))
        let runnable = plan.runnable
        recorder.update { record in
            record.counts.changes = plan.changes.count
            record.counts.blocked = plan.changes.count - runnable.count
        }
        if !plan.errors.isEmpty {
            recorder.update { $0.message = "the plan has errors: " + plan.errors.prefix(3).map { "\($0.resource): \($0.message)" }.joined(separator: "; ") }
            output.errorLine("error: the plan has errors; fix them and plan again. Nothing was changed.")
            throw ExitCode(1)
        }
        let blocked = plan.changes.count - runnable.count
        guard !runnable.isEmpty else {
            if !plan.unreachable.isEmpty || !plan.unknown.isEmpty { throw ExitCode(1) }
            if blocked > 0 {
                output.line("Apply: nothing to do; \(blocked) change\(blocked == 1 ? "" : "s") stayed blocked.")
                throw ExitCode(Self.blockedExitCode)
            }
            return
        }
        if !autoApprove { try confirm(count: runnable.count) }

        let settings = execution.settings(runID: recorder.record.id)
        let summary = try await Self.interruptible(output: output, also: lost) {
            try await PlanExecution.run(runnable, systems: reconciliation.systems, settings: settings, output: output,
                                        observe: recorder.observe)
        }
        recorder.update { record in
            record.counts.succeeded = summary.succeeded
            record.counts.failed = summary.failed
            record.counts.skipped = summary.skipped
            record.counts.notStarted = summary.notStarted
            if summary.wasCancelled { record.outcome = .interrupted }
            if let failed = summary.order.first(where: { if case .failed = summary.outcomes[$0] { true } else { false } }),
               case .failed(let error) = summary.outcomes[failed] {
                record.message = "\(failed): \(error)"
            }
        }
        recorder.notStarted = summary.order.filter { summary.outcomes[$0] == .notStarted }
        if summary.wasCancelled {
            output.line(lost.isCancelled ? "Apply: stopped, the apply lock was lost; nothing new was started, and running migrations were aborted."
                : "Apply: interrupted (Ctrl-C); nothing new was started, and running migrations were aborted.")
        }
        output.line("Apply: \(summary.succeeded) done, \(summary.failed) failed, \(summary.skipped) skipped"
            + (summary.notStarted > 0 ? ", \(summary.notStarted) not started" : "")
            + (blocked > 0 ? "; \(blocked) change\(blocked == 1 ? "" : "s") stayed blocked" : "") + "."
            + (summary.order.count != runnable.count ? " (\(runnable.count) changes in \(summary.order.count) actions: each DHCP server's reservations are written at once)" : ""))
        if !summary.isSuccess || !plan.unreachable.isEmpty || !plan.unknown.isEmpty { throw ExitCode(1) }
        if blocked > 0 { throw ExitCode(Self.blockedExitCode) }
    }

    /// Runs `body` so that the first Ctrl-C (SIGINT) cancels it: nothing new starts, running
    /// actions see the cancellation (a live migration aborts its job and the guest stays where
    /// it was), and the summary is still printed. A second Ctrl-C ends the process at once.
    static func interruptible<T: Sendable>(output: Output, also other: CancelSwitch? = nil,
                                           _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        // The handler is in place before anything starts.
        signal(SIGINT, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        let interrupted = Mutex(false)
        let started = Mutex<Task<T, any Error>?>(nil)
        source.setEventHandler {
            if interrupted.withLock({ was in defer { was = true }; return was }) {
                signal(SIGINT, SIG_DFL)
                raise(SIGINT)
                return
            }
            output.line("Interrupted: starting nothing new and aborting running migrations; Ctrl-C again to stop at once.")
            started.withLock { $0 }?.cancel()
        }
        source.resume()
        let task = Task { try await body() }
        started.withLock { $0 = task }
        other?.attach(task)
        if interrupted.withLock({ $0 }) { task.cancel() }
        defer {
            source.cancel()
            signal(SIGINT, SIG_DFL)
        }
        return try await withTaskCancellationHandler { try await task.value } onCancel: { task.cancel() }
    }

    static func loadSavedPlan(_ path: String) throws -> Plan {
        guard let data = FileManager.default.contents(atPath: path) else { throw CommandFailure("cannot read the saved plan \(path)") }
        // Format 1 wrote its version as a string.
        struct Version: Decodable { var formatVersion: Int? }
        struct OldVersion: Decodable { var formatVersion: String? }
        let version = (try? PlanRenderer.decoder.decode(Version.self, from: data))?.formatVersion.map(String.init)
            ?? (try? PlanRenderer.decoder.decode(OldVersion.self, from: data))?.formatVersion
        guard version == String(Plan.formatVersion) else {
            throw CommandFailure("\(path) is \(version.map { "a plan of format \($0)" } ?? "not a saved plan"); this virtform reads format \(Plan.formatVersion). Make it again with `virtform plan --out FILE`.")
        }
        do {
            return try PlanRenderer.decode(data)
        } catch {
            throw CommandFailure("\(path) is not a saved plan: \(error)")
        }
    }

    /// Loads the manifests a saved plan names and refuses when any file changed, appeared or
    /// went since the plan was made.
    static func checkSources(of plan: Plan, file: String) throws -> Site {
        guard let sources = plan.sources, !sources.paths.isEmpty else {
            throw CommandFailure("\(file) does not name the manifests it was made from; make it again with `virtform plan --out FILE`")
        }
        let loaded = ManifestLoader.load(paths: sources.paths)
        var moved: [String] = []
        let then = Dictionary(sources.files.map { ($0.path, $0.digest) }, uniquingKeysWith: { first, _ in first })
        let now = Dictionary(zip(loaded.files, loaded.digests).map { ($0, $1) }, uniquingKeysWith: { first, _ in first })
        for (path, digest) in then.sorted(by: { $0.key < $1.key }) {
            guard let current = now[path] else { moved.append("\(path): gone"); continue }
            if current != digest { moved.append("\(path): edited") }
        }
        for path in now.keys.sorted() where then[path] == nil { moved.append("\(path): new") }
        if !moved.isEmpty {
            throw CommandFailure("the manifests changed since the plan was made:\n" + moved.map { "  \($0)" }.joined(separator: "\n")
                + "\nRun `virtform plan --out FILE` again.")
        }
        guard loaded.isValid else {
            Output.current.writeError(DiagnosticReport.text(loaded, output: Output.current))
            throw ExitCode(1)
        }
        return loaded.site
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

    /// What differs between a saved plan and the same plan made now: resources whose observed
    /// fingerprint moved on, changes that appeared or went away, systems that cannot be read.
    static func movedOn(_ saved: Plan, now: Plan) -> [String] {
        var moved: [String] = []
        for (resource, fingerprint) in saved.fingerprints.sorted(by: { $0.key < $1.key }) {
            let current = now.fingerprints[resource] ?? "unchanged by this plan"
            if current != fingerprint {
                moved.append(fingerprint == Plan.absent ? "\(resource): now exists" : current == Plan.absent ? "\(resource): now gone" : "\(resource): changed")
            }
        }
        let before = Set(saved.changes.map(\.id))
        let after = Set(now.changes.map(\.id))
        for change in before.subtracting(after).sorted() { moved.append("\(change): no longer needed") }
        for change in after.subtracting(before).sorted() { moved.append("\(change): needed now, not in the saved plan") }
        for system in now.unreachable { moved.append("\(system.system)\(system.endpoint.map { " (\($0))" } ?? ""): cannot be read now (\(system.reason))") }
        return moved
    }
}

/// Cancels a task from outside, once it is attached (the apply's execution when its lock is lost).
final class CancelSwitch: Sendable {
    private let state = Mutex<(task: Task<Void, Never>?, cancel: (@Sendable () -> Void)?, cancelled: Bool)>((nil, nil, false))

    func attach<T>(_ task: Task<T, any Error>) {
        let cancelled = state.withLock { current in
            current.cancel = { task.cancel() }
            return current.cancelled
        }
        if cancelled { task.cancel() }
    }

    func cancel() {
        let cancel = state.withLock { current in
            current.cancelled = true
            return current.cancel
        }
        cancel?()
    }

    var isCancelled: Bool { state.withLock { $0.cancelled } }
}
