import Foundation
import Testing
import VirtformManifests
import VirtformSystem

/// The CI pipelines in `examples/ci` cannot rot: each is read as YAML, and every script of it
/// that calls virtform is run, as the CI system would run it (bash, in a checkout holding
/// `manifests/`, with the CI's variables set), against the whole-stack lab. A renamed flag or a
/// changed exit status breaks this test, not a user's pipeline.
extension StackTests {
    @Test(.enabled(if: virtformExecutable() != nil, "the virtform executable is built beside the tests"))
    func theCIExamplesRunAgainstTheLab() async throws {
        let examples = repositoryRoot.appendingPathComponent("examples/ci")
        try await StackSite.with { site in
            // A VM to create: the merge request / pull request has something to show and apply. A
            // repository keeps its manifests formatted (the pipelines check it).
            try site.write(withWeb: true)
            var (output, code) = await runVirtform(["fmt", site.directory])
            try #require(code == 0, "\(output)")
            let environment = [
                "PATH": URL(fileURLWithPath: virtformExecutable()!).deletingLastPathComponent().path + ":/usr/sbin:/usr/bin:/sbin:/bin",
                "GITHUB_SHA": "0123abc", "GITHUB_STEP_SUMMARY": site.root + "/step-summary.md",
                "CI_COMMIT_SHA": "4567def", "CI_PIPELINE_SOURCE": "push",
                "VIRTFORM_BACKEND": "file:" + site.root + "/.virtform-state",
            ]

            let github = try CIScripts(file: examples.appendingPathComponent("github-actions.yml").path, kind: .github)
            #expect(github.scripts.map(\.job) == ["validate", "validate", "plan", "plan-merged", "apply", "drift"], "\(github.scripts)")
            for script in github.scripts {
                let (output, status) = try await script.run(in: site.root, environment: environment)
                #expect(status == 0, "job \(script.job): \(script.text)\n\(output)")
            }
            #expect(FileManager.default.fileExists(atPath: site.root + "/validate.sarif"))
            #expect(try String(contentsOfFile: site.root + "/plan.md", encoding: .utf8).contains("+ | `VirtualMachine/appl/web-1` | create"))
            #expect(try String(contentsOfFile: site.root + "/step-summary.md", encoding: .utf8).hasPrefix("### virtform plan"))
            #expect(FileManager.default.fileExists(atPath: site.root + "/plan-0123abc.json"))
            let drift = try JUnitReading(String(contentsOfFile: site.root + "/drift.xml", encoding: .utf8))
            #expect(drift.failed.isEmpty && drift.skipped.isEmpty && drift.attributes["errors"] == "0", "the apply job applied it all")

            // A merged change for GitLab's pipeline to plan, apply by hand and check: the LUN grown
            // (and exported again at its new size).
            try site.write(withWeb: true, diskSize: "96MiB")
            (output, code) = await runVirtform(["fmt", site.directory])
            try #require(code == 0, "\(output)")
            let gitlab = try CIScripts(file: examples.appendingPathComponent("gitlab-ci.yml").path, kind: .gitlab)
            #expect(gitlab.scripts.map(\.job) == ["validate", "validate", "plan", "apply", "drift"], "\(gitlab.scripts)")
            for script in gitlab.scripts {
                let (output, status) = try await script.run(in: site.root, environment: environment)
                #expect(status == 0, "job \(script.job): \(script.text)\n\(output)")
            }
            let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: site.root + "/plan-report.json")))
            #expect(report as? [String: Int] == ["create": 0, "update": 2, "delete": 0], "\(report)")
            #expect(FileManager.default.fileExists(atPath: site.root + "/gl-code-quality.json"))
            #expect(FileManager.default.fileExists(atPath: site.root + "/plan-4567def.json"))
            (output, code) = await site.run(["plan", "--detailed-exitcode"])
            #expect(code == 0, "the apply job applied the merged change:\n\(output)")

            // The scheduled drift job tolerates merged changes not applied yet (exit 3), and
            // fails on a change made outside virtform (exit 2), its report naming it.
            let driftJob = try #require(gitlab.scripts.last)
            try site.write(withWeb: true, diskSize: "128MiB")
            #expect(try await driftJob.run(in: site.root, environment: environment).status == 0)
            try site.write(withWeb: true, diskSize: "96MiB")
            let virsh = try #require(Executables.find("virsh"))
            _ = try await Command.run([virsh, "-c", site.hosts[0].testURI, "destroy", "appl:web-1"])
            let failing = try await driftJob.run(in: site.root, environment: environment)
            #expect(failing.status != 0, "\(failing.output)")
            let alarm = try JUnitReading(String(contentsOfFile: site.root + "/drift.xml", encoding: .utf8))
            #expect(alarm.failed == ["VirtualMachine/appl/web-1"] && alarm.skipped.isEmpty, "\(alarm)")
        }
    }
}

/// The shell scripts of a CI pipeline that call virtform, in the order of its jobs.
struct CIScripts {
    enum Kind { case github, gitlab }

    struct Script: CustomStringConvertible {
        var job: String
        var text: String
        var description: String { "\(job): \(text)" }

        /// Runs it as the CI system would: bash, failing on the first failing command, in
        /// `directory` (on a thread of its own: a pipeline's apply takes seconds).
        func run(in directory: String, environment: [String: String]) async throws -> (output: String, status: Int32) {
            let script = "cd '\(directory.replacingOccurrences(of: "'", with: "'\\''"))'\n" + text
            let result = try await Command.run(["/bin/bash", "-eo", "pipefail", "-c", script], environment: environment, timeout: .seconds(300))
            return (result.standardOutput + result.standardError, result.status)
        }
    }

    var scripts: [Script] = []

    init(file: String, kind: Kind) throws {
        let composed = YAMLComposer.compose(Array(try Data(contentsOf: URL(fileURLWithPath: file))), file: file)
        guard composed.diagnostics.isEmpty, let root = composed.documents.first?.root ?? nil, case .mapping(let top) = root.content else {
            throw CocoaError(.fileReadCorruptFile, userInfo: ["file": file, "problems": "\(composed.diagnostics)"])
        }
        var jobs: [(String, YAMLNode)] = []
        switch kind {
        case .github:
            guard let section = root["jobs"], case .mapping(let pairs) = section.content else { return }
            jobs = pairs.compactMap { pair in pair.key.scalar.map { ($0, pair.value) } }
        case .gitlab:
            // Every top-level key that is not a keyword is a job.
            let keywords: Set = ["stages", "default", "variables", "include", "workflow", "image", "services", "cache"]
            jobs = top.compactMap { pair in pair.key.scalar.flatMap { keywords.contains($0) ? nil : ($0, pair.value) } }
        }
        for (job, body) in jobs {
            var texts: [String] = []
            switch kind {
            case .github:
                if let steps = body["steps"], case .sequence(let items) = steps.content {
                    texts = items.compactMap { $0["run"]?.scalar }
                }
            case .gitlab:
                for key in ["before_script", "script"] {
                    guard let lines = body[key] else { continue }
                    if case .sequence(let items) = lines.content { texts += items.compactMap(\.scalar) } else if let line = lines.scalar { texts.append(line) }
                }
            }
            for text in texts where text.contains("virtform ") { scripts.append(Script(job: job, text: text)) }
        }
    }
}
