import ArgumentParser
import Foundation
import VirtformModel
import VirtformPlanning

/// `virtform drift`: the same comparison as plan, read as "what changed outside virtform".
struct DriftCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drift",
        abstract: "Report what differs from the manifests (for scheduled checks).",
        discussion: "Exit status: 0 no drift, 2 drift, 1 error (including a host that could not be read)."
    )

    @OptionGroup var site: SiteOptions

    /// What `drift` writes.
    enum Format: String, ExpressibleByArgument, CaseIterable {
        case text, json, junit
    }

    @Option(help: "Output format: text, json, or junit (one test case per managed resource, for GitLab and Jenkins).")
    var format: Format = .text

    @OptionGroup var reading: ReadOptions

    func run() async throws {
        let desired = try site.load(json: format == .json)
        let result = await Reconciliation.make(site: desired, options: .init(), timeout: reading.timeout)
        let report = DriftReport(plan: result.plan)
        let output = Output.current
        switch format {
        case .text: output.write(report.text(output: output))
        case .json: output.write(report.json())
        case .junit: output.write(report.junit(site: desired))
        }
        if !result.plan.errors.isEmpty || !result.plan.unreachable.isEmpty || !result.plan.unknown.isEmpty { throw ExitCode(1) }
        if !report.items.isEmpty { throw ExitCode(2) }
    }
}

/// Plan changes described as drift: what is different now, and what the manifests say.
struct DriftReport {
    struct Item: Encodable, Equatable {
        var resource: String
        var host: String
        var kind: String
        var detail: String
    }

    var items: [Item] = []
    var plan: Plan

    init(plan: Plan) {
        self.plan = plan
        for change in plan.changes {
            let (kind, detail): (String, String)
            if change.system.kind != .host {
                // Storage and DHCP changes carry their own description of what differs.
                let kinds: [Change.Action: String] = [.create: "missing", .update: "changed", .delete: "extra"]
                let fields = change.fields.map { "\($0.field) is \($0.before), the manifest says \($0.after)" }
                items.append(Item(resource: change.resource, host: change.host, kind: kinds[change.action] ?? change.action.rawValue,
                                  detail: fields.isEmpty ? change.reason : fields.joined(separator: "; ")))
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
            }
            items.append(Item(resource: change.resource, host: change.host, kind: kind, detail: detail))
        }
    }

    func text(output: Output) -> String {
        // What systems and manifests said is escaped: no value can forge a line.
        func e(_ text: String) -> String { Redaction.escapingControls(text) }
        var lines = items.map { "\(output.paint($0.kind, .yellow)) \(e($0.resource)) on \(e($0.host)): \(e($0.detail))" }
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
            lines.append("Drift: \(items.count) difference\(items.count == 1 ? "" : "s")\(incomplete ? "; the check is incomplete (see the errors above)" : "").")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    func json() -> String {
        struct Document: Encodable {
            var formatVersion = 2
            var drift: Bool
            var complete: Bool
            var items: [Item]
            var unreachable: [Plan.UnreachableSystem]
            var unknown: [Plan.UnknownVM]
            var errors: [Plan.Problem]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let document = Document(drift: !items.isEmpty, complete: plan.errors.isEmpty && plan.unknown.isEmpty && plan.unreachable.isEmpty,
                                items: items, unreachable: plan.unreachable, unknown: plan.unknown, errors: plan.errors)
        return String(decoding: try! encoder.encode(document), as: UTF8.self) + "\n"
    }
}
