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
    enum Format: String, ExpressibleByArgument, CaseIterable {
        case text, json, sarif, codequality
    }

    @Option(help: "Output format: text, json, sarif (GitHub code scanning) or codequality (GitLab).")
    var format: Format = .text

    func run() async throws {
        let result = ManifestLoader.load(paths: paths)
        let output = Output.current
        switch format {
        case .text: output.write(DiagnosticReport.text(result, output: output))
        case .json: output.write(DiagnosticReport.json(result))
        case .sarif: output.write(ScanningReports.sarif(result))
        case .codequality: output.write(ScanningReports.codeQuality(result))
        }
        if !result.isValid { throw ExitCode(1) }
    }
}
