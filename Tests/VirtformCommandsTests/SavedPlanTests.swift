import Foundation
import Testing

/// What `apply --plan` refuses before it reads anything else; no lab needed.
@Suite("Saved plans without a lab")
struct SavedPlanTests {
    func withFile(_ text: String, _ body: (String) async throws -> Void) async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("virtform-saved-\(UUID().uuidString).json").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await body(path)
    }

    @Test func aPlanOfAnotherFormatIsRefusedNamingIt() async throws {
        try await withFile(#"{"format_version": "1", "changes": []}"#) { path in
            let (output, code) = await runVirtform(["apply", "--auto-approve", "--plan", path])
            #expect(code == 1)
            #expect(output.contains("is a plan of format 1; this virtform reads format 2"), "\(output)")
        }
    }

    @Test func aJSONPathWithoutPlanIsAMistakeWithAHint() async throws {
        try await withFile("{}") { path in
            let (output, code) = await runVirtform(["apply", "--auto-approve", path])
            #expect(code == 64, "\(output)")
            #expect(output.contains("apply it with `virtform apply --plan"), "\(output)")
        }
    }

    @Test func aTruncatedPlanIsRefused() async throws {
        try await withFile(#"{"format_version": 2, "changes": []}"#) { path in
            let (output, code) = await runVirtform(["apply", "--auto-approve", "--plan", path])
            #expect(code == 1)
            #expect(output.contains("is not a saved plan"), "\(output)")
        }
    }
}
