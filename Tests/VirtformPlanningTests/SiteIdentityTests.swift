import Foundation
import Testing
import VirtformManifests
import VirtformModel
import VirtformPlanning

/// A second site on the reference site's hosts, pool and DHCP server: its own name, projects,
/// master, VM and reservation.
let secondSite: Site = {
    let text = """
        apiVersion: virtform.io/v1alpha1
        kind: Site
        metadata: {name: lab-b}
        spec: {}
        ---
        apiVersion: virtform.io/v1alpha1
        kind: StoragePool
        metadata: {name: lab-pool}
        spec:
          driver: btrfs
          path: /var/lib/virtform-lab/pool
          export: {driver: tgt, portal: "127.0.0.1:3260", iqnPrefix: iqn.2026-11.io.virtform.lab}
        ---
        apiVersion: virtform.io/v1alpha1
        kind: StorageProject
        metadata: {name: b-masters}
        spec: {pool: lab-pool}
        ---
        apiVersion: virtform.io/v1alpha1
        kind: StorageProject
        metadata: {name: b-apps}
        spec: {pool: lab-pool}
        ---
        apiVersion: virtform.io/v1alpha1
        kind: Image
        metadata: {name: base}
        spec: {project: b-masters, size: 64MiB, snapshots: [v1]}
        ---
        apiVersion: virtform.io/v1alpha1
        kind: VirtualMachine
        metadata: {name: web-1}
        spec:
          project: b-apps
          memory: 64MiB
          vcpus: 1
          disk: {from: b-masters/base@v1}
          interfaces: [{network: public}]
          placement: {host: lab-h1}
          power: running
        ---
        apiVersion: virtform.io/v1alpha1
        kind: NetworkBinding
        metadata: {name: b-web-1-public}
        spec: {vm: b-apps/web-1, interface: public, address: 192.168.76.90, hostname: b-web-1}
        """
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("virtform-site-b-\(getpid())")
    try! FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let file = directory.appendingPathComponent("site-b.yaml")
    try! text.write(to: file, atomically: true, encoding: .utf8)
    let manifests = repositoryRoot.appendingPathComponent("manifests")
    let result = ManifestLoader.load(paths: [manifests.appendingPathComponent("hosts.yaml").path, manifests.appendingPathComponent("cluster.yaml").path,
                                             manifests.appendingPathComponent("network.yaml").path, file.path])
    precondition(result.isValid, "site B must be valid: \(result.diagnostics)")
    return result.site
}()

@Suite("Site identity")
struct SiteIdentityTests {
    /// The reference site and site B applied one after the other to the same systems.
    static func bothApplied() -> World {
        var world = World.applied()
        world.site = secondSite.name
        world.apply(world.plan(secondSite))
        world.site = referenceSite.name
        return world
    }

    @Test func twoSitesSideBySidePlanCleanWithoutCrossTalk() {
        let world = Self.bothApplied()
        let a = world.plan(referenceSite, .init(allowDestroy: true))
        #expect(a.isClean, "\(a.changes.map(\.id)) \(a.errors)")
        #expect(Set(a.foreign.map(\.resource)) == ["VirtualMachine/b-apps/web-1", "StorageProject/b-apps", "StorageProject/b-masters",
                                                    "Image/b-masters/base", "Snapshot/b-masters/base@v1", "StorageVolume/b-apps/web-1",
                                                    "ISCSITarget/b-apps/web-1", "NetworkBinding/b-web-1-public"])
        #expect(a.foreign.allSatisfy { $0.site == "lab-b" })
        var b = world
        b.site = secondSite.name
        let planB = b.plan(secondSite, .init(allowDestroy: true))
        #expect(planB.isClean, "\(planB.changes.map(\.id)) \(planB.errors)")
        #expect(planB.foreign.contains { $0.resource == "VirtualMachine/appl-1/vm-1" && $0.site == "lab" })
    }

    @Test func aSiteThatDropsEverythingDeletesOnlyItsOwn() {
        let world = Self.bothApplied()
        var empty = secondSite
        empty.virtualMachines = []
        empty.bindings = []
        empty.images = []
        empty.projects = []
        let plan = world.plan(empty, .init(allowDestroy: true))
        #expect(!plan.changes.isEmpty)
        #expect(plan.changes.allSatisfy { $0.action == .delete })
        #expect(plan.changes.allSatisfy { $0.resource.contains("b-") }, "\(plan.changes.map(\.id))")
        #expect(plan.blocked.isEmpty, "\(plan.blocked.map { "\($0.id): \($0.reason)" })")
    }

    @Test func aNameAnotherSiteHoldsIsAnError() throws {
        var world = Self.bothApplied()
        // Site B's domain takes the name a VM of the reference site wants.
        let domain = try #require(world.domain("b-apps/web-1"))
        var taken = domain
        taken.name = "appl-1:vm-9"
        world.hosts.hosts[domain.host] = .reachable(world.domains(on: domain.host) + [taken])
        var site = referenceSite
        var vm = site.virtualMachines[0]
        vm.meta.name = "vm-9"
        vm.disk = nil
        vm.interfaces = []
        site.virtualMachines.append(vm)
        let plan = world.plan(site)
        #expect(plan.errors.contains { $0.resource == "VirtualMachine/appl-1/vm-9" && $0.message.contains("that site lab-b owns") }, "\(plan.errors)")
    }

    /// `virtform import`'s annotation takes the unmarked domain of the VM's name on the host it
    /// names, and nothing else: not without the annotation, not on another host, never another site's.
    @Test func anImportedVMTakesOnlyItsUnmarkedDomainOnItsHost() throws {
        var world = World.applied()
        let domain = try #require(world.domain("appl-1/vm-1"))
        world.hosts.hosts[domain.host] = .reachable(world.domains(on: domain.host).map { seen in
            var seen = seen
            if seen.name == domain.name { seen.ownership = nil }
            return seen
        })
        var site = referenceSite
        let i = try #require(site.virtualMachines.firstIndex { $0.id.description == "appl-1/vm-1" })
        var plan = world.plan(site)
        #expect(!plan.changes.contains { if case .importDomain = $0.operation { true } else { false } }, "no annotation, no import")
        site.virtualMachines[i].meta.annotations[Import.annotation] = "not-\(domain.host)"
        plan = world.plan(site)
        #expect(!plan.changes.contains { if case .importDomain = $0.operation { true } else { false } }, "another host's annotation")
        site.virtualMachines[i].meta.annotations[Import.annotation] = domain.host
        plan = world.plan(site)
        let update = try #require(plan.change("update VirtualMachine/appl-1/vm-1"), "\(plan.changes.map(\.id))")
        guard case .importDomain(let spec, let ownership) = update.operation else { Issue.record("\(update.operation)"); return }
        #expect(spec.name == domain.name && ownership.site == referenceSite.name && update.fields.isEmpty && update.cause == .unapplied)
        #expect(update.reason == "import: the domain is marked as site \(referenceSite.name)'s")
        world.apply(plan)
        #expect(world.plan(site).isClean, "marked once")

        // Another site's domain of the same name stays that site's, annotation or not.
        var both = Self.bothApplied()
        let theirs = try #require(both.domain("b-apps/web-1"))
        var taken = theirs
        taken.name = "appl-1:vm-9"
        both.hosts.hosts[theirs.host] = .reachable(both.domains(on: theirs.host) + [taken])
        var wanting = referenceSite
        var vm = wanting.virtualMachines[0]
        vm.meta.name = "vm-9"
        vm.meta.annotations[Import.annotation] = theirs.host
        vm.disk = nil
        vm.interfaces = []
        wanting.virtualMachines.append(vm)
        let refused = both.plan(wanting)
        #expect(refused.errors.contains { $0.resource == "VirtualMachine/appl-1/vm-9" && $0.message.contains("that site lab-b owns") }, "\(refused.errors)")
    }

    @Test func marksWithoutASiteAreAdoptedByTheSiteThatDeclaresThem() throws {
        var world = World.applied()
        // What an earlier virtform left: marks that name no site.
        for (host, observation) in world.hosts.hosts {
            guard case .reachable(let list) = observation else { continue }
            world.hosts.hosts[host] = .reachable(list.map { domain in
                var domain = domain
                domain.ownership?.site = nil
                return domain
            })
        }
        world.reservations = world.reservations.map { var r = $0; r.owner?.site = nil; return r }
        for (name, var project) in world.projects {
            func unsited(_ ownership: StorageOwnership) -> StorageOwnership {
                guard var mark = ownership.mark else { return ownership }
                mark.site = nil
                return .owned(mark)
            }
            project.ownership = unsited(project.ownership)
            for i in project.volumes.indices { project.volumes[i].ownership = unsited(project.volumes[i].ownership) }
            for i in project.snapshots.indices { project.snapshots[i].ownership = unsited(project.snapshots[i].ownership) }
            world.projects[name] = project
        }
        world.targets = world.targets.map { var t = $0; t.site = nil; return t }
        // One more such domain, of a VM nobody declares: not adopted, not deleted.
        let template = try #require(world.domain("appl-1/vm-1"))
        var stray = template
        stray.name = "old:vm"
        stray.ownership = Ownership(vm: VMID(project: "old", name: "vm"), digest: "x", deletionProtection: false)
        world.hosts.hosts[template.host] = .reachable(world.domains(on: template.host) + [stray])

        let plan = world.plan(referenceSite, .init(allowDestroy: true))
        let updates = plan.changes.filter { $0.resource.hasPrefix("VirtualMachine/") }
        #expect(updates.count == referenceSite.virtualMachines.count && updates.allSatisfy { $0.action == .update })
        #expect(updates.allSatisfy { $0.reason.hasPrefix("adopt: its mark names no site") })
        #expect(plan.warnings.contains { $0.contains("adopted by site lab") })
        let reservations = plan.changes.filter { $0.system.kind == .dhcpServer }
        #expect(reservations.count == referenceSite.bindings.count && reservations.allSatisfy { $0.action == .update })
        #expect(plan.foreign.map(\.resource) == ["VirtualMachine/old/vm"] && plan.foreign[0].site == nil)
        #expect(!plan.changes.contains { $0.action == .delete })
        // Storage: one change per pool rewrites every mark (targets follow their LUNs).
        let adoption = try #require(plan.change("update StoragePool/lab-pool"))
        guard case .adoptMarks(let marks) = adoption.operation else { Issue.record("\(adoption.operation)"); return }
        let objects = world.projects.values.reduce(0) { $0 + 1 + $1.volumes.count + $1.snapshots.count }
        #expect(marks.count == objects && marks.allSatisfy { $0.site == nil })
        #expect(plan.warnings.contains { $0.contains("storage object") && $0.contains("adopted by site lab") })
        #expect(plan.foreign.allSatisfy { !$0.resource.hasPrefix("ISCSITarget/") })

        world.apply(plan)
        let again = world.plan(referenceSite, .init(allowDestroy: true))
        #expect(again.changes.isEmpty, "\(again.changes.map(\.id))")
    }
}
