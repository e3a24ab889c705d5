import Foundation
import VirtformModel

/// A plan as Markdown for a pull-request comment or a CI step summary: a destroy warning first,
/// the counts, the changes grouped by system (a system with many changes folded in
/// `<details>`), then what is blocked, unknown, unread or wrong. Never longer than `limit`
/// characters (GitHub takes 65,536 in a comment): whole sections are left out from the end,
/// and a last line says what was cut and where the whole plan is.
public enum PlanMarkdown {
    /// GitHub's limit for a comment.
    public static let commentLimit = 65_536
    /// What a step summary may hold (GitHub: 1 MiB per step).
    public static let summaryLimit = 1 << 20
    /// Systems with more changes than this are folded.
    static let foldAbove = 10

    public static func render(_ plan: Plan, limit: Int = commentLimit) -> String {
        let s = plan.summary
        var head = "### virtform plan — site `\(cell(plan.site))`\n\n"
        if s.delete > 0 {
            let deletions = plan.changes.filter { $0.action == .delete }
            let applied = deletions.filter { $0.blocked == nil }.count
            let named: [String] = deletions.prefix(5).map { "`\(cell($0.resource))`" }
            let blockedNote = applied < s.delete ? " (\(applied) with this plan's allowances, the rest blocked)" : ""
            head += "> [!WARNING]\n> **\(s.delete) to delete**\(blockedNote): " + named.joined(separator: ", ") + (s.delete > 5 ? ", …" : "") + "\n\n"
        }
        head += PlanRenderer.headline(plan).split(separator: "\n").map { "**\(cell(String($0)))**" }.joined(separator: "<br>\n") + "\n"
        for warning in plan.warnings { head += "\n> \(cell(warning))\n" }

        var sections: [String] = []
        var bySystem: [SystemAddress: [Change]] = [:]
        for change in plan.changes { bySystem[change.system, default: []].append(change) }
        for system in bySystem.keys.sorted() {
            let changes = bySystem[system]!
            let title = "\(system.kind == .host ? "Host \(system.name)" : system.description) — \(changes.count) change\(changes.count == 1 ? "" : "s")"
            var table = "| | resource | action | details |\n|---|---|---|---|\n"
            for change in changes {
                let (symbol, _) = PlanRenderer.symbolAndColor(change.action)
                var details: [String] = []
                if change.action == .create, let domain = change.after?.domain { details.append(PlanRenderer.summary(domain)) }
                if let summary = change.summary { details.append(summary) }
                details += change.fields.map { "\($0.field): \($0.before) → \($0.after)\($0.label.map { " (\($0))" } ?? "")" }
                if let note = PlanRenderer.causeNote(change.cause) { details.append("_\(note)_") }
                if let blocked = change.blocked { details.append("**not applied:** \(blocked)") }
                let action = change.action.rawValue + (change.destination.map { " → \($0)" } ?? "")
                    + (change.changeClass.map { " (\($0.label))" } ?? "")
                table += "| \(symbol) | `\(cell(change.resource))` | \(cell(action)) | \(details.map(cell).joined(separator: "<br>")) |\n"
            }
            sections.append(changes.count > foldAbove
                ? "\n<details><summary>\(cell(title))</summary>\n\n\(table)\n</details>\n"
                : "\n#### \(cell(title))\n\n\(table)")
        }
        func list(_ title: String, _ items: [String]) {
            guard !items.isEmpty else { return }
            let body = items.map { "- \($0)\n" }.joined()
            sections.append(items.count > foldAbove
                ? "\n<details><summary>\(title) (\(items.count))</summary>\n\n\(body)\n</details>\n"
                : "\n#### \(title) (\(items.count))\n\n\(body)")
        }
        list("Changed outside virtform since it was applied", plan.changes.filter { $0.cause != .unapplied }.map {
            "`\(cell($0.id))`\($0.cause == .unknown ? " (or not applied yet: virtform's marks cannot tell)" : "")"
        })
        list("Not applied", plan.changes.filter { $0.blocked != nil }.map { "`\(cell($0.id))`: \(cell($0.blocked!))" })
        list("Unknown", plan.unknown.map { "`\(cell($0.resource))`: \(cell($0.reason))" })
        list("Not read", plan.unreachable.map { "\(cell($0.system.description))\($0.endpoint.map { " (\(cell($0)))" } ?? ""): \(cell($0.reason))" })
        list("Errors", plan.errors.map { "`\(cell($0.resource))`: \(cell($0.message))" })
        if !plan.foreign.isEmpty {
            list("Left alone (another site's, or an earlier virtform's)", [
                "\(plan.foreign.count) object\(plan.foreign.count == 1 ? "" : "s"); `--format json` lists them",
            ])
        }

        // Whole sections from the end are left out until it fits, with a note of what was cut.
        var text = head
        var cut = 0
        for (i, section) in sections.enumerated() {
            let note = cutNote(sections.count - i)
            if text.count + section.count + (i == sections.count - 1 ? 0 : note.count) > limit {
                cut = sections.count - i
                break
            }
            text += section
        }
        if cut > 0 { text += cutNote(cut) }
        return text.count <= limit ? text : String(text.prefix(limit - 80)) + "\n\n_…cut at \(limit) characters._\n"
    }

    private static func cutNote(_ sections: Int) -> String {
        "\n_\(sections) more section\(sections == 1 ? "" : "s") cut to stay within the limit; the whole plan is in the job's log (`virtform plan`) or `--format json`._\n"
    }

    /// A value in a table cell or a line: control characters escaped, and nothing that ends a
    /// cell or starts HTML.
    static func cell(_ text: String) -> String {
        Redaction.escapingControls(text).replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "<", with: "&lt;")
    }
}

/// GitLab's Terraform report for merge requests: the three counts GitLab reads. Starts, stops,
/// restarts and migrations change existing resources, so they count as updates.
public enum GitLabReport {
    public static func render(_ plan: Plan) -> String {
        let s = plan.summary
        return "{\"create\": \(s.create), \"update\": \(s.update + s.start + s.stop + s.restart + s.migrate + s.fence), \"delete\": \(s.delete)}\n"
    }
}
