import Foundation
import Libvirt
import Testing
import VirtformDHCP
import VirtformModel
import VirtformSystem

/// The kill-point sweep: `virtform apply` killed (SIGKILL) before each of its steps in turn —
/// every program it runs, every libvirt call that changes a domain, every Kea command, every
/// storage object's rename into place (`KillPoint`, `VIRTFORM_KILL_AT=N`) — across a create from
/// empty, an update and a destroy, each kill followed by one plain apply. Every run must
/// converge on that first re-apply: the apply succeeds, `plan --detailed-exitcode` and `drift`
/// say 0, and what the systems hold is exactly the site: its domains, its targets, its files in
/// the pool (hidden ones included: no temporaries), its subvolumes, its reservations.
extension StackTests {
    @Test func everyKillPointConvergesOnTheFirstReapply() async throws {
        let program = try #require(virtformExecutable(), "the virtform executable is built next to the tests")
        try await StackSite.with { site in
            let sweep = KillSweep(site: site, program: program)
            let empty = site.root + "/sweep-empty", full = site.root + "/sweep-full", updated = site.root + "/sweep-updated"
            // Two guests in CI; `scripts/kill-sweep` sets VIRTFORM_SWEEP_VMS for the longer sweep.
            let count = max(2, ProcessInfo.processInfo.environment["VIRTFORM_SWEEP_VMS"].flatMap { Int($0) } ?? 2)
            let vms = (1...count).map { KillSweep.VM(name: "web-\($0)", mac: String(format: "02:00:00:00:30:%02x", $0), address: "192.168.76.\(80 + $0)") }
            try sweep.write(empty, vms: [])
            try sweep.write(full, vms: vms)
            // Less memory (made live) and a grown disk (grown, exported again) for the first
            // guest, a new MAC for the others (the test driver cannot hot-plug it: the guest is
            // restarted, so the sweep passes --allow-restart).
            try sweep.write(updated, vms: vms.enumerated().map { i, vm in
                var vm = vm
                if i == 0 { vm.memory = "48MiB"; vm.disk = "128MiB" } else { vm.mac = String(format: "02:00:00:00:31:%02x", i + 1) }
                return vm
            })
            // What the pool holds of its own before any of it (nothing, but measured, not assumed).
            try await sweep.converge(empty, allowDestroy: true)
            let baseline = try await sweep.holdings()

            let site = SiteShape(domains: count, targets: count, subvolumes: baseline.subvolumes + 2, reservations: count, savedReservations: baseline.savedReservations + count,
                                 files: baseline.files.union(["appl", "masters", "masters/base.img", "masters/.snapshots", "masters/.snapshots/base@v1.img"])
                                    .union(vms.map { "appl/\($0.name).img" }))
            let nothing = SiteShape(domains: 0, targets: 0, subvolumes: baseline.subvolumes, reservations: 0, savedReservations: baseline.savedReservations, files: baseline.files)
            let create = try await sweep.run("create", from: [empty], to: full, expect: site, allowDestroy: true)
            // A disk cannot shrink back: each update starts from nothing, then the full site.
            let update = try await sweep.run("update", from: [empty, full], to: updated, expect: site, allowDestroy: false)
            let destroy = try await sweep.run("destroy", from: [empty, full], to: empty, expect: nothing, allowDestroy: true)
            let points = create + update + destroy
            #expect(points >= 50, "only \(points) kill points: \(sweep.log)")
            // Where the kills landed, by kind of step (for docs/reliability.md).
            var kinds: [String: Int] = [:]
            for line in sweep.log.split(separator: "\n") {
                let words = line.split(separator: " ").dropFirst()
                let kind = words.first == "run" ? words.prefix(3).joined(separator: " ") : words.prefix(2).joined(separator: " ")
                kinds[kind, default: 0] += 1
            }
            print("kill-point sweep: \(points) points (create \(create), update \(update), destroy \(destroy)); by step: "
                  + kinds.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
    }
}

/// What the systems must hold once the site is applied.
struct SiteShape: Equatable, CustomStringConvertible {
    var domains: Int
    var targets: Int
    var subvolumes: Int
    var reservations: Int
    /// Reservations in Kea's configuration file: what a restarted Kea would serve.
    var savedReservations: Int
    /// Every entry below the pool's mount point, hidden ones included.
    var files: Set<String>

    var description: String {
        "\(domains) domains, \(targets) targets, \(subvolumes) subvolumes, \(reservations) reservations (\(savedReservations) saved), files \(files.sorted())"
    }
}

struct KillSweep: Sendable {
    let site: StackSite
    let program: String
    var log: String { (try? String(contentsOfFile: site.root + "/kill.log", encoding: .utf8)) ?? "" }

    struct VM {
        var name: String
        var mac: String
        var address: String
        var memory = "64MiB"
        var disk: String?
    }

    func write(_ directory: String, vms: [VM]) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var text = """
            apiVersion: virtform.io/v1alpha1
            kind: Site
            metadata: {name: stack-a}
            spec: {}
            ---

            """ + site.systems().replacingOccurrences(of: "capacity: {memory: 8GiB, vcpus: 8}", with: "capacity: {memory: 64GiB, vcpus: 64}")
        if !vms.isEmpty {
            text += """
                ---
                apiVersion: virtform.io/v1alpha1
                kind: StorageProject
                metadata: {name: masters}
                spec: {pool: stack-pool}
                ---
                apiVersion: virtform.io/v1alpha1
                kind: StorageProject
                metadata: {name: appl}
                spec: {pool: stack-pool}
                ---
                apiVersion: virtform.io/v1alpha1
                kind: Image
                metadata: {name: base}
                spec: {project: masters, size: 64MiB, snapshots: [v1]}

                """
        }
        for vm in vms {
            text += """
                ---
                apiVersion: virtform.io/v1alpha1
                kind: VirtualMachine
                metadata: {name: \(vm.name)}
                spec:
                  project: appl
                  memory: \(vm.memory)
                  vcpus: 1
                  disk: {from: masters/base@v1\(vm.disk.map { ", size: \($0)" } ?? "")}
                  interfaces: [{network: public, mac: "\(vm.mac)"}]
                  placement: {host: stack-h1}
                  power: running
                ---
                apiVersion: virtform.io/v1alpha1
                kind: NetworkBinding
                metadata: {name: \(vm.name)-public}
                spec: {vm: appl/\(vm.name), interface: public, address: \(vm.address), hostname: \(vm.name)}

                """
        }
        try text.write(toFile: directory + "/site.yaml", atomically: true, encoding: .utf8)
    }

    /// Applies `directory` in this process until nothing is left to do.
    func converge(_ directory: String, allowDestroy: Bool) async throws {
        let (output, code) = await runVirtform(["apply", "--auto-approve"] + (allowDestroy ? ["--allow-destroy"] : []) + [directory])
        try #require(code == 0, "\(output)")
    }

    /// The apply of `to` (from `states`, applied in turn), killed before its step 1, 2, 3 … until one
    /// runs to its end; after each kill one plain apply must converge. Returns the kill points tried.
    func run(_ phase: String, from states: [String], to: String, expect shape: SiteShape, allowDestroy: Bool) async throws -> Int {
        let flags = ["apply", "--auto-approve", "--allow-restart", "--shutdown-timeout", "5"] + (allowDestroy ? ["--allow-destroy"] : [])
        for point in 1...400 {
            for state in states { try await converge(state, allowDestroy: true) }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = flags + [to]
            process.environment = ProcessInfo.processInfo.environment.merging(
                ["VIRTFORM_KILL_AT": String(point), "VIRTFORM_KILL_LOG": site.root + "/kill.log", "VIRTFORM_BACKEND": testBackend(for: [to]) ?? ""]) { _, new in new }
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            guard process.terminationReason == .uncaughtSignal else {
                // Past its last step: the apply ran to its end.
                #expect(process.terminationStatus == 0, "\(phase): the apply that was not killed failed (exit \(process.terminationStatus))")
                return point - 1
            }
            let where_ = log.split(separator: "\n").last.map(String.init) ?? "?"
            var (output, code) = await runVirtform(flags + [to])
            #expect(code == 0, "\(phase), killed before step \(where_): the first re-apply failed:\n\(output)")
            (output, code) = await runVirtform(["plan", "--detailed-exitcode"] + (allowDestroy ? ["--allow-destroy"] : []) + [to])
            #expect(code == 0, "\(phase), killed before step \(where_): not converged:\n\(output)")
            (output, code) = await runVirtform(["drift", to])
            #expect(code == 0, "\(phase), killed before step \(where_): drift:\n\(output)")
            let held = try await holdings()
            #expect(held == shape, "\(phase), killed before step \(where_): the systems hold \(held), not \(shape)")
            if code != 0 || held != shape { return point }  // one failure says enough
        }
        Issue.record("\(phase): the apply never ran to its end")
        return 0
    }

    /// What the systems hold, read without virtform's drivers where a tool can tell.
    func holdings() async throws -> SiteShape {
        let connection = try await Connection.open(uri: site.hosts[0].testURI)
        let domains = try await connection.listAllDomains().count
        await connection.close()
        let tgtadm = [try #require(Executables.find("tgtadm")), "-C", String(StackSite.controlPort), "--lld", "iscsi", "--op", "show", "--mode", "target"]
        let targets = try await Command.run(tgtadm).checked(tgtadm).standardOutput.split(separator: "\n").filter { $0.hasPrefix("Target ") }.count
        let btrfs = [try #require(Executables.find("btrfs")), "subvolume", "list", site.mountPoint]
        let subvolumes = try await Command.run(btrfs).checked(btrfs).standardOutput.split(separator: "\n").count
        // `find`, not FileManager's enumerator: that one does not descend into subvolumes.
        let find = [try #require(Executables.find("find")), site.mountPoint, "-mindepth", "1", "-printf", "%P\\n"]
        let files = Set(try await Command.run(find).checked(find).standardOutput.split(separator: "\n").map(String.init))
        let observation = try await KeaDriver(server: site.dhcpServer).observe(subnets: [try #require(IPv4Subnet(parsing: "192.168.76.0/24"))])
        var reservations = 0
        for endpoint in observation.endpoints {
            if case .observed(let list, _) = endpoint.state { reservations += list.count }
        }
        // What Kea saved: each reservation in its file names its MAC once, as the key "hw-address".
        let saved = try String(contentsOfFile: site.dhcp.configuration.keaConfigFile, encoding: .utf8).components(separatedBy: "\"hw-address\":").count - 1
        return SiteShape(domains: domains, targets: targets, subvolumes: subvolumes, reservations: reservations, savedReservations: saved, files: files)
    }
}
