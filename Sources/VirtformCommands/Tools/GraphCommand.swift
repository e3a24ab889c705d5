import ArgumentParser
import VirtformModel
import VirtformPlanning

/// `virtform graph`: the action graph apply would run — its nodes and the dependencies the
/// executor follows — as Graphviz DOT or as a Mermaid flowchart for Markdown.
struct GraphCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "graph",
        abstract: "Print the plan's action graph (what apply runs, and what waits for what).",
        discussion: "Only what apply would run is drawn: blocked changes are left out, as apply leaves them. Exit status as plan's (1 on an error)."
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case dot, mermaid
    }

    @OptionGroup var site: SiteOptions

    @Option(help: "dot (Graphviz) or mermaid (a flowchart for Markdown).")
    var format: Format = .dot

    @OptionGroup var allow: AllowanceOptions

    @OptionGroup var reading: ReadOptions

    func run() async throws {
        let loaded = try site.loadResult()
        let result = await Reconciliation.make(site: loaded.site, options: Planner.Options(allow.allowances), timeout: reading.timeout)
        let nodes = try PlanExecution.nodes(result.plan.runnable)
        Output.current.write(format == .dot ? Self.dot(nodes) : Self.mermaid(nodes))
        if !result.plan.errors.isEmpty || !result.plan.unreachable.isEmpty || !result.plan.unknown.isEmpty { throw ExitCode(1) }
    }

    /// One cluster per system, an edge from each node to what waits for it.
    static func dot(_ nodes: [PlanExecution.Node]) -> String {
        func quoted(_ text: String) -> String {
            "\"" + Redaction.escapingControls(text).replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        var lines = ["digraph virtform {", "  rankdir=LR;", "  node [shape=box, fontname=\"monospace\"];"]
        var bySystem: [SystemAddress: [PlanExecution.Node]] = [:]
        for node in nodes { bySystem[node.change.system, default: []].append(node) }
        for (index, system) in bySystem.keys.sorted().enumerated() {
            lines.append("  subgraph cluster_\(index) {")
            lines.append("    label=\(quoted(system.description));")
            for node in bySystem[system]! { lines.append("    \(quoted(node.id)) [label=\(quoted(node.label))];") }
            lines.append("  }")
        }
        for node in nodes {
            for dependency in node.dependsOn { lines.append("  \(quoted(dependency)) -> \(quoted(node.id));") }
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// Node ids are `n0`, `n1` … (Mermaid's ids take no spaces or slashes); labels are quoted.
    static func mermaid(_ nodes: [PlanExecution.Node]) -> String {
        var short: [String: String] = [:]
        for (index, node) in nodes.enumerated() { short[node.id] = "n\(index)" }
        func label(_ text: String) -> String {
            Redaction.escapingControls(text).replacingOccurrences(of: "\"", with: "#quot;")
        }
        var lines = ["flowchart LR"]
        for node in nodes { lines.append("  \(short[node.id]!)[\"\(label(node.label))\"]") }
        for node in nodes {
            for dependency in node.dependsOn { if let from = short[dependency] { lines.append("  \(from) --> \(short[node.id]!)") } }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
