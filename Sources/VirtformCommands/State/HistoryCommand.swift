import ArgumentParser
import Foundation
import VirtformState

/// `virtform history [RUN]`: what each apply and drift check did, from the site's journal.
struct HistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "List the site's runs (applies and drift checks), newest first, or show one run's actions.",
        discussion: "With --drift: the drift checks, and for each the changes that appeared or went since the check before it."
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    @Argument(help: "Show this run and every action it took.")
    var run: String?

    @Option(help: "How many runs to list.")
    var limit = 20

    @Flag(help: "Drift checks only, with what appeared and went.")
    var drift = false

    @Flag(help: "Every site's runs, not only this site's.")
    var allSites = false

    @Option(help: "text or json.")
    var format: Format = .text

    @OptionGroup var target: StateSiteOptions

    func validate() throws {
        if limit < 1 { throw ValidationError("--limit must be 1 or more, not \(limit)") }
    }

    func run() async throws {
        let site = try target.resolve()
        let backend = try await target.backend.open(for: site)
        do {
            try await show(backend, site: site.name)
        } catch {
            await backend.close()
            if error is ExitCode { throw error }
            throw CommandFailure("\(error)")
        }
        await backend.close()
    }

    private func show(_ backend: any StateBackend, site: String) async throws {
        let output = Output.current
        if let run {
            guard let record = try await backend.run(run) else { throw CommandFailure("no run \(run) in the history of \(backend.location)") }
            let actions = try await backend.actions(of: run)
            if format == .json {
                struct Document: Encodable {
                    var run: RunRecord
                    var actions: [ActionRecord]
                }
                output.line(try Self.json(Document(run: record, actions: actions)))
                return
            }
            output.line(Self.describe(record))
            for action in actions {
                let time = action.finishedAt.flatMap { finished in action.startedAt.map { PlanExecution.milliseconds(.milliseconds(Int(finished.timeIntervalSince($0) * 1000))) } }
                output.line("  \(Self.mark(action.outcome)) \(action.action)\(time.map { " (\($0))" } ?? "")"
                    + (action.outcome == .succeeded ? "" : " — \(action.outcome.rawValue.replacingOccurrences(of: "_", with: " "))")
                    + (action.message.map { ": \($0)" } ?? ""))
            }
            if actions.isEmpty { output.line("  (no actions)") }
            return
        }
        let runs = try await backend.runs(RunQuery(site: allSites ? nil : site, kind: drift ? .drift : nil, limit: limit))
        if drift {
            try await showDrift(runs, backend: backend)
            return
        }
        if format == .json {
            output.line(try Self.json(runs))
            return
        }
        if runs.isEmpty {
            output.line("No runs recorded for \(allSites ? "any site" : "site \(site)") in \(backend.location).")
            return
        }
        let rows = runs.map { run -> [String] in
            [run.id, run.kind.rawValue, Self.time(run.startedAt), run.duration.map { Self.seconds($0) } ?? "-", run.outcome.rawValue,
             Self.counts(run), "\(run.user)@\(run.machine)" + (allSites ? " (\(run.site))" : "")]
        }
        output.write(Self.table(["RUN", "KIND", "STARTED", "TOOK", "OUTCOME", "CHANGES", "BY"], rows))
    }

    /// Each drift check, oldest first, with what differed that the check before did not see, and what went.
    private func showDrift(_ runs: [RunRecord], backend: any StateBackend) async throws {
        let output = Output.current
        var checks: [(run: RunRecord, found: [String: ActionRecord.Outcome])] = []
        for run in runs.reversed() {
            let found = try await backend.actions(of: run.id).reduce(into: [String: ActionRecord.Outcome]()) { $0[$1.action] = $1.outcome }
            checks.append((run, found))
        }
        if format == .json {
            struct Check: Encodable {
                var run: RunRecord
                var appeared: [String]
                var went: [String]
                var still: [String]
            }
            var previous: [String: ActionRecord.Outcome] = [:]
            let document = checks.map { check -> Check in
                defer { previous = check.found }
                return Check(run: check.run, appeared: check.found.keys.filter { previous[$0] == nil }.sorted(),
                             went: previous.keys.filter { check.found[$0] == nil }.sorted(),
                             still: check.found.keys.filter { previous[$0] != nil }.sorted())
            }
            output.line(try Self.json(Array(document.reversed())))
            return
        }
        if checks.isEmpty {
            output.line("No drift checks recorded in \(backend.location).")
            return
        }
        var previous: [String: ActionRecord.Outcome]?
        for (run, found) in checks {
            let header = "\(Self.time(run.startedAt))  \(run.id)  \(run.outcome.rawValue)"
            guard let before = previous else {
                output.line(header + (found.isEmpty ? "" : ": \(found.count) differ\(found.count == 1 ? "s" : "")"))
                for (action, outcome) in found.sorted(by: { $0.key < $1.key }) { output.line("  + \(action) (\(outcome.rawValue))") }
                previous = found
                continue
            }
            let appeared = found.keys.filter { before[$0] == nil }.sorted()
            let went = before.keys.filter { found[$0] == nil }.sorted()
            output.line(header + (appeared.isEmpty && went.isEmpty ? (found.isEmpty ? "" : " (as before)") : ""))
            for action in appeared { output.line("  + \(action) (\(found[action]!.rawValue)): appeared") }
            for action in went { output.line("  - \(action): went") }
            previous = found
        }
    }

    static func describe(_ run: RunRecord) -> String {
        var lines = ["Run \(run.id): \(run.kind.rawValue) of site \(run.site), \(run.outcome.rawValue)",
                     "  by \(run.user)@\(run.machine), started \(time(run.startedAt))" + (run.duration.map { ", took \(seconds($0))" } ?? ", not finished")]
        if let digest = run.planDigest { lines.append("  plan \(digest)") }
        if let url = run.ciJobURL { lines.append("  CI job \(url)") }
        lines.append("  " + counts(run))
        if let message = run.message { lines.append("  \(message)") }
        return lines.joined(separator: "\n")
    }

    static func counts(_ run: RunRecord) -> String {
        let c = run.counts
        if run.kind == .drift { return c.outside + c.unapplied == 0 ? "clean" : "\(c.outside) outside, \(c.unapplied) unapplied" }
        var parts = ["\(c.changes) change\(c.changes == 1 ? "" : "s")"]
        if c.succeeded > 0 { parts.append("\(c.succeeded) done") }
        if c.failed > 0 { parts.append("\(c.failed) failed") }
        if c.skipped > 0 { parts.append("\(c.skipped) skipped") }
        if c.notStarted > 0 { parts.append("\(c.notStarted) not started") }
        if c.blocked > 0 { parts.append("\(c.blocked) blocked") }
        return parts.joined(separator: ", ")
    }

    static func mark(_ outcome: ActionRecord.Outcome) -> String {
        switch outcome {
        case .succeeded: "✓"
        case .failed: "✗"
        case .skipped, .notStarted: "-"
        case .outside, .unapplied: "~"
        }
    }

    static func time(_ date: Date) -> String { ISO8601DateFormatter().string(from: date) }

    static func seconds(_ value: Double) -> String { value < 10 ? String(format: "%.1fs", value) : "\(Int(value.rounded()))s" }

    static func json<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func table(_ header: [String], _ rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { column, cell in column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }
}
