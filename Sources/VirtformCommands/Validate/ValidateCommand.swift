import ArgumentParser
import VirtformManifests
import VirtformModel

/// `virtform validate [PATH…]`: check manifests without touching any system.
struct ValidateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check manifests: every problem at once, each with file:line:column and field.",
        discussion: "Exit status: 0 when valid, 1 when there is at least one error (warnings do not fail)."
    )

    @Argument(help: "Manifest files or directories (searched recursively for *.yaml and *.yml).")
    var paths: [String] = ["manifests"]

    /// What `validate` writes.
    enum Format: String, ExpressibleByArgument, CaseIterable, Sendable {
        case text, json, sarif, codequality
    }

    @Option(help: ArgumentHelp(
        "Output format: text, json, sarif (GitHub code scanning) or codequality (GitLab); FORMAT=FILE writes it to a file instead. Repeatable: one format for standard output (text when none), any number to files.",
        valueName: "format[=file]"))
    var format: [FormatRequest<Format>] = []

    func validate() throws { _ = try FormatRequests(format, fallback: .text) }

    func run() async throws {
        let formats = try FormatRequests(format, fallback: .text)
        let result = ManifestLoader.load(paths: paths)
        let output = Output.current
        func render(_ format: Format, output: Output) -> String {
            switch format {
            case .text: DiagnosticReport.text(result, output: output)
            case .json: DiagnosticReport.json(result)
            case .sarif: ScanningReports.sarif(result)
            case .codequality: ScanningReports.codeQuality(result)
            }
        }
        output.write(render(formats.standardOutput, output: output))
        try formats.writeFiles { render($0, output: .plain) }
        if !result.isValid { throw ExitCode(1) }
    }
}
