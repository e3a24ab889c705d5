import ArgumentParser
import Foundation
import Libvirt
import Logging
import ServiceLifecycle
import Synchronization
import VirtformExecution
import VirtformManifests
import VirtformModel
import VirtformPlanning
import VirtformState

/// The long-running reconcile loop (`virtform reconcile --watch`), level-triggered: each pass
/// loads the manifests, reads every system, plans, and carries out what `ReconcilePolicy`
/// allows under the site's lock, recorded in the run history as a run of kind `reconcile`;
/// everything else is logged and counted. A pass runs at every resync, when a domain event or a
/// lost connection rings, when the manifests on disk change, and when a change backing off is
/// due. On graceful shutdown a running apply starts nothing new and lets its actions finish.
final class Reconciler: Service, Sendable {
    struct Settings: Sendable {
        var paths: [String]
        var resync: Duration
        var readTimeout: Duration
        var allowances: Plan.Allowances
        var execution: PlanExecution.Settings
        var hostDownObservations: Int
        var hostDownAfter: Duration
        var backoff: RetryBook<String>.Backoff
        var backend: BackendOptions
        /// How often the manifest files are looked at for a change.
        var manifestPoll: Duration = .seconds(2)
        /// Events that come within this of the first are handled by the same pass.
        var debounce: Duration = .milliseconds(500)
        /// While a host cannot be read (and is not fenceable yet), passes come at least this often.
        var suspectInterval: Duration = .seconds(10)
        /// One pass, then return (`reconcile` without `--watch`).
        var once = false
    }

    /// How the last pass ended, for the one-shot command's exit status.
    enum PassOutcome: String, Sendable {
        /// Nothing to do, nothing in doubt.
        case clean
        /// Changes were carried out, all of them successfully.
        case applied
        /// Differences remain that the loop does not carry out (reported).
        case reported
        /// Something failed: a system could not be read, an action failed, the plan has errors.
        case failed
        /// Another apply held the site's lock.
        case locked
    }

    let settings: Settings
    let logger: Logger
    let metrics: ReconcileMetrics
    let health: ReconcileHealth
    private let doorbell = Doorbell()
    private let drain = Executor.Drain()
    private let lastOutcome = Mutex(PassOutcome.clean)

    init(settings: Settings, logger: Logger, metrics: ReconcileMetrics, health: ReconcileHealth) {
        self.settings = settings
        self.logger = logger
        self.metrics = metrics
        self.health = health
    }

    var outcome: PassOutcome { lastOutcome.withLock { $0 } }

    func run() async throws {
        try await withGracefulShutdownHandler {
            try await loop()
        } onGracefulShutdown: { [drain, doorbell, logger] in
            logger.info("shutting down: starting nothing new; running actions finish")
            drain.request()
            doorbell.ring("shutdown")
        }
    }

    /// What the loop keeps from one pass to the next.
    private struct Memory {
        var site: Site?
        var digest: String?
        var stamp: [String] = []
        var retries: RetryBook<String>
        var hosts: HostWatch
        /// The changes reported by the last pass, as logged, so that each is logged when it appears.
        var reported: Set<String> = []
    }

    private func loop() async throws {
        let events = EventWatch(doorbell: doorbell, logger: logger)
        let connections = Hypervisors.Connections(onConnect: { host in events.watch(host) }, onDrop: { name in events.stop(name) })
        var memory = Memory(retries: RetryBook(backoff: settings.backoff),
                            hosts: HostWatch(observations: settings.hostDownObservations, duration: settings.hostDownAfter))
        var reasons = ["start"]
        defer { events.stopAll() }
        do {
            while !drain.isRequested && !Task.isCancelled {
                try await pass(reasons: reasons, memory: &memory, connections: connections)
                metrics.connectedHosts.set(to: Double(connections.count))
                if settings.once { break }
                reasons = await waitForWork(&memory)
            }
        } catch {
            await connections.closeAll()
            throw error
        }
        await connections.closeAll()
        logger.info("stopped")
    }

    /// Waits for the next reason to pass: a ring, changed manifests, the resync, a retry due.
    private func waitForWork(_ memory: inout Memory) async -> [String] {
        let clock = ContinuousClock()
        var deadline = clock.now + settings.resync
        var why = "resync"
        if memory.hosts.suspect, settings.suspectInterval < settings.resync {
            deadline = clock.now + settings.suspectInterval
            why = "a host could not be read: reading it again"
        }
        if let retry = memory.retries.nextRetry(after: clock.now), retry < deadline {
            deadline = retry
            why = "a change backing off is due"
        }
        while !drain.isRequested && !Task.isCancelled {
            let left = deadline - clock.now
            if left <= .zero { return [why] }
            var rang = await doorbell.wait(for: min(left, settings.manifestPoll))
            if !rang.isEmpty {
                // Let a burst of events (a guest stopping, then being undefined) settle into one pass.
                if !rang.contains("shutdown") {
                    try? await Task.sleep(for: settings.debounce)
                    rang += doorbell.take()
                }
                return rang
            }
            if Self.stamp(settings.paths) != memory.stamp { return ["manifests changed on disk"] }
        }
        return ["shutdown"]
    }

    /// Each manifest file with its modification time and size: a cheap look for an edit.
    static func stamp(_ paths: [String]) -> [String] {
        ManifestLoader.files(in: paths).files.map { file in
            var info = stat()
            guard stat(file, &info) == 0 else { return file + " -" }
            return "\(file) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec) \(info.st_size) \(info.st_ino)"
        }
    }

    // MARK: - One pass

    private func pass(reasons: [String], memory: inout Memory, connections: Hypervisors.Connections) async throws {
        let clock = ContinuousClock()
        let started = clock.now
        health.started()
        var outcome = PassOutcome.failed
        defer {
            lastOutcome.withLock { $0 = outcome }
            metrics.pass(outcome.rawValue, duration: clock.now - started)
        }
        logger.debug("pass", metadata: ["why": "\(reasons.joined(separator: "; "))"])

        // The manifests: reloaded when a file changed; the last valid ones kept while they are invalid.
        let stamp = Self.stamp(settings.paths)
        if memory.site == nil || stamp != memory.stamp {
            memory.stamp = stamp
            let loaded = ManifestLoader.load(paths: settings.paths)
            if loaded.isValid {
                var site = loaded.site
                site.dropSourceMaps()
                let digest = "manifests-" + StableHash.of(loaded.digests.joined(separator: " "), loaded.files.joined(separator: " ")).hex
                if digest != memory.digest {
                    logger.info(memory.digest == nil ? "manifests loaded" : "manifests changed",
                                metadata: ["digest": "\(digest)", "files": "\(loaded.files.count)", "objects": "\(site.objectCount)", "site": "\(site.name)"])
                }
                memory.site = site
                memory.digest = digest
                metrics.manifestsValid.set(to: 1)
            } else {
                metrics.manifestsValid.set(to: 0)
                let report = DiagnosticReport.text(loaded, output: .plain)
                logger.error(memory.site == nil ? "the manifests are invalid; nothing is reconciled until they load"
                                : "the manifests are invalid; reconciling the last valid ones",
                             metadata: ["digest": "\(memory.digest ?? "none")", "errors": "\(report.trimmingCharacters(in: .whitespacesAndNewlines))"])
                if memory.site == nil {
                    health.ended(ready: false, why: "the manifests are invalid")
                    if settings.once { throw ExitCode(1) }
                    return
                }
            }
        }
        guard let site = memory.site else { return }

        let (reading, selected, _) = await readAndPlan(site, memory: &memory, connections: connections)
        metrics.record(plan: selected, site: site, durations: reading.durations)
        report(selected, memory: &memory)

        let runnable = selected.runnable
        let incomplete = !selected.errors.isEmpty || !selected.unreachable.isEmpty || !selected.unknown.isEmpty
        if runnable.isEmpty || drain.isRequested {
            await reading.systems.closeAll()
            outcome = incomplete ? .failed : selected.changes.isEmpty ? .clean : .reported
        } else {
            outcome = await apply(selected, site: site, first: reading, memory: &memory, connections: connections)
            if outcome == .applied && incomplete { outcome = .failed }
        }
        metrics.backingOff.set(to: Double(memory.retries.backingOff))
        metrics.parked.set(to: Double(memory.retries.parked))
        health.ended(ready: true, why: "ok")
        logger.info("pass", metadata: [
            "outcome": "\(outcome.rawValue)", "changes": "\(selected.changes.count)", "applied": "\(runnable.count)",
            "outside": "\(selected.summary.outside)", "unapplied": "\(selected.summary.unapplied)",
            "unreachable": "\(selected.unreachable.count)", "seconds": "\(Self.seconds(clock.now - started))",
            "why": "\(reasons.prefix(3).joined(separator: "; "))\(reasons.count > 3 ? " …" : "")",
        ])
    }

    /// Reads every system, as `plan` does, and makes the plan the loop may carry out.
    private func readAndPlan(_ site: Site, memory: inout Memory, connections: Hypervisors.Connections) async
        -> (reading: SiteReader.Result, selected: Plan, fingerprints: [String: String]) {
        let reading = await SiteReader.read(site: site, timeout: settings.readTimeout, context: ReadContext(hostConnections: connections))
        let now = ContinuousClock.now
        var reachable: [String: Bool] = [:]
        for host in site.hosts {
            if case .reachable = reading.observation.hosts.hosts[host.name] { reachable[host.name] = true } else { reachable[host.name] = false }
        }
        memory.hosts.observe(reachable, at: now)
        var options = Planner.Options(settings.allowances)
        options.now = Int(Date().timeIntervalSince1970)
        var plan = Planner(site: site, observation: reading.observation, options: options).plan()
        plan.warnings += StandIns.warnings(site)

        // What the loop holds back, then what it may carry out.
        var held: [String: String] = [:]
        var fingerprints: [String: String] = [:]
        for change in plan.changes {
            let fingerprint = Self.fingerprint(change)
            fingerprints[change.id] = fingerprint
            if let why = memory.retries.hold(change.id, fingerprint: fingerprint, now: now) { held[change.id] = why }
        }
        memory.retries.keepOnly { fingerprints[$0] != nil }
        let policy = ReconcilePolicy(site: site, fenceable: memory.hosts.fenceable(at: now), notFenceable: memory.hosts.waiting(at: now), held: held)
        return (reading, policy.select(plan), fingerprints)
    }

    /// What the change would do, and to what: a parked change runs again once this moves on.
    static func fingerprint(_ change: Change) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        struct Doing: Encodable {
            var operation: VirtformPlanning.Operation
            var before: ResourceState?
            var after: ResourceState?
        }
        var operation = change.operation
        // A move's mark records when it was planned: not part of what it does.
        if case .migrateDomain(let name, var request) = operation {
            request.ownership.movedAt = nil
            operation = .migrateDomain(name: name, request: request)
        }
        let data = (try? encoder.encode(Doing(operation: operation, before: change.before, after: change.after))) ?? Data()
        return StableHash.of(String(decoding: data, as: UTF8.self)).hex
    }

    /// Logs each difference when it appears (not again each pass while it stays), and each
    /// system that cannot be read.
    private func report(_ plan: Plan, memory: inout Memory) {
        var now = Set<String>()
        for change in plan.changes {
            // A backoff's countdown is not a new reason: the line is not written again for it.
            let reason = change.blocked.map { $0.components(separatedBy: "; retried in").first ?? $0 } ?? ""
            let key = "\(change.id)|\(change.cause.rawValue)|\(reason)"
            now.insert(key)
            guard !memory.reported.contains(key) else { continue }
            if !memory.reported.contains(where: { $0.hasPrefix("\(change.id)|\(change.cause.rawValue)|") }) { metrics.detected(change.cause) }
            var metadata: Logger.Metadata = ["change": "\(change.id)", "cause": "\(change.cause.rawValue)", "system": "\(change.system)"]
            if let blocked = change.blocked { metadata["reported_only"] = "\(blocked)" }
            if !change.fields.isEmpty { metadata["fields"] = "\(change.fields.map(\.field).joined(separator: ","))" }
            logger.notice(change.cause == .unapplied ? "manifest change not applied" : "drift", metadata: metadata)
        }
        for system in plan.unreachable {
            let key = "unreachable|\(system.system)|\(system.reason)"
            now.insert(key)
            if !memory.reported.contains(key) {
                logger.warning("system cannot be read: its objects are unknown, never taken as gone",
                               metadata: ["system": "\(system.system)", "reason": "\(system.reason)"])
            }
        }
        for item in plan.unknown {
            let key = "unknown|\(item.resource)|\(item.reason)"
            now.insert(key)
            if !memory.reported.contains(key) { logger.warning("unknown", metadata: ["resource": "\(item.resource)", "reason": "\(item.reason)"]) }
        }
        for problem in plan.errors {
            let key = "error|\(problem.resource)|\(problem.message)"
            now.insert(key)
            if !memory.reported.contains(key) { logger.error("plan error", metadata: ["resource": "\(problem.resource)", "message": "\(problem.message)"]) }
        }
        memory.reported = now
    }

    /// Carries out `runnable` under the site's lock, recorded as a `reconcile` run.
    /// The plan is made again once the lock is held (as `apply` plans under it): what another
    /// apply did while this pass read is seen, and only what is still needed runs.
    private func apply(_ first: Plan, site: Site, first reading: SiteReader.Result, memory: inout Memory,
                       connections: Hypervisors.Connections) async -> PassOutcome {
        await reading.systems.closeAll()
        let backend: any StateBackend
        do {
            backend = try await settings.backend.open(for: site)
        } catch {
            logger.error("the run history and lock cannot be opened; nothing applied this pass", metadata: ["error": "\(error)"])
            return .failed
        }
        let holder = LockHolder.current(run: RunID.make(), command: "virtform reconcile", planDigest: RunRecorder.digest(first))
        let lost = Executor.Drain()
        let lease: any LockLease
        do {
            lease = try await backend.acquire(holder, timeout: .zero) { [logger] reason in
                logger.error("the apply lock was lost; starting nothing new", metadata: ["reason": "\(reason)"])
                lost.request()
            }
        } catch let error as StateError where error.code == .locked {
            await backend.close()
            logger.notice("another apply holds the site's lock; this pass applies nothing",
                          metadata: ["holder": "\(error.holder.map { "run \($0.run) by \($0.user)@\($0.machine) pid \($0.pid)" } ?? "a run starting")"])
            return .locked
        } catch {
            await backend.close()
            logger.error("cannot take the apply lock; nothing applied this pass", metadata: ["error": "\(error)"])
            return .failed
        }
        metrics.lockHeld.set(to: 1)
        let (fresh, plan, fingerprints) = await readAndPlan(site, memory: &memory, connections: connections)
        let systems = fresh.systems
        let runnable = plan.runnable
        let digest = RunRecorder.digest(plan)
        await lease.update(planDigest: digest)
        if runnable.isEmpty || drain.isRequested {
            await systems.closeAll()
            await lease.release()
            await backend.close()
            metrics.lockHeld.set(to: 0)
            logger.info("nothing left to apply once the lock was held", metadata: ["changes": "\(plan.changes.count)"])
            return runnable.isEmpty && plan.changes.isEmpty ? .clean : .reported
        }
        if let abandoned = try? await backend.abandonUnfinished(site: site.name, except: holder.run), !abandoned.isEmpty {
            logger.notice("runs that never finished recorded as abandoned", metadata: ["runs": "\(abandoned.joined(separator: ","))"])
        }
        let recorder = RunRecorder(journal: backend, record: RunRecord.starting(.reconcile, site: site.name, holder: holder))
        recorder.update { record in
            record.planDigest = digest
            record.counts.changes = plan.changes.count
            record.counts.blocked = plan.changes.count - runnable.count
        }
        await recorder.begin()
        logger.info("applying", metadata: ["run": "\(recorder.record.id)", "changes": "\(runnable.map(\.id).joined(separator: "; "))", "plan": "\(digest)"])

        var execution = settings.execution
        execution.runID = recorder.record.id
        let failures = PlanExecution.Failures()
        // Either a shutdown or a lost lock stops the run from starting anything new.
        let stop = Executor.Drain(any: [drain, lost])
        let logger = self.logger
        let metrics = self.metrics
        var outcome = PassOutcome.applied
        do {
            let summary = try await PlanExecution.run(runnable, systems: systems, settings: execution, output: .plain, drain: stop,
                                                      failures: failures) { event in
                recorder.observe(event)
                switch event {
                case .started(let id, _): logger.info("action started", metadata: ["action": "\(id)"])
                case .succeeded(let id, let duration):
                    metrics.action("succeeded")
                    logger.info("action succeeded", metadata: ["action": "\(id)", "seconds": "\(Self.seconds(duration))"])
                case .failed(let id, let error):
                    metrics.action("failed")
                    logger.error("action failed", metadata: ["action": "\(id)", "error": "\(Redaction.escapingControls(error))"])
                case .skipped(let id, let cause):
                    metrics.action("skipped")
                    logger.warning("action skipped", metadata: ["action": "\(id)", "because": "\(cause) failed"])
                }
            }
            let notStarted = summary.order.filter { summary.outcomes[$0] == .notStarted }
            for _ in notStarted { metrics.action("not_started") }
            recorder.notStarted = notStarted
            recorder.update { record in
                record.counts.succeeded = summary.succeeded
                record.counts.failed = summary.failed
                record.counts.skipped = summary.skipped
                record.counts.notStarted = summary.notStarted
            }
            // What each node did, for the changes it carried out.
            let nodes = (try? PlanExecution.nodes(runnable)) ?? []
            let random = { Double.random(in: 0..<1) }
            for node in nodes {
                switch summary.outcomes[node.id] {
                case .succeeded?:
                    for change in node.batch { memory.retries.succeeded(change.id) }
                case .failed(let message)?:
                    let failure = failures[node.id]
                    for change in node.batch {
                        memory.retries.failed(change.id, fingerprint: fingerprints[change.id] ?? "", reason: failure?.message ?? message,
                                              retryable: failure?.retryable ?? true, now: .now, random: random())
                    }
                    outcome = .failed
                case .skipped?, .notStarted?, nil:
                    break
                }
            }
            if summary.wasCancelled && outcome == .applied { outcome = .reported }
            if outcome == .applied && runnable.count < plan.changes.count { outcome = .reported }
            let ended: RunOutcome = summary.wasCancelled ? .interrupted : summary.isSuccess ? .succeeded : .failed
            let message: String? = summary.wasCancelled
                ? (lost.isRequested ? "the apply lock was lost; nothing new was started" : "shut down; running actions finished, nothing new was started")
                : summary.order.first { if case .failed = summary.outcomes[$0] { true } else { false } }
                    .flatMap { id in if case .failed(let error) = summary.outcomes[id] { "\(id): \(error)" } else { nil } }
            await recorder.finish(outcome: ended, message: message, notStarted: notStarted)
        } catch {
            logger.error("the plan could not be carried out", metadata: ["error": "\(error)"])
            await recorder.finish(outcome: .failed, message: Virtform.fullMessage(for: error))
            outcome = .failed
        }
        await systems.closeAll()
        await lease.release()
        await backend.close()
        metrics.lockHeld.set(to: 0)
        logger.info("applied", metadata: ["run": "\(recorder.record.id)", "outcome": "\(recorder.record.outcome.rawValue)"])
        return outcome
    }

    static func seconds(_ duration: Duration) -> String {
        let ms = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        return "\(ms / 1000).\(String(format: "%03d", ms % 1000))"
    }
}
