import ArgumentParser
import Foundation
import VirtformModel
import VirtformPlanning
import VirtformState

/// `virtform drift`: the same comparison as plan, read as "what changed outside virtform".
struct DriftCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drift",
        abstract: "Report what differs from the manifests (for scheduled checks).",
        discussion: """
            Each difference is either changed outside virtform since it was applied (a virsh edit, a guest \
            stopped by hand, a LUN or reservation removed), told from virtform's marks, or in the manifests \
            but not applied yet (a merged change awaiting apply).

            Exit status: 0 no differences; 2 something changed outside virtform (or its cause cannot be \
            told); 3 only manifest changes that are not applied yet; 1 error (including a system that could \
            not be read).
            """
    )

    @OptionGroup var site: SiteOptions

    /// What `drift` writes.
    enum Format: String, ExpressibleByArgument, CaseIterable, Sendable {
        case text, json, junit
    }

    @Option(help: ArgumentHelp(
        "Output format: text, json, or junit (one test case per managed resource, for GitLab and Jenkins); FORMAT=FILE writes it to a file instead. Repeatable: one format for standard output (text when none), any number to files.",
        valueName: "format[=file]"))
    var format: [FormatRequest<Format>] = []

    @OptionGroup var reading: ReadOptions

    @OptionGroup var state: BackendOptions

    func validate() throws { _ = try FormatRequests(format, fallback: .text) }

    func run() async throws {
        let formats = try FormatRequests(format, fallback: .text)
        let desired = try site.load(json: formats.standardOutput == .json)
        let (backend, unreadable) = await state.openForReading(for: desired)
        let started = Date()
        var result = await Reconciliation.make(site: desired, options: .init(), timeout: reading.timeout, state: backend)
        if let unreadable { result.plan.warnings.append(unreadable) }
        let report = DriftReport(plan: result.plan)
        let output = Output.current
        if let backend {
            // The check goes into the history, so `history --drift` tells when drift appeared and went.
            do {
                try await Self.record(report, site: desired.name, started: started, in: backend)
            } catch {
                output.errorLine("warning: this drift check could not be recorded in the run history: \(error)")
            }
            await backend.close()
        }
        func render(_ format: Format, output: Output) -> String {
            switch format {
            case .text: report.text(output: output)
            case .json: report.json()
            case .junit: report.junit(site: desired)
            }
        }
        output.write(render(formats.standardOutput, output: output))
        try formats.writeFiles { render($0, output: .plain) }
        if !result.plan.errors.isEmpty || !result.plan.unreachable.isEmpty || !result.plan.unknown.isEmpty { throw ExitCode(1) }
        if !report.outside.isEmpty { throw ExitCode(2) }
        if !report.items.isEmpty { throw ExitCode(3) }
    }
}

extension DriftCommand {
    static func record(_ report: DriftReport, site: String, started: Date, in journal: any RunJournal) async throws {
        let holder = LockHolder.current(run: RunID.make(at: started), command: "virtform drift")
        var run = RunRecord.starting(.drift, site: site, holder: holder)
        run.startedAt = started
        run.planDigest = RunRecorder.digest(report.plan)
        let plan = report.plan
        let incomplete = !plan.errors.isEmpty || !plan.unknown.isEmpty || !plan.unreachable.isEmpty
        run.outcome = incomplete ? .failed : !report.outside.isEmpty ? .drifted : !report.items.isEmpty ? .unapplied : .clean
        run.counts = RunCounts(changes: report.items.count, outside: report.outside.count, unapplied: report.unapplied.count)
        if incomplete {
            run.message = (plan.unreachable.map { "\($0.system) could not be read: \($0.reason)" } + plan.errors.map { "\($0.resource): \($0.message)" }
                + plan.unknown.map { "\($0.resource): \($0.reason)" }).prefix(3).joined(separator: "; ")
        }
        run.finishedAt = Date()
        try await journal.begin(run)
        try await journal.record(report.items.enumerated().map { index, item in
            ActionRecord(run: run.id, sequence: index + 1, action: "\(item.kind) \(item.resource)", outcome: item.cause == .unapplied ? .unapplied : .outside,
                         message: Redaction.escapingControls(item.detail))
        })
    }
}

/// Plan changes described as drift: what is different now, and what the manifests say.
struct DriftReport {
    struct Item: Encodable, Equatable {
        var resource: String
        var host: String
        var kind: String
        var detail: String
        /// `outside`, `unapplied` or `unknown` (see `ChangeCause`).
        var cause: ChangeCause = .unknown
    }

    var items: [Item] = []
    var plan: Plan

    /// What changed outside virtform since it was applied, or whose cause cannot be told.
    var outside: [Item] { items.filter { $0.cause != .unapplied } }
    /// What the manifests ask for and is not applied yet.
    var unapplied: [Item] { items.filter { $0.cause == .unapplied } }

    init(plan: Plan) {
        self.plan = plan
        for change in plan.changes {
            let (kind, detail): (String, String)
            if change.system.kind != .host {
                // Storage and DHCP changes carry their own description of what differs.
                let kinds: [Change.Action: String] = [.create: "missing", .update: "changed", .delete: "extra"]
                let fields = change.fields.map { "\($0.field) is \($0.before), the manifest says \($0.after)" }
                items.append(Item(resource: change.resource, host: change.host, kind: kinds[change.action] ?? change.action.rawValue,
                                  detail: fields.isEmpty ? change.reason : fields.joined(separator: "; "), cause: change.cause))
                continue
            }
            switch change.action {
            case .create: (kind, detail) = ("missing", "the domain is defined on no host")
            case .update:
                (kind, detail) = ("changed", change.fields.isEmpty ? "virtform's mark is missing or stale"
                    : change.fields.map { "\($0.field) is \($0.before), the manifest says \($0.after)" }.joined(separator: "; "))
            case .start: (kind, detail) = ("stopped", change.reason)
            case .stop: (kind, detail) = ("running", "it runs, the manifest says power: stopped")
            case .delete: (kind, detail) = ("extra", "a managed domain that is no longer in the manifests")
            case .restart:
                (kind, detail) = ("restart pending", change.fields.map { "\($0.field) is \($0.before) in the running guest, its definition says \($0.after)" }
                    .joined(separator: "; "))
            case .migrate: (kind, detail) = ("misplaced", change.reason)
            case .fence: (kind, detail) = ("down", change.reason)
            }
            items.append(Item(resource: change.resource, host: change.host, kind: kind, detail: detail, cause: change.cause))
        }
    }

    /// How a cause reads after an item.
    static func note(_ cause: ChangeCause) -> String {
        switch cause {
        case .outside: "changed outside virtform since it was applied"
        case .unapplied: "in the manifests, not applied yet"
        case .unknown: "changed outside virtform, or not applied yet: virtform's marks cannot tell"
        }
    }

    func text(output: Output) -> String {
        // What systems and manifests said is escaped: no value can forge a line.
        func e(_ text: String) -> String { Redaction.escapingControls(text) }
        var lines: [String] = []
        func section(_ title: String, _ items: [Item]) {
            guard !items.isEmpty else { return }
            lines.append(output.paint(title, .bold))
            for item in items {
                lines.append("  \(output.paint(item.kind, .yellow)) \(e(item.resource)) on \(e(item.host)): \(e(item.detail))"
                    + (item.cause == .unknown ? " (virtform's marks cannot tell whether it changed outside virtform or is not applied yet)" : ""))
            }
        }
        section("Changed outside virtform since it was applied:", outside)
        section("In the manifests, not applied yet:", unapplied)
        for system in plan.unreachable {
            let endpoint = system.endpoint.map { " (\(e($0)))" } ?? ""
            lines.append(output.paint("error", .red) + (system.system.kind != .host
                ? ": \(system.system)\(endpoint) could not be read (\(e(system.reason))); what it holds is unknown"
                : ": host \(system.system.name) could not be read (\(e(system.reason))); its guests are unknown"))
        }
        for vm in plan.unknown { lines.append(output.paint("unknown", .yellow) + " \(e(vm.resource)): \(e(vm.reason))") }
        for problem in plan.errors { lines.append(output.paint("error", .red) + ": \(e(problem.resource)): \(e(problem.message))") }
        let incomplete = !plan.errors.isEmpty || !plan.unknown.isEmpty || !plan.unreachable.isEmpty
        if items.isEmpty {
            lines.append(incomplete ? "No drift found in what could be read, but the check is incomplete (see the errors above)."
                : "No drift: the hypervisors, storage and DHCP servers match the manifests.")
        } else {
            let counts = "\(outside.count) changed outside virtform, \(unapplied.count) not applied yet"
            lines.append("Drift: \(items.count) difference\(items.count == 1 ? "" : "s") (\(counts))\(incomplete ? "; the check is incomplete (see the errors above)" : "").")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    func json() -> String {
        struct Document: Encodable {
            var formatVersion = 2
            var drift: Bool
            /// Something changed outside virtform (or its cause cannot be told): exit status 2.
            var changedOutside: Bool
            var complete: Bool
            var items: [Item]
            var unreachable: [Plan.UnreachableSystem]
            var unknown: [Plan.UnknownVM]
            var errors: [Plan.Problem]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let document = Document(drift: !items.isEmpty, changedOutside: !outside.isEmpty, complete: plan.errors.isEmpty && plan.unknown.isEmpty && plan.unreachable.isEmpty,
                                items: items, unreachable: plan.unreachable, unknown: plan.unknown, errors: plan.errors)
        return String(decoding: try! encoder.encode(document), as: UTF8.self) + "\n"
    }
}
