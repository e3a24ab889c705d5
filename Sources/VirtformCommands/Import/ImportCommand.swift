import ArgumentParser
import Foundation
import VirtformManifests
import VirtformModel
import VirtformPlanning

/// `virtform import --host H [DOMAIN…] --out DIR`: manifests for what already runs.
struct ImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Write manifests for domains on a host that virtform does not own, with their LUNs and DHCP reservations.",
        discussion: """
            Each domain named project:name becomes a VirtualMachine (memory, vCPUs, interfaces with their MACs, \
            its LUN on a declared pool) and each unowned reservation of its MACs a NetworkBinding, annotated \
            virtform.io/imported-from. The manifests are written only when, added to the site, they plan clean \
            against what is there: nothing to create, change or delete, only marks to write. Otherwise nothing \
            is written and the differences are printed. `virtform apply` then marks the objects as this site's. \
            Exit status: 0 written; 1 refused or an error.
            """
    )

    @Option(help: "The host (as the manifests name it) whose domains are imported.")
    var host: String

    @Argument(help: "Domains to import (libvirt names, project:name). Default: every domain on the host that virtform does not own.")
    var domains: [String] = []

    @Option(help: "Directory to write the manifests into (created if missing).")
    var out: String

    @Option(help: "The master snapshot the imported LUNs were cloned from (project/image@snapshot); needed for domains with a disk.")
    var diskFrom: String?

    @Option(name: .customLong("manifests"), help: "The site's manifest files or directories. Default: manifests")
    var manifests: [String] = []

    @OptionGroup var reading: ReadOptions

    func run() async throws {
        let output = Output.current
        let paths = manifests.isEmpty ? ["manifests"] : manifests
        let site = try SiteOptions.parse(paths).load()
        guard let host = site.hosts.first(where: { $0.name == host }) else {
            throw CommandFailure("host \(self.host) is not in the manifests (\(site.hosts.map(\.name).sorted().joined(separator: ", ")))")
        }
        let source = try diskFrom.map { text in
            guard let reference = SnapshotReference(parsing: text) else { throw ValidationError("--disk-from must be project/image@snapshot, not \(text)") }
            return reference
        }
        let reading = await SiteReader.read(site: site, timeout: self.reading.timeout)
        await reading.systems.closeAll()
        let observation = reading.observation
        guard case .reachable(let found)? = observation.hosts.hosts[host.name] else {
            throw CommandFailure("host \(host.name) could not be read: \(observation.hosts.unreachableHosts.first { $0.host == host.name }?.reason ?? "not read")")
        }

        // What to import.
        var selected: [ObservedDomain] = []
        var refusals: [String] = []
        let byName = Dictionary(found.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        if domains.isEmpty {
            selected = found.filter { $0.ownership == nil }.sorted { $0.name < $1.name }
        } else {
            for name in domains {
                guard let domain = byName[name] else { refusals.append("\(name): no such domain on host \(host.name)"); continue }
                guard domain.ownership == nil else {
                    refusals.append("\(name): already virtform's (site \(domain.ownership?.site ?? "without a name"))")
                    continue
                }
                selected.append(domain)
            }
        }
        var generator = ImportGenerator(site: site, host: host, observation: observation, diskFrom: source)
        var documents: [(file: String, text: String, vm: VMID, bindings: [String])] = []
        for domain in selected {
            do {
                documents.append(try generator.manifests(for: domain))
            } catch let error as ImportGenerator.Refusal {
                refusals.append("\(domain.name): \(error.message)")
            }
        }
        if !refusals.isEmpty {
            output.errorLine("error: cannot import:\n" + refusals.map { "  \($0)" }.joined(separator: "\n"))
            throw ExitCode(1)
        }
        guard !documents.isEmpty else {
            output.line("Nothing to import: every domain on host \(host.name) is virtform's.")
            return
        }

        // The manifests must plan clean with the site before anything is written.
        let staging = NSTemporaryDirectory() + "virtform-import-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: staging) }
        for document in documents { try document.text.write(toFile: staging + "/" + document.file, atomically: true, encoding: .utf8) }
        let combined = ManifestLoader.load(paths: paths + [staging])
        guard combined.isValid else {
            output.writeError(DiagnosticReport.text(combined, output: output))
            throw CommandFailure("the generated manifests are not valid with the site's; nothing was written")
        }
        var options = Planner.Options()
        options.now = Int(Date().timeIntervalSince1970)
        let plan = Planner(site: combined.site, observation: observation, options: options).plan()
        var differences = Self.differences(plan, imported: documents.map { ($0.vm, $0.bindings) })
        // What could not be read could hold what the manifests would collide with, or the reservations to bind.
        differences += plan.unreachable.map { "\($0.system) could not be read (\($0.reason)); import needs every system of the site" }
        differences += plan.unknown.map { "\($0.resource): \($0.reason)" }
        if !differences.isEmpty {
            output.errorLine("error: the generated manifests do not plan clean against what is there; nothing was written:\n"
                + differences.map { "  \($0)" }.joined(separator: "\n"))
            throw ExitCode(1)
        }

        let existing = documents.map { (out as NSString).appendingPathComponent($0.file) }.filter { FileManager.default.fileExists(atPath: $0) }
        if !existing.isEmpty { throw CommandFailure("\(existing.joined(separator: ", ")) exist\(existing.count == 1 ? "s" : ""); nothing was written") }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        for document in documents {
            let path = (out as NSString).appendingPathComponent(document.file)
            try document.text.write(toFile: path, atomically: true, encoding: .utf8)
            output.line("wrote \(path): VirtualMachine/\(document.vm)" + document.bindings.map { ", NetworkBinding/\($0)" }.joined())
        }
        output.line("Imported \(documents.count) domain\(documents.count == 1 ? "" : "s") from host \(host.name). "
            + "`virtform plan` shows only marks to write; `virtform apply` marks them as site \(site.name)'s.")
    }

    /// What the plan would do to the imported objects beyond marking them: each as a line.
    static func differences(_ plan: Plan, imported: [(vm: VMID, bindings: [String])]) -> [String] {
        var resources: Set<String> = []
        for (vm, bindings) in imported {
            resources.formUnion(["VirtualMachine/\(vm)", "StorageVolume/\(vm.project)/\(vm.name)", "ISCSITarget/\(vm.project)/\(vm.name)"])
            resources.formUnion(bindings.map { "NetworkBinding/\($0)" })
        }
        var lines: [String] = []
        for change in plan.changes where resources.contains(change.resource) {
            // Only the operations that write a mark on what carries none.
            let onlyTheMark: Bool = switch change.operation {
            case .importDomain, .markImported: true
            case .reservation(.change(let from, _)): from.owner == nil && change.fields.allSatisfy { $0.field == "mark" }
            default: false
            }
            if onlyTheMark { continue }
            let fields = change.fields.filter { $0.field != "mark" }.map { "\($0.field) is \($0.before), the manifest would make it \($0.after)" }
            lines.append("\(change.action.rawValue) \(change.resource): \(change.reason)" + (fields.isEmpty ? "" : " (\(fields.joined(separator: "; ")))"))
        }
        for problem in plan.errors where resources.contains(problem.resource) || resources.contains(where: { problem.resource.hasPrefix($0) }) {
            lines.append("\(problem.resource): \(problem.message)")
        }
        return lines
    }
}

/// Manifests for one domain found on a host: its VM and the bindings of its reservations.
struct ImportGenerator {
    struct Refusal: Error { var message: String }

    let site: Site
    let host: VirtformModel.Host
    let observation: SiteObservation
    let diskFrom: SnapshotReference?
    private let index: SiteIndex

    init(site: Site, host: VirtformModel.Host, observation: SiteObservation, diskFrom: SnapshotReference?) {
        self.site = site
        self.host = host
        self.observation = observation
        self.diskFrom = diskFrom
        index = SiteIndex(site)
    }

    mutating func manifests(for domain: ObservedDomain) throws -> (file: String, text: String, vm: VMID, bindings: [String]) {
        guard let id = VMID(parsing: domain.name.replacingOccurrences(of: ":", with: "/")), id.domainName == domain.name else {
            throw Refusal(message: "its name is not project:name, the form virtform names domains in")
        }
        guard index.projects[id.project] != nil else { throw Refusal(message: "project \(id.project) is not in the manifests") }
        if site.virtualMachines.contains(where: { $0.id == id }) { throw Refusal(message: "VirtualMachine/\(id) is in the manifests already") }
        let spec = domain.spec
        guard spec.memoryKiB % 1024 == 0 else { throw Refusal(message: "its memory, \(spec.memoryKiB) KiB, is not a whole number of MiB") }
        var vm = """
            apiVersion: virtform.io/v1alpha1
            kind: VirtualMachine
            metadata:
              name: \(id.name)
              annotations:
                \(Import.annotation): \(host.name)
            spec:
              project: \(id.project)
              type: \(spec.osType == "hvm" ? "hvm" : "pv")
              memory: \(spec.memoryKiB / 1024)MiB
              vcpus: \(spec.vcpus)

            """
        if spec.maxVCPUs != spec.vcpus { vm += "  maxVcpus: \(spec.maxVCPUs)\n" }
        if !spec.disks.isEmpty {
            guard spec.disks.count == 1 else { throw Refusal(message: "it has \(spec.disks.count) disks; a VirtualMachine has one") }
            guard let diskFrom else { throw Refusal(message: "it has a disk: name the master its LUN was cloned from with --disk-from project/image@snapshot") }
            vm += "  disk:\n    from: \(diskFrom)\n"
            if case .read(let contents)? = observation.pools[index.projects[id.project]!.pool],
               let volume = contents.observation.projects.first(where: { $0.name == id.project })?.volumes.first(where: { $0.name == id.name }),
               let snapshot = contents.observation.snapshot(diskFrom), volume.size > snapshot.size {
                vm += "    size: \(ByteSize(bytes: volume.size))\n"
            }
        }
        var bindings: [(name: String, text: String)] = []
        if !spec.interfaces.isEmpty {
            vm += "  interfaces:\n"
            var used: [String: Int] = [:]
            for interface in spec.interfaces {
                guard let network = site.networks.first(where: { $0.bridge == interface.bridge }) else {
                    throw Refusal(message: "its interface \(interface.mac) is on bridge \(interface.bridge), which no Network of the manifests uses")
                }
                used[network.meta.name, default: 0] += 1
                let name = used[network.meta.name]! == 1 ? network.meta.name : "\(network.meta.name)-\(used[network.meta.name]!)"
                vm += "    - {network: \(network.meta.name)\(name == network.meta.name ? "" : ", name: \(name)"), mac: \"\(interface.mac)\"}\n"
                if let reservation = unownedReservation(mac: interface.mac) {
                    let binding = "\(id.project)-\(id.name)-\(name)"
                    bindings.append((binding, """
                        apiVersion: virtform.io/v1alpha1
                        kind: NetworkBinding
                        metadata:
                          name: \(binding)
                          annotations:
                            \(Import.annotation): \(host.name)
                        spec:
                          vm: \(id)
                          interface: \(name)
                          address: \(reservation.address)
                          hostname: \(reservation.hostname ?? id.name)

                        """))
                }
            }
        }
        vm += "  placement: {host: \(host.name)}\n  power: \(domain.state == .running ? "running" : "stopped")\n"
        let text = ([vm] + bindings.map(\.text)).joined(separator: "---\n")
        return ("\(id.project)-\(id.name).yaml", text, id, bindings.map(\.name))
    }

    /// A reservation with this MAC that virtform does not own, on any DHCP server of the site.
    private func unownedReservation(mac: String) -> Reservation? {
        for server in observation.dhcpServers.keys.sorted() {
            guard case .read(let seen)? = observation.dhcpServers[server] else { continue }
            for endpoint in seen.endpoints {
                if let found = endpoint.reservations?.first(where: { $0.owner == nil && $0.mac.description == mac.lowercased() }) { return found }
            }
        }
        return nil
    }
}
