import Foundation
import Testing
import VirtformModel
import VirtformState
@testable import VirtformCommands

/// Where a site's lock and history live, and what happens when that place cannot be used; no lab needed.
@Suite("The state backend's configuration")
struct BackendOptionTests {
    func withSite(backend: String?, _ body: (String) async throws -> Void) async throws {
        let directory = NSTemporaryDirectory() + "vftest-backend-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory + "/site", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spec = backend.map { "{backend: \"\($0)\"}" } ?? "{}"
        try """
            apiVersion: virtform.io/v1alpha1
            kind: Site
            metadata: {name: team}
            spec: \(spec)
            """.write(toFile: directory + "/site/site.yaml", atomically: true, encoding: .utf8)
        try await body(directory)
    }

    @Test func theSiteDocumentNamesTheBackendRelativeToItsFile() async throws {
        try await withSite(backend: "file:state") { directory in
            let site = try SiteOptions.parse([directory + "/site"]).load()
            let location = try BackendOptions.parse([]).location(for: site, environment: [:])
            #expect(location == .embedded(directory: directory + "/site/state"))
            // The option, then the environment, come first.
            #expect(try BackendOptions.parse([]).location(for: site, environment: ["VIRTFORM_BACKEND": "file:/srv/x"]) == .embedded(directory: "/srv/x"))
            #expect(try BackendOptions.parse(["--backend", "file:/srv/y"]).location(for: site, environment: ["VIRTFORM_BACKEND": "file:/srv/x"])
                == .embedded(directory: "/srv/y"))
            // history and lock find the same place through the manifests.
            let (output, code) = await runVirtform(["history", "--manifests", directory + "/site"])
            #expect(code == 0 && output.contains("No runs recorded for site team in file:\(directory)/site/state"), "\(output)")
        }
    }

    @Test func aPasswordInTheManifestIsRefusedWithItsPlace() async throws {
        try await withSite(backend: "postgres://operations-team:s3cret-and-long@db1.example.org:5432/virtform") { directory in
            let (output, code) = await runVirtform(["validate", directory + "/site"])
            #expect(code == 1, "\(output)")
            #expect(output.contains("site.yaml:4:") && output.contains("spec.backend") && output.contains("PGPASSWORD"), "\(output)")
            #expect(!output.contains("s3cret"), "the password is never shown:\n\(output)")
        }
    }

    @Test func aBackendThatCannotBeReachedStopsAnApplyButNotAPlan() async throws {
        try await withSite(backend: nil) { directory in
            let unreachable = "postgres://virtform@127.0.0.1:9/virtform"
            var (output, code) = await runVirtform(["plan", "--backend", unreachable, directory + "/site"])
            #expect(code == 0, "\(output)")
            #expect(output.contains("warning") && output.contains("the apply lock and run history cannot be read: cannot reach the state backend"), "\(output)")
            (output, code) = await runVirtform(["apply", "--auto-approve", "--backend", unreachable, directory + "/site"])
            #expect(code == 1 && output.contains("cannot reach the state backend \(unreachable)"), "\(output)")
        }
    }
}
