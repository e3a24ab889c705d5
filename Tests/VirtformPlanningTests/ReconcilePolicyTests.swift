import Testing
import VirtformModel
import VirtformPlanning

/// What the reconcile loop carries out of a plan by itself: `ReconcilePolicy` blocks the rest,
/// each with its reason, so the loop applies a plan it could print.
@Suite("Reconcile policy")
struct ReconcilePolicyTests {
    /// The applied reference site with vm-1 stopped by hand (outside) and vm-2's memory raised in
    /// the manifests (unapplied).
    static func drifted(mode: ReconcileMode?, vm1: ReconcileMode? = nil) -> (Site, Plan) {
        var site = referenceSite
        var world = World.applied(site)
        world.changeObserved("appl-1/vm-1") { domain in
            domain.state = .shutoff
            domain.live = nil
        }
        site.declarations = [SiteDeclaration(meta: ObjectMeta(name: site.name), reconcile: mode, provenance: .synthetic("site"))]
        let v2 = site.virtualMachines.firstIndex { $0.id.description == "appl-1/vm-2" }!
        site.virtualMachines[v2].memory = .mebibytes(768)
        if let vm1 {
            let v1 = site.virtualMachines.firstIndex { $0.id.description == "appl-1/vm-1" }!
            site.virtualMachines[v1].reconcile = vm1
        }
        return (site, world.plan(site))
    }

    @Test func observeCarriesOutNothing() throws {
        let (site, plan) = Self.drifted(mode: nil)
        let start = try #require(plan.change("start VirtualMachine/appl-1/vm-1"))
        #expect(start.cause == .outside && start.blocked == nil)
        let selected = ReconcilePolicy(site: site).select(plan)
        #expect(selected.runnable.isEmpty)
        #expect(selected.change(start.id)?.blocked?.contains("observe") == true)
        #expect(selected.changes.count == plan.changes.count, "every difference is still reported")
    }

    @Test func repairUndoesOutsideChangesOnly() throws {
        let (site, plan) = Self.drifted(mode: .repair)
        let selected = ReconcilePolicy(site: site).select(plan)
        #expect(selected.runnable.map(\.id).contains("start VirtualMachine/appl-1/vm-1"))
        let update = try #require(selected.changes.first { $0.resource == "VirtualMachine/appl-1/vm-2" })
        #expect(update.cause == .unapplied && update.blocked?.contains("waits for apply") == true, "\(update.blocked ?? "")")
    }

    @Test func fullCarriesOutWhatApplyWould() {
        let (site, plan) = Self.drifted(mode: .full)
        let selected = ReconcilePolicy(site: site).select(plan)
        #expect(selected.runnable.map(\.id) == plan.runnable.map(\.id))
    }

    @Test func aVMsOwnModeOverridesTheSites() {
        let (site, plan) = Self.drifted(mode: .full, vm1: .observe)
        let selected = ReconcilePolicy(site: site).select(plan)
        #expect(selected.change("start VirtualMachine/appl-1/vm-1")?.blocked?.contains("observe") == true)
        #expect(selected.runnable.contains { $0.resource == "VirtualMachine/appl-1/vm-2" })
    }

    @Test func heldChangesAndTheirDependentsWait() throws {
        let (site, plan) = Self.drifted(mode: .repair)
        let selected = ReconcilePolicy(site: site, held: ["start VirtualMachine/appl-1/vm-1": "backing off"]).select(plan)
        #expect(selected.change("start VirtualMachine/appl-1/vm-1")?.blocked == "backing off")
        // An HA restart's start waits for its define; holding the define holds the start.
        let (world, lost, host) = try HAPlannerTests.lostHost(fence: true)
        var repaired = lost
        repaired.declarations = [SiteDeclaration(meta: ObjectMeta(name: lost.name), reconcile: .repair, provenance: .synthetic("site"))]
        let ha = ReconcilePolicy(site: repaired, fenceable: [host], held: ["create VirtualMachine/appl-1/vm-1": "parked"]).select(world.plan(repaired))
        #expect(ha.change("start VirtualMachine/appl-1/vm-1")?.blocked?.contains("waits for create VirtualMachine/appl-1/vm-1") == true)
        #expect(ha.change("fence Host/\(host)")?.blocked != nil, "nothing the loop restarts waits for the fence now")
    }

    /// An HA restart under repair: its fence waits until the loop's threshold is met, then the
    /// fence, the define and the start all run.
    @Test func fencingWaitsForTheLoopsThreshold() throws {
        let (world, site, host) = try HAPlannerTests.lostHost(fence: true)
        var repaired = site
        repaired.declarations = [SiteDeclaration(meta: ObjectMeta(name: site.name), reconcile: .repair, provenance: .synthetic("site"))]
        let plan = world.plan(repaired)
        let early = ReconcilePolicy(site: repaired, notFenceable: [host: "has failed 1 of 3 readings"]).select(plan)
        #expect(early.change("fence Host/\(host)")?.blocked?.contains("1 of 3") == true)
        #expect(early.change("create VirtualMachine/appl-1/vm-1")?.blocked != nil)
        #expect(early.change("start VirtualMachine/appl-1/vm-1")?.blocked != nil)
        let due = ReconcilePolicy(site: repaired, fenceable: [host]).select(plan)
        for id in ["fence Host/\(host)", "create VirtualMachine/appl-1/vm-1", "start VirtualMachine/appl-1/vm-1"] {
            #expect(due.change(id)?.blocked == nil, "\(id): \(due.change(id)?.blocked ?? "")")
        }
        // Under observe nothing restarts, so nothing is fenced either.
        let observed = ReconcilePolicy(site: site, fenceable: [host]).select(plan)
        #expect(observed.change("fence Host/\(host)")?.blocked?.contains("no guest the loop may restart") == true)
    }
}
