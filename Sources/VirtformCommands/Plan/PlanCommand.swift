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

    /// What `plan` writes.
    enum Format: String, ExpressibleByArgument, CaseIterable, Sendable {
        case text, json, markdown, gitlab
    }

    @Option(help: ArgumentHelp(
        "Output format: text, json, markdown (a pull-request comment, at most 65,536 characters) or gitlab (GitLab's Terraform report); FORMAT=FILE writes it to a file instead. Repeatable: one format for standard output (text when none), any number to files.",
        valueName: "format[=file]"))
    var format: [FormatRequest<Format>] = []

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

    @OptionGroup var state: BackendOptions

    func validate() throws { _ = try FormatRequests(format, fallback: .text) }

    func run() async throws {
        let formats = try FormatRequests(format, fallback: .text)
        let loaded = try site.loadResult(json: formats.standardOutput == .json)
        let options = Planner.Options(allow.allowances, showUnmanaged: showUnmanaged)
        let (backend, unreadable) = await state.openForReading(for: loaded.site)
        var result = await Reconciliation.make(site: loaded.site, options: options, timeout: reading.timeout, state: backend)
        await backend?.close()
        if let unreadable { result.plan.warnings.append(unreadable) }
        let output = Output.current
        func render(_ format: Format, color: Bool = false) -> String {
            switch format {
            case .text: PlanRenderer.text(result.plan, color: color)
            case .json: PlanRenderer.json(result.plan)
            case .markdown: PlanMarkdown.render(result.plan)
            case .gitlab: GitLabReport.render(result.plan)
            }
        }
        output.write(render(formats.standardOutput, color: output.useColor))
        try formats.writeFiles { render($0) }
        if let summary { try Report.write(PlanMarkdown.render(result.plan, limit: PlanMarkdown.summaryLimit), to: summary) }
        if let gitlabReport { try Report.write(GitLabReport.render(result.plan), to: gitlabReport) }
        if let out {
            var saved = result.plan
            let directory = FileManager.default.currentDirectoryPath
            let paths = site.effectivePaths.map { $0.hasPrefix("/") ? $0 : (directory as NSString).appendingPathComponent($0) }
            let files = zip(loaded.files, loaded.digests).map { file, digest in
                Plan.SourceFile(path: file.hasPrefix("/") ? file : (directory as NSString).appendingPathComponent(file), digest: digest)
            }
            saved.sources = Plan.Sources(paths: paths, files: files)
            saved.allowed = allow.allowances
            try Report.write(PlanRenderer.json(saved), to: out)
            if formats.standardOutput == .text { output.line("Saved the plan to \(out); apply it with `virtform apply --plan \(out)`.") }
        }
        if !result.plan.errors.isEmpty || !result.plan.unreachable.isEmpty || !result.plan.unknown.isEmpty { throw ExitCode(1) }
        if detailedExitcode && !result.plan.isEmpty { throw ExitCode(2) }
    }
}
