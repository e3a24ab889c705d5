import Foundation
import Testing
import VirtformManifests
import VirtformModel

/// Thousands of damaged copies of the reference manifests: every run must end, and end with
/// either a valid site or errors that each name a place and say something.
@Suite("Mutated manifests")
struct MutationTests {
    static let seedText: String = {
        let directory = SiteFixture.repositoryRoot.appendingPathComponent("manifests")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return files.sorted().filter { $0.hasSuffix(".yaml") }
            .compactMap { try? String(contentsOf: directory.appendingPathComponent($0), encoding: .utf8) }
            .joined(separator: "\n---\n")
    }()

    /// Ways to damage YAML that people and tools really produce.
    static func mutate(_ text: String, using generator: inout SeededGenerator) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let tokens = ["", "~", "null", "[", "]", "{", "}", "- ", ": ", "&a ", "*a", "<<: *a", "!!str", "\"", "'", "\t",
                      "-1", "1.5 lemons", "99999999999999999999", "yes", "0x1F", "\u{0}", "é", "---", "...", "? ", "|", ">"]
        for _ in 0..<Int.random(in: 1...4, using: &generator) {
            guard !lines.isEmpty else { break }
            let i = Int.random(in: 0..<lines.count, using: &generator)
            switch Int.random(in: 0..<7, using: &generator) {
            case 0: lines.remove(at: i)
            case 1: lines.insert(lines[i], at: i)
            case 2: lines[i] = "  " + lines[i]
            case 3: lines[i] = String(lines[i].dropFirst(min(2, lines[i].count)))
            case 4:
                let token = tokens.randomElement(using: &generator)!
                let line = lines[i]
                let at = line.index(line.startIndex, offsetBy: Int.random(in: 0...line.count, using: &generator))
                lines[i] = String(line[..<at]) + token + String(line[at...])
            case 5:
                if let colon = lines[i].firstIndex(of: ":") {
                    lines[i] = String(lines[i][...colon]) + " " + tokens.randomElement(using: &generator)!
                }
            default:
                let j = Int.random(in: 0..<lines.count, using: &generator)
                lines.swapAt(i, j)
            }
        }
        return lines.joined(separator: "\n")
    }

    @Test func thousandsOfMutationsEndInValidSitesOrCleanErrors() {
        #expect(!Self.seedText.isEmpty, "the reference manifests were not found")
        var generator = SeededGenerator(seed: 2026)
        var invalid = 0
        // 3,000 in CI; VIRTFORM_MUTANTS=10000 for the longer run docs/reliability.md records.
        let runs = ProcessInfo.processInfo.environment["VIRTFORM_MUTANTS"].flatMap { Int($0) } ?? 3_000
        for run in 0..<runs {
            let text = Self.mutate(Self.seedText, using: &generator)
            let result = ManifestLoader.load(text: text, name: "mutant-\(run).yaml")
            if result.isValid { continue }
            invalid += 1
            let lineCount = text.split(separator: "\n", omittingEmptySubsequences: false).count
            for diagnostic in result.diagnostics {
                #expect(!diagnostic.message.isEmpty)
                #expect(diagnostic.location.file == "mutant-\(run).yaml")
                #expect((1...lineCount + 1).contains(diagnostic.location.line), "run \(run): \(diagnostic)")
                #expect(diagnostic.location.column >= 1)
            }
        }
        // Most damage must be caught; a few mutations (a swapped comment, a re-indented blank) are harmless.
        #expect(invalid > runs / 2)
    }
}
