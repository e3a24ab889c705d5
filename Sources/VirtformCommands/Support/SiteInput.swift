import ArgumentParser
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

/// Observation and planning, shared by `plan`, `drift` and `apply`.
struct Reconciliation {
    var site: Site
    var observation: SiteObserver.Result
    var plan: Plan

    static func make(site: Site, options: Planner.Options, timeout: Duration = .seconds(10)) async -> Reconciliation {
        let observation = await SiteObserver.observe(site.hosts.map { ($0.name, $0.uri) }, timeout: timeout)
        let plan = Planner(site: site, observed: observation.observed, options: options).plan()
        return Reconciliation(site: site, observation: observation, plan: plan)
    }
}
