import ArgumentParser
import Libvirt
import VirtformHypervisor
import VirtformManifests
import VirtformModel
import VirtformPlanning

/// The manifest paths every site command takes.
struct SiteOptions: ParsableArguments {
    @Argument(help: "Manifest files or directories (one site). Default: manifests")
    var paths: [String] = []

    /// Loads and validates the site; on errors prints them and exits 1, as `validate` would.
    func load() throws -> Site {
        let result = ManifestLoader.load(paths: paths.isEmpty ? ["manifests"] : paths)
        if !result.isValid {
            let output = Output.current
            output.writeError(DiagnosticReport.text(result, output: output))
            throw ExitCode(1)
        }
        return result.site
    }
}

/// Observation and planning, shared by `plan`, `drift` and `apply`: the hypervisors, the
/// storage pools and the DHCP servers are read at the same time, then diffed into one plan.
struct Reconciliation {
    var site: Site
    var observation: SiteObserver.Result
    var plan: Plan
    /// The storage and DHCP parts, for apply's action graph.
    var sides: [SidePlan]

    static func make(site: Site, options: Planner.Options, timeout: Duration = .seconds(10)) async -> Reconciliation {
        LibvirtRuntime.enableEventLoopIfAnyRemote(site.hosts.map(\.uri))
        async let hosts = SiteObserver.observe(site.hosts.map { ($0.name, $0.uri) }, timeout: timeout)
        async let pools = StorageSide.read(site: site)
        async let dhcp = DHCPSide.plan(site: site, options: options)
        let observation = await hosts
        let storage = StorageSide.plan(await pools, site: site, domains: observation.observed, options: options)
        var plan = Planner(site: site, observed: observation.observed, options: options).plan()
        let sides = [storage, await dhcp]
        for side in sides {
            plan.changes += side.changes
            plan.errors += side.problems
            plan.unreachableHosts += side.unreachable
            plan.observed.merge(side.fingerprints) { first, _ in first }
        }
        return Reconciliation(site: site, observation: observation, plan: plan, sides: sides)
    }
}
