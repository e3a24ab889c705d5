import Foundation
import VirtformModel

/// Renders a plan for people (text, grouped by host) and machines (JSON, sorted keys).
public enum PlanRenderer {
    public static func json(_ plan: Plan) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return String(decoding: try! encoder.encode(plan), as: UTF8.self) + "\n"
    }

    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }

    public static func decode(_ data: Data) throws -> Plan {
        try decoder.decode(Plan.self, from: data)
    }

    /// `color` wraps symbols in ANSI colours; callers decide (terminal, NO_COLOR).
    public static func text(_ plan: Plan, color: Bool = false) -> String {
        func paint(_ text: String, _ code: String) -> String { color ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text }
        // What comes from manifests and systems is escaped: no value can forge a line.
        func e(_ text: String) -> String { Redaction.escapingControls(text) }
        var lines: [String] = plan.warnings.map { paint("warning: \(e($0))", "33") }
        // Changes by system, in plan order, found in one pass.
        var bySystem: [SystemAddress: [Int]] = [:]
        for (i, change) in plan.changes.enumerated() { bySystem[change.system, default: []].append(i) }
        let systems = Set(bySystem.keys).union(plan.unmanaged.map { SystemAddress.host($0.host) }).sorted()
        for system in systems {
            lines.append(paint(system.kind == .host ? "Host \(system.name)" : system.description, "1"))
            for i in bySystem[system] ?? [] {
                let change = plan.changes[i]
                let (symbol, code) = symbolAndColor(change.action)
                var headline = "  \(paint(symbol, code)) \(e(change.resource))  \(change.action.rawValue)"
                if let destination = change.destination { headline += " → \(e(destination))" }
                if change.action == .migrate && change.destination == nil { headline += " (no host fits)" }
                if let changeClass = change.changeClass { headline += " (\(changeClass.label))" }
                lines.append(headline)
                if change.action == .create, let after = change.after?.domain {
                    lines.append("      \(e(summary(after)))")
                }
                if let summary = change.summary { lines.append("      \(e(summary))") }
                for field in change.fields {
                    lines.append("      \(e(field.field)): \(e(field.before)) → \(e(field.after))\(field.label.map { " (\($0))" } ?? "")")
                }
                lines.append("      " + paint("because \(e(change.reason))", "2"))
                if let note = causeNote(change.cause) { lines.append("      " + paint(note, "35")) }
                if let blocked = change.blocked {
                    lines.append("      " + paint("not applied: \(e(blocked))", "33"))
                }
            }
            for domain in plan.unmanaged where domain.host == system.name && system.kind == .host {
                lines.append("  \(paint("?", "2")) \(e(domain.name))  unmanaged (\(e(domain.state))); left alone")
            }
        }
        for system in plan.unreachable {
            let name = system.system.kind == .host ? "Host \(system.system.name)" : system.system.description
            if let endpoint = system.endpoint {
                lines.append(paint("\(name) (\(e(endpoint))): could not be read (\(e(system.reason))); nothing is removed from it", "31"))
            } else if system.system.kind == .host {
                lines.append(paint("\(name): unreachable (\(e(system.reason))); its guests are unknown and nothing is planned for them", "31"))
            } else {
                lines.append(paint("\(name): could not be read (\(e(system.reason))); nothing is planned for what it holds", "31"))
            }
        }
        var foreign: [String: Int] = [:]
        for object in plan.foreign { foreign["\(object.system): \(object.owner)", default: 0] += 1 }
        for (group, count) in foreign.sorted(by: { $0.key < $1.key }) {
            lines.append(paint("\(group): \(count) object\(count == 1 ? "" : "s") left alone (`--format json` lists them)", "2"))
        }
        for vm in plan.unknown {
            lines.append("  \(paint("?", "33")) \(e(vm.resource))  unknown: \(e(vm.reason))")
        }
        for problem in plan.errors {
            lines.append(paint("error: \(e(problem.resource)): \(e(problem.message))", "31"))
        }
        if !lines.isEmpty { lines.append("") }
        lines.append(headline(plan))
        return lines.joined(separator: "\n") + "\n"
    }

    /// The last line: "No changes" only when nothing is planned and nothing is in doubt.
    public static func headline(_ plan: Plan) -> String {
        let s = plan.summary
        var doubts: [String] = []
        if s.errors > 0 { doubts.append("\(s.errors) error\(s.errors == 1 ? "" : "s")") }
        if s.unreachable > 0 { doubts.append("\(s.unreachable) system\(s.unreachable == 1 ? "" : "s") not read") }
        if s.unknown > 0 { doubts.append("\(s.unknown) VM\(s.unknown == 1 ? "" : "s") unknown") }
        if plan.isEmpty {
            return doubts.isEmpty ? "No changes: the hypervisors, storage and DHCP servers match the manifests."
                : "No changes planned, but the plan is incomplete: \(doubts.joined(separator: ", "))."
        }
        var text = "Plan: \(s.create) to create, \(s.update) to update, \(s.delete) to delete, \(s.start) to start, \(s.stop) to stop, "
            + "\(s.restart) to restart, \(s.migrate) to migrate" + (s.fence > 0 ? ", \(s.fence) to fence." : ".")
        if s.outside > 0 {
            text += "\nChanged outside virtform since it was applied (or cannot be told apart from that): \(s.outside); manifest changes not applied yet: \(s.unapplied)."
        }
        if s.blocked > 0 { text += "\n\(s.blocked) change\(s.blocked == 1 ? " is" : "s are") shown but will not be applied (see \"not applied\")." }
        if !doubts.isEmpty { text += "\nIncomplete: \(doubts.joined(separator: ", "))." }
        return text
    }

    /// What a change's cause adds to it: nothing for a manifest change not applied yet.
    public static func causeNote(_ cause: ChangeCause) -> String? {
        switch cause {
        case .unapplied: nil
        case .outside: "changed outside virtform since it was applied"
        case .unknown: "changed outside virtform, or not applied yet (virtform's marks cannot tell)"
        }
    }

    static func symbolAndColor(_ action: Change.Action) -> (String, String) {
        switch action {
        case .create: return ("+", "32")
        case .update: return ("~", "33")
        case .delete: return ("-", "31")
        case .migrate: return ("⇄", "36")
        case .start: return ("▶", "32")
        case .stop: return ("■", "33")
        case .restart: return ("↻", "33")
        case .fence: return ("⏻", "31")
        }
    }

    static func summary(_ spec: DomainSpec) -> String {
        var parts = ["\(ByteSize(bytes: spec.memoryKiB << 10)), \(spec.vcpus) vCPU\(spec.vcpus == 1 ? "" : "s"), \(spec.osType)"]
        if !spec.interfaces.isEmpty { parts.append("interfaces " + DomainSpec.describe(spec.interfaces)) }
        if !spec.disks.isEmpty { parts.append("disk " + DomainSpec.describe(spec.disks)) }
        return parts.joined(separator: "; ")
    }
}
