import ArgumentParser
import Foundation
import Synchronization
import Testing
import VirtformSystem
@testable import VirtformCommands

/// The backend a test's commands use unless they name one: a state directory beside the site's
/// manifests (`DIR/.virtform-state`, removed with the test's directory), so that tests running
/// at once never share a site's lock or history.
func testBackend(for arguments: [String]) -> String? {
    guard let path = arguments.last(where: { !$0.hasPrefix("-") && FileManager.default.fileExists(atPath: $0) }) else { return nil }
    var isDirectory: ObjCBool = false
    _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
    return "file:" + (isDirectory.boolValue ? path : (path as NSString).deletingLastPathComponent) + "/.virtform-state"
}

/// Runs a `virtform` command line in-process and captures what it writes and how it exits.
func runVirtform(_ arguments: [String]) async -> (output: String, exitCode: Int32) {
    var arguments = arguments
    if ["apply", "plan", "drift"].contains(arguments.first ?? ""), !arguments.contains(where: { $0.hasPrefix("--backend") }),
       let backend = testBackend(for: arguments) {
        arguments.insert(contentsOf: ["--backend", backend], at: 1)
    }
    let captured = Mutex("")
    let output = Output(write: { text in captured.withLock { $0 += text } },
                        writeError: { text in captured.withLock { $0 += text } }, useColor: false)
    var code: Int32 = 0
    do {
        var command = try Virtform.parseAsRoot(arguments)
        try await Output.$current.withValue(output) {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        }
    } catch {
        code = Virtform.exitCode(for: error).rawValue
        // As the executable does (`Virtform.run`): through `Output`, which redacts.
        if code != 0 { output.writeError(Virtform.fullMessage(for: error)) }
    }
    return (captured.withLock { $0 }, code)
}

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

@Suite("virtform validate")
struct ValidateCommandTests {
    @Test func referenceManifestsAreValid() async {
        let (output, code) = await runVirtform(["validate", repositoryRoot.appendingPathComponent("manifests").path])
        #expect(code == 0)
        #expect(output.hasPrefix("valid: "))
    }

    @Test func invalidManifestsExitOneWithLocatedErrors() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("virtform-cmd-\(UUID()).yaml")
        try "apiVersion: virtform.io/v1alpha1\nkind: Hots\nmetadata: {name: a}\nspec: {}\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let (output, code) = await runVirtform(["validate", file.path])
        #expect(code == 1)
        #expect(output.contains("\(file.path):2:7: error: kind: expected one of"))
        #expect(output.contains("(did you mean \"Host\"?)"))
        #expect(output.contains("invalid: 1 error"))
    }

    @Test func jsonReportIsVersionedAndSorted() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("virtform-cmd-\(UUID()).yaml")
        try "apiVersion: virtform.io/v1alpha1\nkind: Host\nmetadata: {name: a}\nspec: {uri: 'x:', capacity: {memory: 1 lemon, vcpus: 1}}\n"
            .write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let (output, code) = await runVirtform(["validate", "--format", "json", file.path])
        #expect(code == 1)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        #expect(json["format_version"] as? String == "1")
        #expect(json["valid"] as? Bool == false)
        let diagnostics = try #require(json["diagnostics"] as? [[String: Any]])
        #expect(diagnostics.first?["field"] as? String == "spec.capacity.memory")
        #expect(diagnostics.first?["line"] as? Int == 4)
        let keys = output.split(separator: "\n").prefix(3).map { String($0) }
        #expect(keys[1].contains("\"diagnostics\""), "keys are sorted: \(keys)")
    }

    /// Code scanning: SARIF 2.1.0 for GitHub, the code-quality report for GitLab, each problem
    /// with its file and line.
    @Test func sarifAndCodeQualityPlaceEveryProblem() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("virtform-cmd-\(UUID()).yaml")
        try "apiVersion: virtform.io/v1alpha1\nkind: Host\nmetadata: {name: a}\nspec: {uri: 'x:', capacity: {memory: 1 lemon, vcpus: 0}}\n"
            .write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        var (output, code) = await runVirtform(["validate", "--format", "sarif", file.path])
        #expect(code == 1)
        let sarif = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        #expect(sarif["version"] as? String == "2.1.0" && (sarif["$schema"] as? String)?.contains("sarif-2.1.0") == true)
        let run = try #require((sarif["runs"] as? [[String: Any]])?.first)
        #expect(((run["tool"] as? [String: Any])?["driver"] as? [String: Any])?["name"] as? String == "virtform")
        let results = try #require(run["results"] as? [[String: Any]])
        #expect(results.count == 2, "\(output)")
        for result in results {
            let physical = try #require(((result["locations"] as? [[String: Any]])?.first)?["physicalLocation"] as? [String: Any])
            #expect((physical["artifactLocation"] as? [String: Any])?["uri"] as? String == file.path)
            #expect((physical["region"] as? [String: Any])?["startLine"] as? Int == 4)
            #expect(result["level"] as? String == "error" && (result["ruleId"] as? String)?.hasPrefix("virtform/spec.capacity.") == true)
        }
        (output, code) = await runVirtform(["validate", "--format", "codequality", file.path])
        #expect(code == 1)
        let issues = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: Any]])
        #expect(issues.count == 2)
        #expect(issues.allSatisfy { ($0["location"] as? [String: Any])?["path"] as? String == file.path
            && (($0["location"] as? [String: Any])?["lines"] as? [String: Any])?["begin"] as? Int == 4
            && $0["severity"] as? String == "major" && ($0["fingerprint"] as? String)?.isEmpty == false })
        #expect(Set(issues.compactMap { $0["fingerprint"] as? String }).count == 2, "fingerprints tell the problems apart")
    }

    /// The completion scripts come from the commands themselves; bash reads its script without
    /// a syntax error, and every kind of flag is in it.
    @Test func completionScriptsNameEveryCommandAndFlag() async throws {
        let (bash, code) = await runVirtform(["completion", "bash"])
        #expect(code == 0)
        for word in ["validate", "plan", "apply", "drift", "lab", "schema", "--operation-timeout", "--read-timeout", "--gitlab-report"] {
            #expect(bash.contains(word), "\(word) missing from the bash completion")
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("virtform-completion-\(UUID()).bash").path
        try bash.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let shell = try #require(Executables.find("bash"))
        let check = try await Command.run([shell, "-n", file])
        #expect(check.status == 0, "\(check.standardError)")
        for name in ["zsh", "fish"] {
            let (script, status) = await runVirtform(["completion", name])
            #expect(status == 0 && script.contains("apply"), "\(name)")
        }
    }

    /// A deadline of nothing is refused before anything is read, naming the flag.
    @Test func timeoutsMustBeAboveZero() async {
        for (arguments, flag) in [(["apply", "--operation-timeout", "0"], "--operation-timeout"), (["plan", "--read-timeout=-1"], "--read-timeout"),
                                  (["apply", "--shutdown-timeout=-5"], "--shutdown-timeout")] {
            let (output, code) = await runVirtform(arguments + ["/nonexistent-manifests"])
            #expect(code == 64 && output.contains("\(flag) must be"), "\(arguments): \(output)")
        }
    }

    @Test func schemaCommandPrintsTheSchema() async {
        let (output, code) = await runVirtform(["schema"])
        #expect(code == 0)
        #expect(output.contains("\"$schema\" : \"https://json-schema.org/draft/2020-12/schema\""))
    }
}
