import Foundation
import Testing
import VirtformManifests
import VirtformModel

/// `virtform fmt`'s canonical text: key order, indentation and quoting made canonical, values and
/// comments kept, and nothing written that would not read back the same.
@Suite("Manifest formatter")
struct FormatterTests {
    static let messy = """
        # The web tier.
        # Two lines of header.
        ---
        kind: VirtualMachine   # what it is
        spec:
            power: running
            project: 'appl'
            # memory in MiB
            memory: 1024
            interfaces: [{network: public, mac: "02:00:00:00:10:01"}, {network: backend}]
            placement: {host: lab-h1}


            vcpus: 2
        metadata: {labels: {tier: web, "odd key": 'x'}, name: web-1}
        apiVersion: virtform.io/v1alpha1
        # between the documents
        ---
        apiVersion: virtform.io/v1alpha1
        kind: Site
        metadata:
          name: lab
          annotations:
            note: |
              First line.
                # not a comment: inside the block
              Last line.
        spec: {}
        # the end

        """

    static let canonical = """
        # The web tier.
        # Two lines of header.
        apiVersion: virtform.io/v1alpha1
        kind: VirtualMachine  # what it is
        metadata:
          name: web-1
          labels:
            tier: web
            "odd key": "x"
        spec:
          project: "appl"
          # memory in MiB
          memory: 1024

          vcpus: 2
          interfaces:
            - network: public
              mac: "02:00:00:00:10:01"
            - network: backend
          placement:
            host: lab-h1
          power: running
        # between the documents
        ---
        apiVersion: virtform.io/v1alpha1
        kind: Site
        metadata:
          name: lab
          annotations:
            note: |
              First line.
                # not a comment: inside the block
              Last line.
        spec: {}
        # the end

        """

    static func formatted(_ text: String) -> String? {
        if case .formatted(let out) = ManifestFormatter.format(text, file: "t.yaml") { return out }
        return nil
    }

    @Test func keyOrderIndentationAndQuotingAreCanonicalAndCommentsStay() throws {
        let out = try #require(Self.formatted(Self.messy))
        #expect(out == Self.canonical)
        #expect(Self.formatted(out) == out, "formatting is idempotent")
        // The same objects as before.
        let before = ManifestLoader.load(text: Self.messy), after = ManifestLoader.load(text: out)
        #expect(before.site.virtualMachines.map(\.memory) == after.site.virtualMachines.map(\.memory))
        #expect(before.site.virtualMachines.map(\.interfaces) == after.site.virtualMachines.map(\.interfaces))
        #expect(before.site.declarations.map(\.meta.annotations) == after.site.declarations.map(\.meta.annotations))
    }

    @Test func shortListsOfWordsStayOnOneLine() throws {
        let text = "apiVersion: virtform.io/v1alpha1\nkind: Host\nmetadata:\n  name: h\nspec:\n  bridges:\n    - fe0\n    - be0\n  notes: [\"a, b\"]\n"
        let out = try #require(Self.formatted(text))
        #expect(out.contains("  bridges: [fe0, be0]\n"), "\(out)")
        #expect(out.contains("  notes:\n    - \"a, b\"\n"), "a quoted item keeps its quotes, in block style: \(out)")
        // A comment among the items keeps them one per line, with it.
        let commented = try #require(Self.formatted("spec:\n  bridges:\n    - fe0  # front\n    - be0\n"))
        #expect(commented == "spec:\n  bridges:\n    - fe0  # front\n    - be0\n", "\(commented)")
    }

    @Test func scalarsKeepTheirKind() throws {
        let text = "a: '1024'\nb: 1024\nc: \"x\\ty\"\nd: ''\ne:\nf: !!str 12\ng: |-\n  no newline\nh: |+\n  kept\n\n"
        let out = try #require(Self.formatted(text))
        // One line of text is quoted; several lines are a literal block whose chomping keeps its line breaks.
        #expect(out == "a: \"1024\"\nb: 1024\nc: \"x\\ty\"\nd: \"\"\ne:\nf: !!str 12\ng: \"no newline\"\nh: |+\n  kept\n\n", "\(out)")
    }

    @Test func anchorsInvalidYAMLAndTheUnsafeAreRefused() {
        guard case .refused(let anchors) = ManifestFormatter.format("a: &x {b: 1}\nc: *x\n", file: "t.yaml") else {
            Issue.record("anchors were formatted")
            return
        }
        #expect(anchors.first?.message.contains("anchors and aliases") == true)
        guard case .refused(let invalid) = ManifestFormatter.format("a: [1, 2\n", file: "t.yaml") else {
            Issue.record("invalid YAML was formatted")
            return
        }
        #expect(invalid.first?.location.line ?? 0 > 0, "the syntax error names its place: \(invalid)")
    }

    /// The reference manifests and the examples are canonical: `virtform fmt --check` passes on them.
    @Test func theRepositorysManifestsAreCanonical() throws {
        let root = SiteFixture.repositoryRoot
        let paths = ["manifests", "examples/single-vm", "examples/pinned-vm", "examples/spread-cluster"].map { root.appendingPathComponent($0).path }
        let files = ManifestLoader.files(in: paths).files
        #expect(files.count >= 10)
        for file in files {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            #expect(Self.formatted(text) == text, "\(file) is not canonical; run virtform fmt on it")
        }
    }

    /// Generated documents with comments in every place a comment can go: each formats, reads
    /// back the same, keeps every comment and is stable.
    @Test func commentsAnywhereAreKept() throws {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var lines: [String] = []
            var comments = 0
            func maybeComment(_ indent: Int) {
                if Bool.random(using: &generator) {
                    lines.append(String(repeating: " ", count: indent) + "# c\(comments)")
                    comments += 1
                }
            }
            maybeComment(0)
            lines.append("kind: VirtualMachine" + (Bool.random(using: &generator) ? "  # k\(comments)" : ""))
            if lines.last!.contains("# k") { comments += 1 }
            maybeComment(0)
            lines.append("spec:")
            for key in ["vcpus: 2", "project: appl", "power: running", "memory: 64MiB"].shuffled(using: &generator) {
                maybeComment(2)
                let trailing = Bool.random(using: &generator)
                lines.append("  " + key + (trailing ? "  # t\(comments)" : ""))
                if trailing { comments += 1 }
            }
            lines.append("  interfaces:")
            for network in ["public", "backend"] {
                maybeComment(4)
                lines.append("    - {network: \(network)}")
            }
            maybeComment(0)
            let text = lines.joined(separator: "\n") + "\n"
            let out = try #require(Self.formatted(text), "refused:\n\(text)")
            #expect(out.components(separatedBy: "# ").count - 1 == comments, "\(text)\n→\n\(out)")
            #expect(Self.formatted(out) == out, "not stable:\n\(out)")
        }
    }
}
