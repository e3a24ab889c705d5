import VirtformModel
import VirtformPlanning

extension DriftReport {
    /// JUnit XML, as GitLab and Jenkins render test reports: one test case per resource the site
    /// manages (and per drifted resource it no longer declares), a failure for each difference
    /// made outside virtform (or of a cause that cannot be told), a skip for a resource whose
    /// only differences are manifest changes not applied yet (named in the skip, so the report
    /// stays green until someone changes things behind virtform's back), an error for each
    /// system that could not be read, and a skip for each VM whose state could not be told.
    func junit(site: Site) -> String {
        var resources: [String] = []
        resources += site.virtualMachines.map { "VirtualMachine/\($0.id)" }
        resources += site.bindings.map { "NetworkBinding/\($0.meta.name)" }
        resources += site.projects.map { "StorageProject/\($0.name)" }
        for image in site.images {
            resources.append("Image/\(image.project)/\(image.meta.name)")
            resources += image.snapshots.map { "Snapshot/\(image.project)/\(image.meta.name)@\($0)" }
        }
        for vm in site.virtualMachines where vm.disk != nil {
            resources += ["StorageVolume/\(vm.project)/\(vm.name)", "ISCSITarget/\(vm.project)/\(vm.name)"]
        }
        var drifts: [String: [Item]] = [:]
        for item in items { drifts[item.resource, default: []].append(item) }
        let declared = Set(resources)
        resources += drifts.keys.filter { !declared.contains($0) }.sorted()
        let unknown = Dictionary(plan.unknown.map { ($0.resource, $0.reason) }, uniquingKeysWith: { first, _ in first })

        var cases: [String] = []
        for resource in resources {
            let kind = String(resource.prefix { $0 != "/" })
            var body = ""
            let all = drifts[resource] ?? []
            let outside = all.filter { $0.cause != .unapplied }
            let waiting = all.filter { $0.cause == .unapplied }
            for item in outside {
                body += "      <failure type=\"\(xml(item.kind))\" message=\"\(xml("\(item.kind) on \(item.host): \(Self.note(item.cause))"))\">\(xml(item.detail))</failure>\n"
            }
            if let reason = unknown[resource] {
                body += "      <skipped message=\"\(xml("unknown: \(reason)"))\"/>\n"
            } else if outside.isEmpty && !waiting.isEmpty {
                let text = waiting.map { "\($0.kind) on \($0.host): \($0.detail)" }.joined(separator: "; ")
                body += "      <skipped message=\"\(xml("not applied yet: \(text)"))\"/>\n"
            } else if !waiting.isEmpty {
                let text = waiting.map { "not applied yet: \($0.kind) on \($0.host): \($0.detail)" }.joined(separator: "\n")
                body += "      <system-out>\(xml(text))</system-out>\n"
            }
            cases.append(body.isEmpty
                ? "    <testcase classname=\"\(xml(kind))\" name=\"\(xml(resource))\"/>"
                : "    <testcase classname=\"\(xml(kind))\" name=\"\(xml(resource))\">\n\(body)    </testcase>")
        }
        for system in plan.unreachable {
            let name = system.system.description + (system.endpoint.map { " (\($0))" } ?? "")
            cases.append("    <testcase classname=\"System\" name=\"\(xml(name))\">\n      <error message=\"could not be read\">\(xml(system.reason))</error>\n    </testcase>")
        }
        for problem in plan.errors {
            cases.append("    <testcase classname=\"Plan\" name=\"\(xml(problem.resource))\">\n      <error message=\"error\">\(xml(problem.message))</error>\n    </testcase>")
        }
        let failures = resources.filter { drifts[$0]?.contains { $0.cause != .unapplied } == true }.count
        let errors = plan.unreachable.count + plan.errors.count
        let skipped = resources.filter { resource in
            unknown[resource] != nil || (drifts[resource].map { !$0.isEmpty && $0.allSatisfy { $0.cause == .unapplied } } ?? false)
        }.count
        let counts = "tests=\"\(cases.count)\" failures=\"\(failures)\" errors=\"\(errors)\" skipped=\"\(skipped)\""
        return """
            <?xml version="1.0" encoding="UTF-8"?>
            <testsuites name="virtform drift" \(counts)>
              <testsuite name="\(xml("drift of site \(site.name)"))" \(counts)>
            \(cases.joined(separator: "\n"))
              </testsuite>
            </testsuites>

            """
    }

    /// Text for XML attributes and content; control characters (which XML 1.0 cannot carry)
    /// are escaped as text first.
    private func xml(_ text: String) -> String {
        XMLText.escaped(Redaction.escapingControls(text, keepingNewlines: true))
    }
}
