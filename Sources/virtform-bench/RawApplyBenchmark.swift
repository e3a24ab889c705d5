import Foundation
import Libvirt
import VirtformHypervisor
import VirtformLab
import VirtformManifests
import VirtformModel
import VirtformPlanning

/// `raw-apply`: define + start of the same generated lab site as `plan-apply`, straight through
/// the libvirt wrapper — no manifests, no plan, no executor — to show what the daemons alone
/// allow on this machine:
/// - `serial`: one VM at a time, host after host;
/// - `shared`: every host at once, `--per-host` calls in flight on one connection per host;
/// - `pooled`: the same, with one connection per call in flight;
/// - `transient`: as `pooled`, but `virDomainCreateXML` then `virDomainDefineXML` (a running
///   transient domain made persistent), which spares the daemon the copy of the definition
///   that starting a persistent domain makes. virtform does not do this (see performance.md).
func rawApplyBenchmark() async throws {
    let hostCount = option("hosts", default: 10)
    let perHost = option("vms-per-host", default: 1000)
    let slots = option("per-host", default: 4)
    LibvirtRuntime.setEventLoopEnabled(false)
    if let problem = HypervisorLab.unmetRequirements() { throw BenchmarkError(problem) }
    try await withTestDriverLab(hosts: hostCount) { lab, hosts, keepers in
        let directory = lab.configuration.root + "/manifests"
        _ = try SiteGenerator(vms: hostCount * perHost, hosts: hostCount, hostsPerCluster: hostCount,
                              lab: (hosts.map(\.testURI), lab.configuration.root + "/pool"))
            .write(to: URL(fileURLWithPath: directory))
        let (xmls, uris) = try renderedDomains(directory)
        enum Way: String, CaseIterable { case serial, shared, pooled, transient }
        var serialSeconds = 0.0
        print("site: \(hostCount * perHost) VMs on \(hostCount) lab hosts (test driver); \(slots) calls in flight per host")
        for way in Way.allCases {
            let start = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (host, list) in xmls {
                    let uri = uris[host]!
                    switch way {
                    case .serial:
                        let connection = try await Connection.open(uri: uri)
                        for xml in list { try await connection.define(xml: xml).create() }
                        await connection.close()
                    case .shared:
                        group.addTask { try await defineAndStartShared(list, uri: uri, slots: slots) }
                    case .pooled, .transient:
                        for slot in 0..<slots {
                            group.addTask {
                                let connection = try await Connection.open(uri: uri)
                                for xml in stride(from: slot, to: list.count, by: slots).map({ list[$0] }) {
                                    if way == .pooled {
                                        try await connection.define(xml: xml).create()
                                    } else {
                                        try await connection.createTransient(xml: xml)
                                        _ = try await connection.define(xml: xml)
                                    }
                                }
                                await connection.close()
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let seconds = inSeconds(start.duration(to: .now))
            var total = 0
            for keeper in keepers { total += try await keeper.listAllDomains().count }
            guard total == hostCount * perHost else { throw BenchmarkError("\(way.rawValue): \(total) domains, not \(hostCount * perHost)") }
            if way == .serial { serialSeconds = seconds }
            print(String(format: "define + start, %@: %.2f s (%.1fx one at a time)", way.rawValue, seconds, serialSeconds / seconds))
            try await wipe(keepers)
        }
    }
}

/// The domain XML a first plan of the generated site at `directory` would define, by host, and
/// each host's URI (rendering is not part of what the raw runs time).
func renderedDomains(_ directory: String) throws -> (xmls: [String: [String]], uris: [String: String]) {
    let loaded = ManifestLoader.load(paths: [directory])
    guard loaded.isValid else { throw BenchmarkError("the generated site is not valid: \(loaded.diagnostics.prefix(3))") }
    let plan = Planner(site: loaded.site, observed: ObservedSite(hosts: Dictionary(uniqueKeysWithValues:
        loaded.site.hosts.map { ($0.name, HostObservation.reachable([])) }))).plan()
    var xmls: [String: [String]] = [:]
    for change in plan.changes where change.action == .create {
        guard let (spec, ownership) = change.definition else { continue }
        xmls[change.host, default: []].append(DomainXML.render(spec, ownership: ownership, uuid: UUID().uuidString.lowercased()))
    }
    return (xmls, Dictionary(uniqueKeysWithValues: loaded.site.hosts.map { ($0.name, $0.uri) }))
}

/// The raw parallel ceiling: `list` defined and started on one connection to `uri`, `slots`
/// calls in flight.
func defineAndStartShared(_ list: [String], uri: String, slots: Int) async throws {
    let connection = try await Connection.open(uri: uri)
    try await withThrowingTaskGroup(of: Void.self) { inner in
        for slot in 0..<slots {
            inner.addTask {
                for xml in stride(from: slot, to: list.count, by: slots).map({ list[$0] }) {
                    try await connection.define(xml: xml).create()
                }
            }
        }
        try await inner.waitForAll()
    }
    await connection.close()
}
