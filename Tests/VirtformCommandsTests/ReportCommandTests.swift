import Foundation
import Testing
@testable import VirtformCommands

/// One `plan` run writes the text for the log and the files a CI system reads.
@Suite("CI reports from one plan")
struct ReportCommandTests {
    @Test func oneRunWritesTheLogTheSummaryAndTheGitLabReport() async throws {
        // A host on a loopback port that refuses: nothing is planned for it, and the reports say so.
        let directory = try writeLoopbackSite("reports", uri: "qemu+tcp://127.0.0.1:1/system")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let summary = directory + "/summary.md", gitlab = directory + "/gitlab.json"
        var (output, code) = await runVirtform(["plan", "--summary", summary, "--gitlab-report", gitlab, directory])
        #expect(code == 1, "\(output)")
        #expect(output.contains("Host h1: unreachable"), "the text for the log: \(output)")
        let markdown = try String(contentsOfFile: summary, encoding: .utf8)
        #expect(markdown.hasPrefix("### virtform plan — site `reports`") && markdown.contains("#### Not read (1)"), "\(markdown)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: gitlab))) as? [String: Int]
        #expect(report == ["create": 0, "update": 0, "delete": 0])
        (output, code) = await runVirtform(["plan", "--format", "markdown", directory])
        #expect(code == 1 && output.hasPrefix("### virtform plan"), "\(output)")
    }

    @Test func eachFormatMayGoToAFileOfItsOwn() async throws {
        let directory = try writeLoopbackSite("formats", uri: "qemu+tcp://127.0.0.1:1/system")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (markdown, json, gitlab) = (directory + "/plan.md", directory + "/plan.json", directory + "/gitlab.json")
        var (output, code) = await runVirtform(["plan", "--format", "markdown=\(markdown)", "--format", "json=\(json)",
                                                "--format", "gitlab=\(gitlab)", directory])
        #expect(code == 1 && output.contains("Host h1: unreachable"), "text for the log when no format is for standard output: \(output)")
        #expect(try String(contentsOfFile: markdown, encoding: .utf8).hasPrefix("### virtform plan — site `formats`"))
        let plan = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
        #expect(plan?["format_version"] as? Int == 2 && plan?["site"] as? String == "formats")
        #expect(try String(contentsOfFile: gitlab, encoding: .utf8) == "{\"create\": 0, \"update\": 0, \"delete\": 0}\n")

        // JSON to standard output, JUnit to a file, from one drift check.
        let junit = directory + "/drift.xml"
        (output, code) = await runVirtform(["drift", "--format", "json", "--format", "junit=\(junit)", directory])
        #expect(code == 1 && output.hasPrefix("{") && output.contains("\"complete\" : false"), "\(output)")
        #expect(try JUnitReading(String(contentsOfFile: junit, encoding: .utf8)).attributes["errors"] == "1")

        // Standard output takes one format; a file takes one.
        (output, code) = await runVirtform(["plan", "--format", "json", "--format", "markdown", directory])
        #expect(code == 64 && output.contains("--format without a file may be given once"), "\(output)")
        (output, code) = await runVirtform(["validate", "--format", "sarif=\(json)", "--format", "codequality=\(json)", directory])
        #expect(code == 64 && output.contains("names \(json) twice"), "\(output)")
        (output, code) = await runVirtform(["validate", "--format", "sarif=", directory])
        #expect(code == 64, "\(output)")
    }
}

/// A site of one host at `uri` (a loopback port that refuses: unreachable at once) in a new
/// temporary directory, returned; `extraHost` is added as a second Host document.
func writeLoopbackSite(_ name: String, uri: String, extraHost: String = "") throws -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vftest-\(name)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    try """
        apiVersion: virtform.io/v1alpha1
        kind: Site
        metadata: {name: \(name)}
        spec: {}
        ---
        apiVersion: virtform.io/v1alpha1
        kind: Host
        metadata: {name: h1}
        spec:
          uri: "\(uri)"
          capacity: {memory: 1GiB, vcpus: 1}
          bridges: [fe0]
        \(extraHost)
        """.write(toFile: directory + "/site.yaml", atomically: true, encoding: .utf8)
    return directory
}
