import VirtformModel

extension Plan {
    /// A change that waits for a blocked change (or for one that is not in the plan) is blocked.
    public mutating func blockDependents() {
        var position: [String: Int] = [:]
        for (i, change) in changes.enumerated() { position[change.id] = i }
        var changed = true
        while changed {
            changed = false
            for i in changes.indices where changes[i].blocked == nil {
                for dependency in changes[i].dependsOn {
                    guard let j = position[dependency] else {
                        changes[i].block("waits for \(dependency), which is not in the plan")
                        changed = true
                        break
                    }
                    if changes[j].blocked != nil {
                        changes[i].block("waits for \(dependency), which is not applied")
                        changed = true
                        break
                    }
                }
            }
        }
    }
}

/// What the long-running reconcile carries out of a plan by itself: the plan with every other
/// change blocked, each with its reason. The loop applies exactly the result's runnable changes,
/// so what it does is a plan it can print.
///
/// - A change's mode is its VM's `spec.reconcile`, else the site's (`observe` by default).
///   Changes that serve no VM (projects, images, snapshots) take the site's.
/// - `observe` carries out nothing; `repair` what undoes a change made outside virtform (cause
///   `outside`, or `unknown`: the marks cannot tell it from one); `full` everything runnable.
/// - Fencing a host waits until the loop has seen it unreachable long enough (`fenceable`), and
///   runs only when a guest it may restart waits for it.
/// - Objects the loop holds back (backing off after a transient error, or parked after a
///   terminal one) are blocked with that reason, `held` by change id.
public struct ReconcilePolicy: Sendable {
    public var siteMode: ReconcileMode
    public var vmModes: [VMID: ReconcileMode]
    /// Hosts whose fencing may run now.
    public var fenceable: Set<String>
    /// Why each other host that cannot be read is not fenced yet.
    public var notFenceable: [String: String]
    /// Change ids held back by the loop, with why.
    public var held: [String: String]

    public init(site: Site, fenceable: Set<String> = [], notFenceable: [String: String] = [:], held: [String: String] = [:]) {
        siteMode = site.declarations.first?.reconcile ?? .observe
        var modes: [VMID: ReconcileMode] = [:]
        for vm in site.virtualMachines { if let mode = vm.reconcile { modes[vm.id] = mode } }
        vmModes = modes
        self.fenceable = fenceable
        self.notFenceable = notFenceable
        self.held = held
    }

    /// The mode that decides `change`.
    public func mode(for change: Change) -> ReconcileMode {
        change.subjectVM.flatMap { vmModes[$0] } ?? siteMode
    }

    /// Whether any declared object may be changed by the loop at all.
    public var mayChangeAnything: Bool { siteMode > .observe || vmModes.values.contains { $0 > .observe } }

    /// `plan` with what the loop does not carry out blocked.
    public func select(_ plan: Plan) -> Plan {
        var plan = plan
        for i in plan.changes.indices where plan.changes[i].blocked == nil {
            let change = plan.changes[i]
            if let why = held[change.id] {
                plan.changes[i].block(why)
                continue
            }
            if change.action == .fence {
                let host = change.system.name
                if !fenceable.contains(host) {
                    plan.changes[i].block("reconcile: host \(host) " + (notFenceable[host] ?? "has not been unreachable long enough to be fenced"))
                }
                continue  // kept only while a guest the loop restarts waits for it (below)
            }
            switch mode(for: change) {
            case .observe:
                plan.changes[i].block("reconcile: observe (reported only; spec.reconcile repair or full lets the loop act)")
            case .repair where change.cause == .unapplied:
                plan.changes[i].block("reconcile: repair undoes only changes made outside virtform; this manifest change waits for apply (or spec.reconcile: full)")
            case .repair, .full:
                break
            }
        }
        plan.blockDependents()
        // A host is fenced only for a guest the loop restarts.
        let needed = Set(plan.changes.filter { $0.blocked == nil }.flatMap(\.dependsOn))
        for i in plan.changes.indices where plan.changes[i].action == .fence && plan.changes[i].blocked == nil && !needed.contains(plan.changes[i].id) {
            plan.changes[i].block("reconcile: no guest the loop may restart waits for it")
        }
        plan.summarize()
        return plan
    }
}
