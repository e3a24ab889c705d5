import Foundation
import Prometheus
import Synchronization
import VirtformModel
import VirtformPlanning

/// The reconcile loop's metrics, in swift-prometheus's registry (its text format is the
/// library's, read by any Prometheus scraper). Every name starts with `virtform_`; label
/// values are bounded by the site (kinds, states, causes, outcomes, the declared systems).
final class ReconcileMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()

    /// Objects' states: `in_sync`, `drifted` (changed outside virtform), `pending` (a manifest
    /// change not applied yet), `unknown` (cannot be told: a system could not be read).
    static let states = ["in_sync", "drifted", "pending", "unknown"]
    static let objectKinds = ["VirtualMachine", "NetworkBinding", "StorageProject", "Image", "Host"]
    static let causes: [ChangeCause] = [.outside, .unapplied, .unknown]
    static let actionOutcomes = ["succeeded", "failed", "skipped", "not_started"]
    static let passOutcomes = ["clean", "applied", "reported", "failed", "locked"]

    private let passDuration: DurationHistogram
    private let passes: [String: Counter]
    private let actions: [String: Counter]
    let lockHeld: Gauge
    let manifestsValid: Gauge
    let lastPass: Gauge
    let backingOff: Gauge
    let parked: Gauge
    let connectedHosts: Gauge

    init() {
        passDuration = registry.makeDurationHistogram(
            descriptor: MetricNameDescriptor(namespace: "virtform", metricName: "reconcile_pass_duration", unitName: "seconds",
                                             helpText: "How long a reconcile pass took: read every system, plan, and apply what the loop may."),
            labels: [],
            buckets: [.milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2),
                      .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(120), .seconds(300)])
        var passes: [String: Counter] = [:]
        for outcome in Self.passOutcomes {
            passes[outcome] = registry.makeCounter(descriptor: Self.named("virtform_reconcile_passes_total", "Reconcile passes by outcome."), labels: [("outcome", outcome)])
        }
        self.passes = passes
        var actions: [String: Counter] = [:]
        for outcome in Self.actionOutcomes {
            actions[outcome] = registry.makeCounter(descriptor: Self.named("virtform_actions_total", "Actions the loop carried out, by outcome."), labels: [("outcome", outcome)])
        }
        self.actions = actions
        lockHeld = registry.makeGauge(descriptor: Self.named("virtform_lock_held", "1 while this process holds the site's apply lock."), labels: [])
        manifestsValid = registry.makeGauge(descriptor: Self.named("virtform_manifests_valid", "1 when the manifests on disk load without errors (else the last valid ones are used)."), labels: [])
        lastPass = registry.makeGauge(descriptor: Self.named("virtform_reconcile_last_pass_timestamp_seconds", "When the last pass ended, in seconds since 1970."), labels: [])
        backingOff = registry.makeGauge(descriptor: Self.named("virtform_reconcile_backing_off", "Changes held back after a transient failure, until their retry."), labels: [])
        parked = registry.makeGauge(descriptor: Self.named("virtform_reconcile_parked", "Changes held back after a failure retrying cannot mend, until their manifest or observation changes."), labels: [])
        connectedHosts = registry.makeGauge(descriptor: Self.named("virtform_connected_hosts", "Hypervisor connections kept open."), labels: [])
        for cause in Self.causes { _ = detectedCounter(cause) }
    }

    func pass(_ outcome: String, duration: Duration) {
        passes[outcome]?.increment()
        passDuration.record(duration)
        lastPass.set(to: Date().timeIntervalSince1970)
    }

    func action(_ outcome: String) { actions[outcome]?.increment() }

    /// A difference that appeared (counted once while it lasts), by cause: drift repaired within
    /// a pass still shows here.
    func detected(_ cause: ChangeCause) { detectedCounter(cause).increment() }

    private func detectedCounter(_ cause: ChangeCause) -> Counter {
        registry.makeCounter(descriptor: Self.named("virtform_drift_detected_total", "Differences seen appearing, by cause (each once while it lasts)."),
                             labels: [("cause", cause.rawValue)])
    }

    /// The gauges of one plan: objects per kind and state, changes per cause, and each system's
    /// reachability and read latency.
    func record(plan: Plan, site: Site, durations: [SystemAddress: Duration]) {
        var drifted: [String: Set<String>] = [:], pending: [String: Set<String>] = [:], unknown: [String: Set<String>] = [:]
        func kind(of resource: String) -> String { String(resource.prefix { $0 != "/" }) }
        for change in plan.changes {
            var resource = change.resource
            // A VM's LUN and target count for the VM.
            if let vm = change.subjectVM, change.resource.hasPrefix("StorageVolume/") || change.resource.hasPrefix("ISCSITarget/") {
                resource = "VirtualMachine/\(vm)"
            }
            switch change.cause {
            case .outside: drifted[kind(of: resource), default: []].insert(resource)
            case .unapplied: pending[kind(of: resource), default: []].insert(resource)
            case .unknown: drifted[kind(of: resource), default: []].insert(resource)
            }
        }
        for item in plan.unknown { unknown[kind(of: item.resource), default: []].insert(item.resource) }
        let totals: [String: Int] = [
            "VirtualMachine": site.virtualMachines.count, "NetworkBinding": site.bindings.count, "StorageProject": site.projects.count,
            "Image": site.images.count, "Host": site.hosts.count,
        ]
        for kind in Self.objectKinds {
            let total = totals[kind] ?? 0
            let counts = (drifted: drifted[kind]?.count ?? 0, pending: pending[kind]?.count ?? 0, unknown: unknown[kind]?.count ?? 0)
            let inSync = max(0, total - counts.drifted - counts.pending - counts.unknown)
            for (state, value) in zip(Self.states, [inSync, counts.drifted, counts.pending, counts.unknown]) {
                registry.makeGauge(descriptor: Self.named("virtform_objects", "Declared objects by kind and state."), labels: [("kind", kind), ("state", state)]).set(to: Double(value))
            }
        }
        for cause in Self.causes {
            registry.makeGauge(descriptor: Self.named("virtform_drift", "Changes the plan holds, by cause: outside (changed outside virtform), unapplied (manifest changes not applied), unknown."), labels: [("cause", cause.rawValue)])
                .set(to: Double(plan.changes.count { $0.cause == cause }))
        }
        registry.makeGauge(descriptor: Self.named("virtform_plan_blocked", "Changes of the last plan the loop did not carry out (reported only, blocked, held)."), labels: [])
            .set(to: Double(plan.changes.count { $0.blocked != nil }))
        let unreachable = Set(plan.unreachable.map(\.system))
        for (address, duration) in durations {
            let labels = [("kind", address.kind.rawValue), ("system", address.name)]
            registry.makeGauge(descriptor: Self.named("virtform_system_up", "1 when the system was read in the last pass, 0 when it could not be."), labels: labels)
                .set(to: unreachable.contains(address) ? 0 : 1)
            registry.makeDurationHistogram(
                descriptor: MetricNameDescriptor(namespace: "virtform", metricName: "system_read_duration", unitName: "seconds",
                                                 helpText: "How long reading one system took (or failing to)."),
                labels: labels,
                buckets: [.milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(250), .seconds(1), .seconds(5), .seconds(30)])
                .record(duration)
        }
    }

    /// A metric's full name and its help text.
    static func named(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// The text a scrape gets.
    func exposition() -> [UInt8] { registry.emitToBuffer() }
}
