import Foundation
import Testing

/// `virtform fmt` rewrites only what is not canonical, keeps each file's mode, and with
/// `--check` writes nothing, lists the files and exits 1 (for CI).
@Suite("virtform fmt")
struct FmtCommandTests {
    @Test func checkListsRewriteFixesAndACanonicalFileIsLeftAlone() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vftest-fmt-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory + "/sub", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let messy = directory + "/sub/web.yaml", tidy = directory + "/site.yaml", broken = directory + "/broken.yaml"
        let messyText = "kind: Site\n# the name\nmetadata: {name: lab}   # ours\napiVersion: virtform.io/v1alpha1\nspec: {}\n"
        try messyText.write(toFile: messy, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o640], ofItemAtPath: messy)
        try "apiVersion: virtform.io/v1alpha1\nkind: Site\nmetadata:\n  name: lab\nspec: {}\n".write(toFile: tidy, atomically: true, encoding: .utf8)
        let tidyModified = try FileManager.default.attributesOfItem(atPath: tidy)[.modificationDate] as? Date

        var (output, code) = await runVirtform(["fmt", "--check", directory])
        #expect(code == 1 && output.hasPrefix(messy + "\n") && output.contains("1 file is not in canonical format"), "\(output)")
        #expect(try String(contentsOfFile: messy, encoding: .utf8) == messyText, "--check writes nothing")

        (output, code) = await runVirtform(["fmt", directory])
        #expect(code == 0 && output == "formatted \(messy)\n", "\(output)")
        #expect(try String(contentsOfFile: messy, encoding: .utf8)
            == "apiVersion: virtform.io/v1alpha1\nkind: Site\n# the name\nmetadata:  # ours\n  name: lab\nspec: {}\n")
        #expect(try FileManager.default.attributesOfItem(atPath: messy)[.posixPermissions] as? Int == 0o640, "its mode is kept")
        #expect(try FileManager.default.attributesOfItem(atPath: tidy)[.modificationDate] as? Date == tidyModified, "a canonical file is not rewritten")
        (output, code) = await runVirtform(["fmt", "--check", directory])
        #expect(code == 0 && output.isEmpty, "\(output)")

        // Invalid YAML is named with its place and left as it is.
        try "a: [1, 2\n".write(toFile: broken, atomically: true, encoding: .utf8)
        (output, code) = await runVirtform(["fmt", directory])
        #expect(code == 1 && output.contains(broken + ":") && output.contains("error"), "\(output)")
        #expect(try String(contentsOfFile: broken, encoding: .utf8) == "a: [1, 2\n")
    }
}
