import Foundation
import Testing
import VirtformManifests
import VirtformModel
import VirtformPlanning
import VirtformSystem
@testable import VirtformCommands

/// Every report a CI system reads, as a golden file, and read by a real consumer: the JUnit
/// report by `xmllint` against a JUnit schema, SARIF, code quality and GitLab's Terraform report
/// by python's `jsonschema` against theirs (`Tests/Schemas`). Each consumer is also shown a
/// broken document and must refuse it, so a consumer that accepts anything fails the test.
/// Re-record the goldens with `VIRTFORM_RECORD_GOLDEN=1 swift test --filter ReportConsumerTests`.
@Suite("Reports read by their consumers")
struct ReportConsumerTests {
    static let schemas = repositoryRoot.appendingPathComponent("Tests/Schemas")
    static let planGoldens = repositoryRoot.appendingPathComponent("Tests/VirtformPlanningTests/Golden")

    /// A manifest with two problems on line 4, in a directory of a fixed name (the reports'
    /// fingerprints hash the path, so the goldens hold only with the same path every run).
    static func invalidManifests() throws -> (directory: String, file: String) {
        let directory = "/tmp/vftest-reports-fixture"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let file = directory + "/hosts.yaml"
        try "apiVersion: virtform.io/v1alpha1\nkind: Host\nmetadata: {name: a}\nspec: {uri: 'x:', capacity: {memory: 1 lemon, vcpus: 0}}\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        return (directory, file)
    }

    @Test func sarifAndCodeQualityAreGoldenAndValid() async throws {
        let (directory, file) = try Self.invalidManifests()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for (format, golden, schema) in [("sarif", "validate.sarif.json", "sarif-2.1.0-results.schema.json"),
                                         ("codequality", "validate.codequality.json", "gitlab-codequality.schema.json")] {
            let (output, code) = await runVirtform(["validate", "--format", format, file])
            #expect(code == 1)
            let text = output.replacingOccurrences(of: directory, with: "<fixture>")
            try expectReportGolden(text, golden)
            try await expectValidJSON(output, schema: schema)
        }
    }

    @Test func gitlabReportsAreValid() async throws {
        for name in ["from-scratch.gitlab.json", "mixed.gitlab.json"] {
            try await expectValidJSON(String(contentsOf: Self.planGoldens.appendingPathComponent(name), encoding: .utf8),
                                      schema: "gitlab-terraform-report.schema.json")
        }
    }

    /// The drift report of the mixed golden plan (changes of every kind, a system not read, a
    /// VM unknown, an error) against the reference site.
    @Test func driftJUnitIsGoldenAndValid() async throws {
        let plan = try PlanRenderer.decode(Data(contentsOf: Self.planGoldens.appendingPathComponent("mixed.json")))
        let site = ManifestLoader.load(paths: [repositoryRoot.appendingPathComponent("manifests").path]).site
        let report = DriftReport(plan: plan)
        let junit = report.junit(site: site)
        try expectReportGolden(junit, "drift-mixed.junit.xml")
        try await expectValidJUnit(junit)
        let reading = try JUnitReading(junit)
        #expect(reading.attributes["tests"] == "\(reading.cases.count)")
        #expect(reading.attributes["failures"] == "\(reading.failed.count)" && !reading.failed.isEmpty)
        #expect(reading.skipped.contains("VirtualMachine/appl-2/db-1"), "the unknown VM is skipped: \(reading.skipped)")
    }

    @Test func theConsumersRefuseBrokenReports() async throws {
        await #expect(throws: (any Error).self) {
            try await expectValidJUnit("<testsuites><testsuite name=\"x\" tests=\"one\"><testcase/></testsuite></testsuites>", quiet: true)
        }
        await #expect(throws: (any Error).self) {
            try await expectValidJSON(#"{"version": "2.0.0", "runs": []}"#, schema: "sarif-2.1.0-results.schema.json", quiet: true)
        }
        await #expect(throws: (any Error).self) {
            try await expectValidJSON(#"{"create": 1, "update": -1}"#, schema: "gitlab-terraform-report.schema.json", quiet: true)
        }
    }
}

/// Compares with `Tests/VirtformCommandsTests/Golden/NAME` (`VIRTFORM_RECORD_GOLDEN=1` re-records).
func expectReportGolden(_ actual: String, _ name: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
    let url = repositoryRoot.appendingPathComponent("Tests/VirtformCommandsTests/Golden/\(name)")
    if ProcessInfo.processInfo.environment["VIRTFORM_RECORD_GOLDEN"] == "1" {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try actual.write(to: url, atomically: true, encoding: .utf8)
        return
    }
    #expect(actual == (try String(contentsOf: url, encoding: .utf8)),
            "\(name) differs; re-record with VIRTFORM_RECORD_GOLDEN=1 if the change is intended", sourceLocation: sourceLocation)
}

/// What a consumer said when it refused a report.
struct ConsumerRefused: Error, CustomStringConvertible {
    var description: String
}

/// Runs `consumer` on `text` written to a temporary file; throws what it said if it refuses.
private func consume(_ text: String, suffix: String, quiet: Bool, sourceLocation: Testing.SourceLocation,
                     _ consumer: (String) throws -> [String]) async throws {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("vftest-report-\(UUID().uuidString)\(suffix)").path
    try text.write(toFile: file, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(atPath: file) }
    let result = try await Command.run(try consumer(file))
    guard result.status == 0 else {
        if !quiet { Issue.record("refused: \(result.standardOutput)\(result.standardError)", sourceLocation: sourceLocation) }
        throw ConsumerRefused(description: result.standardOutput + result.standardError)
    }
}

/// `xmllint --schema Tests/Schemas/junit.xsd`.
func expectValidJUnit(_ text: String, quiet: Bool = false, sourceLocation: Testing.SourceLocation = #_sourceLocation) async throws {
    let xmllint = try #require(Executables.find("xmllint"), "xmllint (libxml2-utils) is installed by scripts/setup")
    try await consume(text, suffix: ".xml", quiet: quiet, sourceLocation: sourceLocation) { file in
        [xmllint, "--noout", "--schema", ReportConsumerTests.schemas.appendingPathComponent("junit.xsd").path, file]
    }
}

/// `Tests/Schemas/validate-json SCHEMA` (python's jsonschema).
func expectValidJSON(_ text: String, schema: String, quiet: Bool = false,
                     sourceLocation: Testing.SourceLocation = #_sourceLocation) async throws {
    try await consume(text, suffix: ".json", quiet: quiet, sourceLocation: sourceLocation) { file in
        [ReportConsumerTests.schemas.appendingPathComponent("validate-json").path,
         ReportConsumerTests.schemas.appendingPathComponent(schema).path, file]
    }
}
