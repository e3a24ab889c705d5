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

    public static func decode(_ data: Data) throws -> Plan {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(Plan.self, from: data)
    }

    /// `color` wraps symbols in ANSI colours; callers decide (terminal, NO_COLOR).
    public static func text(_ plan: Plan, color: Bool = false) -> String {
        func paint(_ text: String, _ code: String) -> String { color ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text }
        var lines: [String] = []
        let hosts = Set(plan.changes.map(\.host)).union(plan.unmanaged.map(\.host)).sorted()
        for host in hosts {
            lines.append(paint(Plan.isSystem(host) ? host : "Host \(host)", "1"))
            for change in plan.changes where change.host == host {
                let (symbol, code) = symbolAndColor(change.action)
                var headline = "  \(paint(symbol, code)) \(change.resource)  \(change.action.rawValue)"
                if let destination = change.destination { headline += " → \(destination)" }
                if change.action == .migrate && change.destination == nil { headline += " (no host fits)" }
                lines.append(headline)
                if change.action == .create, let after = change.after {
                    lines.append("      \(summary(after))")
                }
                if let summary = change.summary { lines.append("      \(summary)") }
                for field in change.fields {
                    lines.append("      \(field.field): \(field.before) → \(field.after) \(field.live ? "(live)" : "(needs restart)")")
                }
                lines.append("      " + paint("because \(change.reason)", "2"))
                if let blocked = change.blocked {
                    lines.append("      " + paint("not applied: \(blocked)", "33"))
                }
            }
            for domain in plan.unmanaged where domain.host == host {
                lines.append("  \(paint("?", "2")) \(domain.name)  unmanaged (\(domain.state)); left alone")
            }
        }
        for host in plan.unreachableHosts {
            lines.append(paint(Plan.isSystem(host.host)
                ? "\(host.host): could not be read (\(host.reason)); nothing is planned for what it holds"
                : "Host \(host.host): unreachable (\(host.reason)); its guests are unknown and nothing is planned for them", "31"))
        }
        for vm in plan.unknown {
            lines.append("  \(paint("?", "33")) \(vm.resource)  unknown: \(vm.reason)")
        }
        for problem in plan.errors {
            lines.append(paint("error: \(problem.resource): \(problem.message)", "31"))
        }
        if !lines.isEmpty { lines.append("") }
        if plan.isEmpty {
            lines.append("No changes: the hypervisors, storage and DHCP servers match the manifests.")
        } else {
            let counts = Change.Action.allCases.map { "\(plan.count($0)) to \($0.rawValue)" }
            lines.append("Plan: " + counts.joined(separator: ", ") + ".")
            let blocked = plan.changes.filter { $0.blocked != nil }.count
            if blocked > 0 { lines.append("\(blocked) change\(blocked == 1 ? " is" : "s are") shown but will not be applied (see \"not applied\").") }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func symbolAndColor(_ action: Change.Action) -> (String, String) {
        switch action {
        case .create: return ("+", "32")
        case .update: return ("~", "33")
        case .delete: return ("-", "31")
        case .migrate: return ("⇄", "36")
        case .start: return ("▶", "32")
        case .stop: return ("■", "33")
        }
    }

    private static func summary(_ spec: DomainSpec) -> String {
        var parts = ["\(ByteSize(bytes: spec.memoryKiB << 10)), \(spec.vcpus) vCPU\(spec.vcpus == 1 ? "" : "s"), \(spec.osType)"]
        if !spec.interfaces.isEmpty { parts.append("interfaces " + DomainSpec.describe(spec.interfaces)) }
        if !spec.disks.isEmpty { parts.append("disk " + DomainSpec.describe(spec.disks)) }
        return parts.joined(separator: "; ")
    }
}
