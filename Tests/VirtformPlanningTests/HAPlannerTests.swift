import Testing
import VirtformModel
import VirtformPlanning

/// HA restarts: a guest with `ha: restart` whose host cannot be read is started on another
/// host of its cluster only once that host is fenced (its fencing command runs first) or the
/// operator confirmed it is down; never on a failed connection alone. The copy a fenced host
/// keeps is removed when it comes back.
@Suite("HA restarts with fencing")
struct HAPlannerTests {
    /// The applied reference site with vm-1 `ha: restart`, and vm-1's host unreachable.
    static func lostHost(fence: Bool) throws -> (world: World, site: Site, host: String) {
        var site = referenceSite
        let v = site.virtualMachines.firstIndex { $0.id.description == "appl-1/vm-1" }!
        site.virtualMachines[v].ha = .restart
        var world = World.applied(site)
        let host = try #require(world.domain("appl-1/vm-1")?.host)
        if fence {
            let h = site.hosts.firstIndex { $0.name == host }!
            site.hosts[h].fenceCommand = ["/usr/bin/ipmitool", "-H", "bmc-\(host)", "chassis", "power", "off"]
        }
        world.hosts.hosts[host] = .unreachable(reason: "connection refused")
        return (world, site, host)
    }

    @Test func aFailedConnectionAloneRestartsNothing() throws {
        let (world, site, host) = try Self.lostHost(fence: false)
        let plan = world.plan(site)
        #expect(plan.change("create VirtualMachine/appl-1/vm-1") == nil)
        let unknown = try #require(plan.unknown.first { $0.resource == "VirtualMachine/appl-1/vm-1" })
        #expect(unknown.reason.contains("started elsewhere only after \(host) is fenced (spec.fence) or confirmed down (--confirm-host-down \(host))"), "\(unknown.reason)")
        // A guest without ha: restart stays unknown as before.
        #expect(!plan.changes.contains { $0.action == .fence })
    }

    @Test func aFencingCommandRunsFirstThenTheGuestStartsElsewhere() throws {
        let (world, site, host) = try Self.lostHost(fence: true)
        let plan = world.plan(site)
        let fence = try #require(plan.change("fence Host/\(host)"))
        guard case .fenceHost(let command, _) = fence.operation else { Issue.record("\(fence.operation)"); return }
        #expect(command.first == "/usr/bin/ipmitool" && fence.blocked == nil)
        let create = try #require(plan.change("create VirtualMachine/appl-1/vm-1"))
        #expect(create.host != host && create.dependsOn.contains("fence Host/\(host)"))
        #expect(create.reason.contains("HA restart: host \(host) could not be read; fenced first by its fencing command (\(host))"), "\(create.reason)")
        #expect(create.definition?.ownership.replaces == [host])
        #expect(plan.change("start VirtualMachine/appl-1/vm-1")?.dependsOn.contains(create.id) == true)
    }

    /// A new HA guest added while a host is down never ran anywhere: nothing is fenced for it.
    @Test func aGuestThatNeverRanIsNoReasonToFence() throws {
        var (world, site, host) = try Self.lostHost(fence: true)
        var fresh = site.virtualMachines.first { $0.id.description == "appl-1/vm-1" }!
        fresh.meta = ObjectMeta(name: "vm-9")
        fresh.interfaces = []
        site.virtualMachines.append(fresh)
        world.hosts.hosts[host] = .unreachable(reason: "connection refused")
        let plan = world.plan(site)
        #expect(plan.change("create VirtualMachine/appl-1/vm-9") == nil)
        #expect(plan.unknown.contains { $0.resource == "VirtualMachine/appl-1/vm-9" && $0.reason.contains("it never ran") })
        // vm-1 ran: its restart still fences the host.
        #expect(plan.change("fence Host/\(host)") != nil && plan.change("create VirtualMachine/appl-1/vm-1") != nil)
    }

    @Test func confirmingAHostTheManifestsDoNotDeclareIsAnError() throws {
        let (world, site, _) = try Self.lostHost(fence: false)
        let plan = world.plan(site, .init(confirmedDown: ["lab-h9"]))
        #expect(plan.errors.contains { $0.resource == "Host/lab-h9" && $0.message.contains("which the manifests do not declare") }, "\(plan.errors)")
    }

    @Test func theOperatorsWordIsEnoughWithoutFencing() throws {
        let (world, site, host) = try Self.lostHost(fence: false)
        let plan = world.plan(site, .init(confirmedDown: [host]))
        let create = try #require(plan.change("create VirtualMachine/appl-1/vm-1"))
        #expect(create.reason.contains("confirmed down by the operator (--confirm-host-down \(host))"), "\(create.reason)")
        #expect(create.host != host, "restarted on a host that answered")
        #expect(!plan.changes.contains { $0.action == .fence })
    }

    @Test func theCopyAFencedHostKeptIsRemovedWhenItComesBack() throws {
        var (world, site, host) = try Self.lostHost(fence: false)
        _ = site
        let before = try #require(Self.copy(on: host, in: World.applied(Self.siteWithHA())))
        world.apply(world.plan(site, .init(confirmedDown: [host])))
        // The host is back, with the guest's old copy stopped (it lost power).
        var stale = before
        stale.state = .shutoff
        stale.live = nil
        world.hosts.hosts[host] = .reachable([stale])
        let plan = world.plan(site)
        let delete = try #require(plan.change("delete VirtualMachine/appl-1/vm-1 on \(host)"))
        #expect(delete.blocked == nil && delete.reason.contains("restarted on"), "\(delete.reason)")
        #expect(plan.errors.isEmpty, "\(plan.errors)")
        world.apply(plan)
        #expect(world.plan(site).changes.filter { $0.resource == "VirtualMachine/appl-1/vm-1" }.isEmpty)
    }

    static func siteWithHA() -> Site {
        var site = referenceSite
        let v = site.virtualMachines.firstIndex { $0.id.description == "appl-1/vm-1" }!
        site.virtualMachines[v].ha = .restart
        return site
    }

    static func copy(on host: String, in world: World) -> ObservedDomain? {
        world.domains(on: host).first { $0.ownership?.vm.description == "appl-1/vm-1" }
    }
}
