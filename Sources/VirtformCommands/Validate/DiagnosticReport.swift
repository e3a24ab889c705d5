import Foundation
import VirtformManifests
import VirtformModel

/// Renders the result of loading manifests for people (text) and for CI (JSON).
public enum DiagnosticReport {
    /// `file:line:col: error: Kind/name: field: message (did you mean "x"?)`, then a summary line.
    public static func text(_ result: LoadResult, output: Output) -> String {
        var lines = result.diagnostics.map { line($0, output: output) }
        if result.skippedSiteChecks {
            lines.append("note: checks across objects (references, addresses, capacity) were skipped because a file could not be read whole")
        }
        let errors = result.diagnostics.filter { $0.severity == .error }.count
        let warnings = result.diagnostics.count - errors
        let scope = "\(result.site.objectCount) object\(result.site.objectCount == 1 ? "" : "s") in \(result.files.count) file\(result.files.count == 1 ? "" : "s")"
        if errors == 0 {
            lines.append(output.paint("valid", .green) + ": \(scope)" + (warnings > 0 ? ", \(plural(warnings, "warning"))" : ""))
        } else {
            lines.append(output.paint("invalid", .red) + ": \(plural(errors, "error")), \(plural(warnings, "warning")); \(scope)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// One diagnostic's line.
    public static func line(_ diagnostic: Diagnostic, output: Output) -> String {
        let location = diagnostic.location.line == 0
            ? diagnostic.location.file
            : diagnostic.location.description
        let severity = diagnostic.severity == .error
            ? output.paint("error", .red) : output.paint("warning", .yellow)
        // Values quoted from the manifests are escaped: a hostname cannot forge a line.
        func e(_ text: String) -> String { Redaction.escapingControls(text) }
        var line = "\(output.paint(e(location), .bold)): \(severity): "
        if let object = diagnostic.object { line += "\(e(object)): " }
        if !diagnostic.field.isEmpty { line += "\(e(diagnostic.field)): " }
        line += e(diagnostic.message)
        if let suggestion = diagnostic.suggestion { line += " (did you mean \"\(e(suggestion))\"?)" }
        return line
    }

    /// Versioned, with sorted keys, one entry per diagnostic.
    public static func json(_ result: LoadResult) -> String {
        let report = Report(
            formatVersion: "1",
            valid: result.isValid,
            files: result.files.count,
            objects: result.site.objectCount,
            errors: result.diagnostics.filter { $0.severity == .error }.count,
            warnings: result.diagnostics.filter { $0.severity == .warning }.count,
            siteChecksSkipped: result.skippedSiteChecks,
            diagnostics: result.diagnostics.map {
                Entry(severity: $0.severity.rawValue, file: $0.location.file, line: $0.location.line, column: $0.location.column,
                      object: $0.object, field: $0.field, message: $0.message, suggestion: $0.suggestion)
            })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return String(decoding: try! encoder.encode(report), as: UTF8.self) + "\n"
    }

    private struct Report: Encodable {
        var formatVersion: String
        var valid: Bool
        var files: Int
        var objects: Int
        var errors: Int
        var warnings: Int
        var siteChecksSkipped: Bool
        var diagnostics: [Entry]
    }

    private struct Entry: Encodable {
        var severity: String
        var file: String
        var line: Int
        var column: Int
        var object: String?
        var field: String
        var message: String
        var suggestion: String?
    }

    private static func plural(_ n: Int, _ word: String) -> String { "\(n) \(word)\(n == 1 ? "" : "s")" }
}
