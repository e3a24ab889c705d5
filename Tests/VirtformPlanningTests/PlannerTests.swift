import Foundation
import Testing
import VirtformManifests
import VirtformModel
@testable import VirtformPlanning

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// The reference site from manifests/.
let referenceSite: Site = {
    let result = ManifestLoader.load(paths: [repositoryRoot.appendingPathComponent("manifests").path])
    precondition(result.isValid, "manifests/ must be valid: \(result.diagnostics)")
    return result.site
}()

let labHosts = ["lab-h1", "lab-h2", "lab-h3"]

func emptyLab(except unreachable: [String: String] = [:]) -> ObservedSite {
    ObservedSite(hosts: Dictionary(uniqueKeysWithValues: labHosts.map { host in
        (host, unreachable[host].map { HostObservation.unreachable(reason: $0) } ?? .reachable([]))
    }))
}

/// What the hypervisors look like after a plan was applied completely.
func applied(_ plan: Plan, to site: Site, on observed: ObservedSite) -> ObservedSite {
    var domains: [String: [ObservedDomain]] = [:]
    for domain in observed.domains { domains[domain.host, default: []].append(domain) }
    let protection = Dictionary(uniqueKeysWithValues: site.virtualMachines.map { ($0.id.domainName, $0.deletionProtection) })
    for change in plan.changes where change.action == .create && change.system.kind == .host {
        let spec = change.after!.domain!
        let started = plan.changes.contains { $0.action == .start && $0.resource == change.resource }
        domains[change.host, default: []].append(ObservedDomain(
            host: change.host, name: spec.name, uuid: "uuid-\(spec.name)", state: started ? .running : .shutoff, persistent: true,
            spec: spec, ownership: Ownership(vm: VMID(parsing: spec.name)!, digest: spec.digest,
                                             deletionProtection: protection[spec.name] ?? false, site: site.name)))
    }
    var hosts = observed.hosts
    for (host, list) in domains { hosts[host] = .reachable(list) }
    return ObservedSite(hosts: hosts)
}

@Suite("Planner")
struct PlannerTests {
    @Test func fromScratchEveryVMIsCreatedOnAHostItMayUse() throws {
        let plan = Planner(site: referenceSite, observed: emptyLab()).plan()
        #expect(plan.errors.isEmpty)
        #expect(plan.count(.create) == referenceSite.virtualMachines.count)
        #expect(plan.count(.start) == referenceSite.virtualMachines.filter { $0.power == .running }.count)
        let index = SiteIndex(referenceSite)
        for change in plan.changes where change.action == .create {
            let vm = try #require(referenceSite.virtualMachines.first { "VirtualMachine/\($0.id)" == change.resource })
            #expect(index.candidateHosts(for: vm).map(\.name).contains(change.host), "\(change.resource) on \(change.host)")
        }
        let db = try #require(plan.changes.first { $0.resource == "VirtualMachine/appl-2/db-1" })
        #expect(db.host == "lab-h3")
    }

    @Test func appliedSitePlansNoChanges() {
        let first = Planner(site: referenceSite, observed: emptyLab()).plan()
        let second = Planner(site: referenceSite, observed: applied(first, to: referenceSite, on: emptyLab())).plan()
        #expect(second.isEmpty, "\(second.changes)")
        #expect(second.errors.isEmpty)
    }

    @Test func changedMemoryIsAnUpdate() throws {
        let observed = applied(Planner(site: referenceSite, observed: emptyLab()).plan(), to: referenceSite, on: emptyLab())
        var site = referenceSite
        let i = try #require(site.virtualMachines.firstIndex { $0.id == VMID(project: "appl-1", name: "vm-1") })
        site.virtualMachines[i].memory = .mebibytes(128)
        let plan = Planner(site: site, observed: observed).plan()
        #expect(plan.changes.map(\.id) == ["update VirtualMachine/appl-1/vm-1", "restart VirtualMachine/appl-1/vm-1"])
        let change = try #require(plan.changes.first)
        #expect(change.action == .update)
        #expect(change.fields == [FieldChange(field: "memory", before: "64MiB", after: "128MiB", effect: .restart)])
    }

    @Test func unreachableHostMakesItsGuestsUnknownNotAbsent() {
        let first = Planner(site: referenceSite, observed: emptyLab()).plan()
        var observed = applied(first, to: referenceSite, on: emptyLab())
        observed.hosts["lab-h3"] = .unreachable(reason: "connection refused")
        let plan = Planner(site: referenceSite, observed: observed).plan()
        #expect(plan.unreachable == [Plan.UnreachableSystem(system: .host("lab-h3"), reason: "connection refused")])
        #expect(!plan.changes.contains { $0.host == "lab-h3" })
        #expect(!plan.changes.contains { $0.action == .create }, "nothing may be recreated elsewhere: \(plan.changes)")
        #expect(plan.unknown.map(\.resource).contains("VirtualMachine/appl-2/db-1"))
    }

    @Test func unreachableHostStillLetsOtherHostsBePlanned() {
        let plan = Planner(site: referenceSite, observed: emptyLab(except: ["lab-h3": "no route"])).plan()
        #expect(plan.unknown.map(\.resource).contains("VirtualMachine/appl-2/db-1"))
        #expect(!plan.changes.contains { $0.host == "lab-h3" })
    }

    @Test func unmanagedDomainsAreLeftAloneAndListedOnlyWhenAsked() {
        let stranger = ObservedDomain(host: "lab-h1", name: "legacy", uuid: "u1", state: .running, persistent: true,
                                      spec: DomainSpec(name: "legacy", domainType: "qemu", osType: "hvm", memoryKiB: 65536, vcpus: 1,
                                                       interfaces: [], disks: []), ownership: nil)
        var observed = applied(Planner(site: referenceSite, observed: emptyLab()).plan(), to: referenceSite, on: emptyLab())
        if case .reachable(var list) = observed.hosts["lab-h1"]! { list.append(stranger); observed.hosts["lab-h1"] = .reachable(list) }
        #expect(Planner(site: referenceSite, observed: observed).plan().isEmpty)
        let shown = Planner(site: referenceSite, observed: observed, options: .init(showUnmanaged: true)).plan()
        #expect(shown.unmanaged == [Plan.UnmanagedDomain(host: "lab-h1", name: "legacy", state: "running")])
        #expect(shown.isEmpty)
    }

    @Test func unmanagedDomainWithTheSameNameIsAnError() {
        let squatter = ObservedDomain(host: "lab-h2", name: "appl-1:vm-1", uuid: "u1", state: .shutoff, persistent: true,
                                      spec: DomainSpec(name: "appl-1:vm-1", domainType: "qemu", osType: "hvm", memoryKiB: 65536,
                                                       vcpus: 1, interfaces: [], disks: []), ownership: nil)
        var observed = emptyLab()
        observed.hosts["lab-h2"] = .reachable([squatter])
        let plan = Planner(site: referenceSite, observed: observed).plan()
        #expect(plan.errors.contains { $0.resource == "VirtualMachine/appl-1/vm-1" && $0.message.contains("virtform does not own") })
        #expect(!plan.changes.contains { $0.resource == "VirtualMachine/appl-1/vm-1" })
    }

    @Test func deletionsAreGated() throws {
        let observed = applied(Planner(site: referenceSite, observed: emptyLab()).plan(), to: referenceSite, on: emptyLab())
        var site = referenceSite
        site.virtualMachines.removeAll { $0.name == "spare-1" }
        let gated = Planner(site: site, observed: observed).plan()
        let delete = try #require(gated.changes.first { $0.action == .delete })
        #expect(delete.resource == "VirtualMachine/appl-2/spare-1")
        #expect(delete.blocked == "deletions need --allow-destroy")
        let allowed = Planner(site: site, observed: observed, options: .init(allowDestroy: true)).plan()
        #expect(allowed.changes.first { $0.action == .delete }?.blocked == nil)
    }

    @Test func aVMFoundOnTwoHostsIsAnErrorAndBothCopiesOfADepartedVMAreDeleted() throws {
        let observed = applied(Planner(site: referenceSite, observed: emptyLab()).plan(), to: referenceSite, on: emptyLab())
        // Copy two managed domains onto another host, as a stale copy left by hand would be.
        var hosts = observed.hosts
        var copies: [String] = []
        for name in ["appl-2/spare-1", "appl-2/db-1"] {
            let original = try #require(observed.domains.first { $0.ownership?.vm.description == name })
            let other = try #require(labHosts.first { $0 != original.host })
            guard case .reachable(var list) = hosts[other] else { Issue.record("\(other) unreadable"); return }
            var copy = original
            copy.host = other
            list.append(copy)
            hosts[other] = .reachable(list)
            copies.append([original.host, other].sorted().joined(separator: ", "))
        }
        var site = referenceSite
        site.virtualMachines.removeAll { $0.name == "spare-1" }
        let plan = Planner(site: site, observed: ObservedSite(hosts: hosts), options: .init(allowDestroy: true)).plan()
        let error = try #require(plan.errors.first)
        #expect(plan.errors.count == 1)
        #expect(error.resource == "VirtualMachine/appl-2/db-1")
        #expect(error.message.contains("defined on several hosts (\(copies[1]))"))
        let deletes = plan.changes.filter { $0.action == .delete }
        #expect(deletes.map(\.resource) == ["VirtualMachine/appl-2/spare-1", "VirtualMachine/appl-2/spare-1"])
        #expect(deletes.map(\.host).sorted().joined(separator: ", ") == copies[0])
        #expect(!plan.changes.contains { $0.resource == "VirtualMachine/appl-2/db-1" })
    }

    @Test func protectedDomainsAreNotDeletedEvenWhenAllowed() throws {
        var site = referenceSite
        let i = try #require(site.virtualMachines.firstIndex { $0.name == "spare-1" })
        site.virtualMachines[i].deletionProtection = true
        let observed = applied(Planner(site: site, observed: emptyLab()).plan(), to: site, on: emptyLab())
        site.virtualMachines.remove(at: i)
        let plan = Planner(site: site, observed: observed, options: .init(allowDestroy: true)).plan()
        #expect(plan.changes.first { $0.action == .delete }?.blocked?.contains("deletion protection is on") == true)
    }

    @Test func placementChangeOfARunningGuestIsALiveMigration() throws {
        let observed = applied(Planner(site: referenceSite, observed: emptyLab()).plan(), to: referenceSite, on: emptyLab())
        var site = referenceSite
        let i = try #require(site.virtualMachines.firstIndex { $0.name == "db-1" })
        site.virtualMachines[i].placement = .host("lab-h1")
        let plan = Planner(site: site, observed: observed).plan()
        let migrate = try #require(plan.changes.first { $0.action == .migrate })
        #expect(migrate.host == "lab-h3")
        #expect(migrate.destination == "lab-h1")
        #expect(migrate.blocked == nil && migrate.changeClass == .liveMigration)
        guard case .migrateDomain(let name, let request) = migrate.operation else { Issue.record("\(migrate.operation)"); return }
        #expect(name == "appl-2:db-1" && request.live && request.destination == "lab-h1")
        #expect(request.uri == "tcp://127.0.0.1", "the destination's migrationAddress")
        #expect(request.uuid == "uuid-appl-2:db-1", "the UUID stays")
        #expect(request.ownership.host == "lab-h1" && request.ownership.power == .running)
        // 64 MiB of memory: one GiB's worth of the cluster's default 150 s per GiB; its limits are the cluster's.
        #expect(request.completionSeconds == 150 && request.noProgressSeconds == 150)
        #expect(request.maxPerHost == 2 && request.maxInGroup == 5 && request.limitGroup == "lab")
        #expect(!plan.changes.contains { $0.action == .create })
    }

    @Test func stoppedAndStartedGuestsArePowerChanges() throws {
        var observed = applied(Planner(site: referenceSite, observed: emptyLab()).plan(), to: referenceSite, on: emptyLab())
        for (host, observation) in observed.hosts {
            if case .reachable(let list) = observation {
                observed.hosts[host] = .reachable(list.map { var d = $0; d.state = d.state == .running ? .shutoff : .running; return d })
            }
        }
        let plan = Planner(site: referenceSite, observed: observed).plan()
        #expect(plan.count(.start) == referenceSite.virtualMachines.filter { $0.power == .running }.count)
        #expect(plan.count(.stop) == referenceSite.virtualMachines.filter { $0.power == .stopped }.count)
    }

    @Test func packFillsAHostBeforeTheNext() {
        // spare-1 uses cluster "lab" (pack, 4 per host) without a selector: it joins the first host with room.
        let plan = Planner(site: referenceSite, observed: emptyLab()).plan()
        #expect(plan.changes.first { $0.resource == "VirtualMachine/appl-2/spare-1" }?.host == "lab-h1")
    }

    @Test func derivedMACsAreStableAndLocallyAdministered() {
        let a = MACAddress.derived(for: VMID(project: "appl-1", name: "vm-1"), interface: "public")
        #expect(a == MACAddress.derived(for: VMID(project: "appl-1", name: "vm-1"), interface: "public"))
        #expect(a != MACAddress.derived(for: VMID(project: "appl-1", name: "vm-1"), interface: "backend"))
        #expect(a.isLocallyAdministered && !a.isMulticast)
        #expect(a.description == "02:4c:29:b8:1c:01", "changing the derivation would change every guest's MAC")
    }
}

@Suite("Plan rendering")
struct PlanRenderingTests {
    /// Every kind of change: an update, deletions of a VM with its LUN, target and
    /// reservations, a lost LUN, an unreachable host with its unknown guests, an unused image.
    static func mixedPlan() -> Plan {
        var world = World.applied()
        world.hosts.hosts["lab-h3"] = .unreachable(reason: "connection refused")
        world.projects["appl-2"]?.volumes.removeAll { $0.name == "spare-1" }
        world.apply(Change(action: .create, resource: "Image/masters/old", system: .pool(World.pool),
                           operation: .createImage(project: "masters", name: "old", size: 1 << 20, source: nil), reason: "test"))
        var site = SitePlannerTests.without("appl-1/vm-2")
        site.virtualMachines[0].memory = .mebibytes(32)
        return world.plan(site, .init(allowDestroy: true))
    }

    @Test("golden files", arguments: [("from-scratch", false), ("mixed", true)])
    func golden(name: String, mixed: Bool) throws {
        let plan = mixed ? Self.mixedPlan() : World().plan()
        try expectGolden(PlanRenderer.text(plan), "\(name).txt")
        try expectGolden(PlanRenderer.json(plan), "\(name).json")
        try expectGolden(PlanMarkdown.render(plan), "\(name).md")
        try expectGolden(GitLabReport.render(plan), "\(name).gitlab.json")
    }

    /// A comment stays within GitHub's limit: whole sections go from the end, and the last line
    /// says so.
    @Test func markdownIsCutAtTheLimitWithANote() throws {
        let plan = World().plan()
        let whole = PlanMarkdown.render(plan)
        #expect(whole.count > 2_000 && !whole.contains("cut to stay within the limit"))
        let cut = PlanMarkdown.render(plan, limit: 2_000)
        #expect(cut.count <= 2_000)
        #expect(cut.contains("more section") && cut.contains("cut to stay within the limit"), "\(cut)")
        #expect(cut.hasPrefix(whole.prefix(200)), "the head (warnings, counts) is kept")
        // GitLab's report: exactly its three keys.
        let report = try JSONSerialization.jsonObject(with: Data(GitLabReport.render(plan).utf8)) as? [String: Int]
        #expect(report.map { Set($0.keys) } == ["create", "update", "delete"])
        #expect(report?["create"] == plan.summary.create && report?["update"] == plan.summary.start)
    }

    /// A value cannot break the table or smuggle HTML into the comment.
    @Test func markdownCellsAreEscaped() {
        #expect(PlanMarkdown.cell("a|b<script>\nx") == "a\\|b&lt;script>\\u{a}x")
    }

    @Test func jsonRoundTrips() throws {
        let plan = Self.mixedPlan()
        let decoded = try PlanRenderer.decode(Data(PlanRenderer.json(plan).utf8))
        #expect(PlanRenderer.json(decoded) == PlanRenderer.json(plan))
    }

    @Test func colourOnlyWhenAsked() {
        let plan = Self.mixedPlan()
        #expect(!PlanRenderer.text(plan).contains("\u{1B}["))
        #expect(PlanRenderer.text(plan, color: true).contains("\u{1B}[31m"))
    }
}

/// Compares with `Golden/NAME`; `VIRTFORM_RECORD_GOLDEN=1 swift test` re-records.
/// The checkout's own path is replaced by `<repo>` so the files do not depend on where the
/// repository was cloned.
func expectGolden(_ raw: String, _ name: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
    let actual = raw.replacingOccurrences(of: repositoryRoot.path, with: "<repo>")
    let url = repositoryRoot.appendingPathComponent("Tests/VirtformPlanningTests/Golden/\(name)")
    if ProcessInfo.processInfo.environment["VIRTFORM_RECORD_GOLDEN"] == "1" {
        try actual.write(to: url, atomically: true, encoding: .utf8)
        return
    }
    let expected = try String(contentsOf: url, encoding: .utf8)
    #expect(actual == expected, "\(name) differs; re-record with VIRTFORM_RECORD_GOLDEN=1 if the change is intended",
            sourceLocation: sourceLocation)
}
