import ArgumentParser
import Foundation
import VirtformManifests
import VirtformModel
import VirtformPlanning

/// `virtform plan`: what apply would do, without doing it.
struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Compare the manifests with the hypervisors and show what apply would change.",
        discussion: """
            Exit status: 0 on success (with --detailed-exitcode: 0 no changes, 2 changes), 1 on an error, \
            including a system that could not be read or a VM whose state is unknown (nothing is planned for it).
            """
    )

    @OptionGroup var site: SiteOptions

    /// What `plan` writes to standard output.
    enum Format: String, ExpressibleByArgument, CaseIterable {
        case text, json, markdown
    }

    @Option(help: "Output format: text, json, or markdown (a pull-request comment, at most 65,536 characters).")
    var format: Format = .text

    @Option(help: "Also write the plan as Markdown (under 1 MiB) to this file, for a CI step summary (append it to $GITHUB_STEP_SUMMARY).")
    var summary: String?

    @Option(help: "Also write GitLab's Terraform report ({\"create\": n, \"update\": n, \"delete\": n}) to this file.")
    var gitlabReport: String?

    @Option(name: .customLong("out"), help: "Also save the plan (JSON) to this file, for `virtform apply --plan FILE`.")
    var out: String?

    @Flag(help: "Exit 0 when there are no changes, 2 when there are, 1 on errors.")
    var detailedExitcode = false

    @Flag(help: "List domains that virtform does not own (it never changes them).")
    var showUnmanaged = false

    @OptionGroup var allow: AllowanceOptions

    @OptionGroup var reading: ReadOptions

    func run() async throws {
        let loaded = try site.loadResult(json: format == .json)
        let options = Planner.Options(allow.allowances, showUnmanaged: showUnmanaged)
        let result = await Reconciliation.make(site: loaded.site, options: options, timeout: reading.timeout)
        let output = Output.current
        switch format {
        case .text: output.write(PlanRenderer.text(result.plan, color: output.useColor))
        case .json: output.write(PlanRenderer.json(result.plan))
        case .markdown: output.write(PlanMarkdown.render(result.plan))
        }
        for (path, text) in [(summary, { PlanMarkdown.render(result.plan, limit: PlanMarkdown.summaryLimit) }),
                             (gitlabReport, { GitLabReport.render(result.plan) })] {
            guard let path else { continue }
            do {
                try Redaction.redacted(text()).write(toFile: path, atomically: true, encoding: .utf8)
            } catch {
                throw CommandFailure("failed to write \(path): \(error.localizedDescription)")
            }
        }
        if let out {
            var saved = result.plan
            let directory = FileManager.default.currentDirectoryPath
            let paths = site.effectivePaths.map { $0.hasPrefix("/") ? $0 : (directory as NSString).appendingPathComponent($0) }
            let files = zip(loaded.files, loaded.digests).map { file, digest in
                Plan.SourceFile(path: file.hasPrefix("/") ? file : (directory as NSString).appendingPathComponent(file), digest: digest)
            }
            saved.sources = Plan.Sources(paths: paths, files: files)
            saved.allowed = allow.allowances
            do {
                try Redaction.redacted(PlanRenderer.json(saved)).write(toFile: out, atomically: true, encoding: .utf8)
            } catch {
                throw CommandFailure("failed to save the plan to \(out): \(error.localizedDescription)")
            }
            if format == .text { output.line("Saved the plan to \(out); apply it with `virtform apply --plan \(out)`.") }
        }
        if !result.plan.errors.isEmpty || !result.plan.unreachable.isEmpty || !result.plan.unknown.isEmpty { throw ExitCode(1) }
        if detailedExitcode && !result.plan.isEmpty { throw ExitCode(2) }
    }
}
