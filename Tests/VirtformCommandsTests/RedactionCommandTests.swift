import Foundation
import Testing
@testable import VirtformCommands

/// A password in a host URI appears in no output: text, JSON, a saved plan, drift, apply,
/// validate, errors.
@Suite("Secrets in every output")
struct RedactionCommandTests {
    static let secret = "s3cret-pw"

    @Test func aPasswordInAHostURIIsNeverWritten() async throws {
        // Port 1 on loopback refuses at once: the host is unreachable, and its URI is in the reason.
        let directory = try writeLoopbackSite("secrets", uri: "qemu+tcp://admin:\(Self.secret)@127.0.0.1:1/system", extraHost: """
            ---
            apiVersion: virtform.io/v1alpha1
            kind: Host
            metadata: {name: h2}
            spec:
              uri: "qemu+tcp://admin:\(Self.secret)@127.0.0.1:1/other"
              capacity: {memory: 0, vcpus: 1}
              bridges: [fe0]

            """)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let saved = directory + "/plan.json"
        var everything = ""
        // Invalid first (memory: 0), then valid.
        for arguments in [["validate"], ["validate", "--format", "json"], ["plan"], ["plan", "--format", "json"]] {
            let (output, code) = await runVirtform(arguments + [directory])
            #expect(code == 1, "\(arguments): \(output)")
            everything += output
        }
        try String(contentsOfFile: directory + "/site.yaml", encoding: .utf8).replacingOccurrences(of: "memory: 0", with: "memory: 1GiB")
            .write(toFile: directory + "/site.yaml", atomically: true, encoding: .utf8)
        for arguments in [["validate"], ["plan"], ["plan", "--format", "json"], ["plan", "--out", saved], ["drift"], ["drift", "--format", "json"],
                          ["apply", "--auto-approve"]] {
            let (output, _) = await runVirtform(arguments + [directory])
            everything += output
        }
        everything += (try? String(contentsOfFile: saved, encoding: .utf8)) ?? ""
        #expect(!everything.contains(Self.secret), "\(everything)")
        #expect(everything.contains("admin:(sensitive)@127.0.0.1"), "\(everything)")
    }
}
