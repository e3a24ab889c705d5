import Foundation
import Testing
import VirtformManifests
import VirtformModel

/// Input that must end in a clean error: never a crash, a hang or a stack trace.
@Suite("Hostile input")
struct HostileInputTests {
    private func load(_ bytes: [UInt8]) -> LoadResult {
        ManifestLoader.load(text: String(decoding: bytes, as: UTF8.self), name: "x.yaml")
    }

    @Test func emptyFilesAreValidAndEmpty() throws {
        let directory = try TemporaryDirectory()
        try directory.write("empty.yaml", "")
        try directory.write("comments.yaml", "# nothing here\n---\n---\n")
        let result = ManifestLoader.load(paths: [directory.path])
        #expect(result.isValid)
        #expect(result.site.objectCount == 0)
    }

    @Test func binaryJunk() throws {
        var generator = SeededGenerator(seed: 7)
        let directory = try TemporaryDirectory()
        for i in 0..<20 {
            let junk = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) }
            try directory.write("junk-\(i).yaml", Data(junk))
        }
        let result = ManifestLoader.load(paths: [directory.path])
        #expect(!result.isValid)
        #expect(result.diagnostics.filter { $0.severity == .error }.count >= 20)
        #expect(result.diagnostics.allSatisfy { !$0.message.isEmpty })
    }

    @Test func invalidUTF8IsNamed() throws {
        let directory = try TemporaryDirectory()
        try directory.write("latin1.yaml", Data([0x6b, 0x69, 0x6e, 0x64, 0x3a, 0x20, 0xe9, 0x0a]))
        let result = ManifestLoader.load(paths: [directory.path])
        let diagnostic = try #require(result.diagnostics.first)
        #expect(diagnostic.message.contains("UTF-8"))
    }

    @Test func aliasBombIsRefused() {
        var lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        for i in 1..<10 {
            lines.append("a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]")
        }
        let start = ContinuousClock.now
        let result = ManifestLoader.load(text: lines.joined(separator: "\n"), name: "bomb.yaml")
        #expect(result.diagnostics.contains { $0.message.contains("alias bomb") })
        #expect(start.duration(to: .now) < .seconds(10))
    }

    @Test func aliasBombAsMappingKeyIsRefused() {
        var lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        for i in 1..<10 {
            lines.append("a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]")
        }
        lines.append("? *a3\n: boom")
        let result = ManifestLoader.load(text: lines.joined(separator: "\n"), name: "bomb.yaml")
        #expect(!result.isValid)
    }

    @Test func deepNestingIsRefused() {
        let flow = ManifestLoader.load(text: String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000))
        #expect(flow.diagnostics.contains { $0.message.contains("nesting is deeper than") })
        let block = ManifestLoader.load(text: String(repeating: "- ", count: 5_000) + "x\n")
        #expect(block.diagnostics.contains { $0.message.contains("nesting is deeper than") })
    }

    @Test func hugeFilesAreRefusedUnread() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.write("huge.yaml", "")
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: 100 << 20)  // 100 MiB, sparse
        try handle.close()
        let result = ManifestLoader.load(paths: [path])
        let diagnostic = try #require(result.diagnostics.first)
        #expect(diagnostic.message.contains("larger than the 32MiB"))
    }

    @Test func notARegularFile() {
        let result = ManifestLoader.load(paths: ["/dev/zero", "/no/such/path"])
        #expect(result.diagnostics.map(\.message).sorted() == ["no such file or directory", "not a regular file"])
    }

    @Test func documentsThatAreNotMappings() {
        let result = ManifestLoader.load(text: "- a\n- b\n---\nplain\n---\n42\n")
        #expect(result.diagnostics.count == 3)
        #expect(result.diagnostics.allSatisfy { $0.message.hasPrefix("a manifest document must be a mapping") })
    }

    @Test func mergeKeysWorkAndExplicitKeysWin() throws {
        let text = SiteFixture.base + """
            ---
            apiVersion: virtform.io/v1alpha1
            kind: VirtualMachine
            metadata: {name: vm-2}
            spec:
              <<: &defaults {project: appl-1, memory: 2GiB, vcpus: 1, placement: {host: h2}}
              memory: 512MiB
            """
        let result = ManifestLoader.load(text: text)
        #expect(result.isValid, "\(result.diagnostics)")
        let vm = try #require(result.site.virtualMachines.first { $0.name == "vm-2" })
        #expect(vm.memory == .mebibytes(512))
        #expect(vm.placement == .host("h2"))
    }
}

/// A small deterministic generator, so failures reproduce.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }

    mutating func next() -> UInt64 {
        // xorshift64*
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
}
