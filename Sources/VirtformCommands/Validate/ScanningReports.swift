import Foundation
import VirtformManifests
import VirtformModel

/// Diagnostics in the formats code-scanning tools read: SARIF 2.1.0 (GitHub code scanning) and
/// GitLab's code-quality report. Every problem carries its file and line (and column in SARIF).
enum ScanningReports {
    static func sarif(_ result: LoadResult) -> String {
        struct Document: Encodable {
            var schema = "https://json.schemastore.org/sarif-2.1.0.json"
            var version = "2.1.0"
            var runs: [Run]
            enum CodingKeys: String, CodingKey { case schema = "$schema", version, runs }
        }
        struct Run: Encodable { var tool: Tool; var results: [SarifResult] }
        struct Tool: Encodable { var driver: Driver }
        struct Driver: Encodable {
            var name = "virtform"
            var version = virtformVersion
            var informationUri = "https://virtform.io"
            var rules: [Rule]
        }
        struct Rule: Encodable {
            var id: String
            var shortDescription: Message
        }
        struct SarifResult: Encodable {
            var ruleId: String
            var level: String
            var message: Message
            var locations: [Location]
        }
        struct Message: Encodable { var text: String }
        struct Location: Encodable { var physicalLocation: Physical }
        struct Physical: Encodable { var artifactLocation: Artifact; var region: Region? }
        struct Artifact: Encodable { var uri: String }
        struct Region: Encodable { var startLine: Int; var startColumn: Int }

        let results = result.diagnostics.map { diagnostic in
            SarifResult(ruleId: ruleID(diagnostic), level: diagnostic.severity == .error ? "error" : "warning",
                        message: Message(text: text(diagnostic)),
                        locations: [Location(physicalLocation: Physical(
                            artifactLocation: Artifact(uri: diagnostic.location.file),
                            region: diagnostic.location.line > 0
                                ? Region(startLine: diagnostic.location.line, startColumn: max(diagnostic.location.column, 1)) : nil))])
        }
        let rules = Set(results.map(\.ruleId)).sorted().map {
            Rule(id: $0, shortDescription: Message(text: $0 == "virtform/manifest" ? "A problem in a manifest" : "A problem in field \($0.dropFirst("virtform/".count))"))
        }
        return encode(Document(runs: [Run(tool: Tool(driver: Driver(rules: rules)), results: results)]))
    }

    /// GitLab's code-quality report: a list of issues with a stable fingerprint each.
    static func codeQuality(_ result: LoadResult) -> String {
        struct Issue: Encodable {
            var description: String
            var checkName: String
            var fingerprint: String
            var severity: String
            var location: Location
            enum CodingKeys: String, CodingKey { case description, checkName = "check_name", fingerprint, severity, location }
        }
        struct Location: Encodable { var path: String; var lines: Lines }
        struct Lines: Encodable { var begin: Int }
        let issues = result.diagnostics.map { diagnostic in
            let location = diagnostic.location
            return Issue(description: text(diagnostic), checkName: ruleID(diagnostic),
                         fingerprint: StableHash.of("\(location.file)|\(location.line)|\(location.column)|\(text(diagnostic))").hex,
                         severity: diagnostic.severity == .error ? "major" : "minor",
                         location: Location(path: location.file, lines: Lines(begin: max(location.line, 1))))
        }
        return encode(issues)
    }

    /// `virtform/spec.memory`: the field, so a code-scanning tool groups alike problems.
    private static func ruleID(_ diagnostic: Diagnostic) -> String {
        let field = diagnostic.field.split(separator: ".").map { $0.split(separator: "[").first.map(String.init) ?? "" }.joined(separator: ".")
        return field.isEmpty ? "virtform/manifest" : "virtform/\(field)"
    }

    private static func text(_ diagnostic: Diagnostic) -> String {
        var parts: [String] = []
        if let object = diagnostic.object { parts.append(object) }
        if !diagnostic.field.isEmpty { parts.append(diagnostic.field) }
        parts.append(diagnostic.message + (diagnostic.suggestion.map { " (did you mean \"\($0)\"?)" } ?? ""))
        return parts.joined(separator: ": ")
    }

    private static func encode(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try! encoder.encode(value), as: UTF8.self) + "\n"
    }
}
