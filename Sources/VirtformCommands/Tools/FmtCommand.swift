import ArgumentParser
import Foundation
import VirtformManifests
import VirtformModel

/// `virtform fmt [PATH…] [--check]`: every manifest file in its canonical text
/// (`ManifestFormatter`), comments kept.
struct FmtCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fmt",
        abstract: "Rewrite manifests in their canonical format (key order, indentation, quoting), keeping comments.",
        discussion: """
            Only files whose text changes are written, each in place (its mode kept). A file that is not valid \\
            YAML, or that uses anchors and aliases, is named and left as it is.

            Exit status: 0 every file is canonical (or was rewritten); 1 with --check when a file is not \\
            canonical (each is listed), or when a file could not be formatted.
            """
    )

    @Argument(help: "Manifest files or directories (searched recursively for *.yaml and *.yml).")
    var paths: [String] = ["manifests"]

    @Flag(help: "Write nothing: list the files that are not in canonical format and exit 1 if there are any (for CI).")
    var check = false

    func run() async throws {
        let output = Output.current
        let (files, problems) = ManifestLoader.files(in: paths)
        var failed = !problems.isEmpty
        for problem in problems { output.line(DiagnosticReport.line(problem, output: output)) }
        var changed: [String] = []
        for file in files {
            let text: String
            do {
                text = try String(contentsOfFile: file, encoding: .utf8)
            } catch {
                output.line(DiagnosticReport.line(Diagnostic(at: SourceLocation(file: file, line: 0, column: 0),
                                                             message: "cannot be read as UTF-8 text: \(error.localizedDescription)"), output: output))
                failed = true
                continue
            }
            switch ManifestFormatter.format(text, file: file) {
            case .refused(let diagnostics):
                for diagnostic in diagnostics { output.line(DiagnosticReport.line(diagnostic, output: output)) }
                failed = true
            case .formatted(let canonical) where canonical == text:
                continue
            case .formatted(let canonical):
                changed.append(file)
                if check {
                    output.line(Redaction.escapingControls(file))
                } else {
                    try Self.rewrite(file, with: canonical)
                    output.line("formatted \(Redaction.escapingControls(file))")
                }
            }
        }
        if check && !changed.isEmpty {
            output.line("\(changed.count) file\(changed.count == 1 ? " is" : "s are") not in canonical format; `virtform fmt` rewrites \(changed.count == 1 ? "it" : "them")")
        }
        if failed || (check && !changed.isEmpty) { throw ExitCode(1) }
    }

    /// Replaces the file's text in one step (a new file renamed over it), keeping its mode;
    /// through a symbolic link, the file it points at.
    static func rewrite(_ path: String, with text: String) throws {
        let target = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        do {
            let mode = try FileManager.default.attributesOfItem(atPath: target)[.posixPermissions]
            try text.write(toFile: target, atomically: true, encoding: .utf8)
            if let mode { try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: target) }
        } catch {
            throw CommandFailure("failed to write \(path): \(error.localizedDescription)")
        }
    }
}
