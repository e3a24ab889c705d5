import Foundation
import Libvirt
import Synchronization
import Testing
import VirtformDHCP
import VirtformLab
import VirtformModel
import VirtformSystem

/// Moves between two real hypervisors whose guests are real QEMU processes booting from iSCSI
/// LUNs of the stack's btrfs pool: live migration (the guest never stops), cold moves, the
/// preflight, an aborted migration, Ctrl-C, and a maintenance evacuation two at a time.
extension StackTests {
    /// A guest of the migration site.
    struct Mover {
        var name: String
        var mac: String
        /// `{host: stack-h1}` or `{cluster: stack}`.
        var placement: String
        var power = "running"
        /// A binding's address, if it has one.
        var address: String?
        /// `ha: restart` (the cluster's HA is on).
        var ha = false
    }

    /// Writes the site: the stack's systems over `site`'s hosts (QEMU), the guest image as the
    /// master, and `movers`.
    static func writeMovers(_ movers: [Mover], site: StackSite, image: String, directory: String, maintenance: Set<String> = [],
                            bridgeless: Set<String> = [], migration: String = "", fence: [String]? = nil) throws {
        var text = site.manifests(site: "stack-a", prefix: "", web: nil, image: image, qemu: true, maintenance: maintenance,
                                  bridgeless: bridgeless, migration: migration, cluster: "placement: {policy: spread}\n  ha: {enabled: true}")
        if let fence {
            // stack-h1's fencing command.
            text = text.replacingOccurrences(of: "metadata: {name: stack-h1}\nspec:\n",
                                             with: "metadata: {name: stack-h1}\nspec:\n  fence: {command: [\(fence.map { "\"\($0)\"" }.joined(separator: ", "))]}\n")
        }
        for mover in movers {
            text += """
                ---
                apiVersion: virtform.io/v1alpha1
                kind: VirtualMachine
                metadata: {name: \(mover.name)}
                spec:
                  project: appl
                  memory: 64MiB
                  vcpus: 1
                  disk: {from: masters/base@v1}
                  interfaces: [{network: public, mac: "\(mover.mac)"}]
                  placement: \(mover.placement)
                  power: \(mover.power)
                  ha: \(mover.ha ? "restart" : "none")

                """
            if let address = mover.address {
                text += """
                    ---
                    apiVersion: virtform.io/v1alpha1
                    kind: NetworkBinding
                    metadata: {name: \(mover.name)-public}
                    spec: {vm: appl/\(mover.name), interface: public, address: \(address), hostname: \(mover.name)}

                    """
            }
        }
        try text.write(toFile: directory + "/site.yaml", atomically: true, encoding: .utf8)
    }

    /// What each host says of a domain: its state, or nil when it does not define it.
    static func states(of name: String, on connections: [Connection]) async -> [DomainState?] {
        var states: [DomainState?] = []
        for connection in connections {
            if let domain = try? await connection.domain(named: name) { states.append(try? await domain.state) } else { states.append(nil) }
        }
        return states
    }

    @Test(.enabled(if: GuestImage.unmetRequirements() == nil, Comment(rawValue: GuestImage.unmetRequirements() ?? "")))
    func aRunningGuestMigratesLiveAStoppedOneMovesColdAndAnAbortLeavesItWhereItWas() async throws {
        try await StackSite.with(hosts: 2) { site in
            let image = site.root + "/guest.img"
            try await GuestImage.build(at: image, scratch: site.root + "/guest-build")
            let directory = site.root + "/manifests-migration"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var mover = Mover(name: "mover", mac: "02:00:00:00:30:01", placement: "{host: stack-h1}", address: "192.168.76.81")
            var sleeper = Mover(name: "sleeper", mac: "02:00:00:00:30:02", placement: "{host: stack-h1}", power: "stopped")
            try Self.writeMovers([mover, sleeper], site: site, image: image, directory: directory)
            var (output, code) = await runVirtform(["apply", "--auto-approve", directory])
            try #require(code == 0, "\(output)")
            let h1 = try await Connection.open(uri: site.hosts[0].qemuURI), h2 = try await Connection.open(uri: site.hosts[1].qemuURI)
            let uuid = try #require(try await h1.domain(named: "appl:mover")?.uuid)
            let sleeperUUID = try #require(try await h1.domain(named: "appl:sleeper")?.uuid)
            let dhcp = try DHCPDrivers.driver(for: site.dhcpServer)
            let subnet = try #require(IPv4Subnet(parsing: "192.168.76.0/24"))
            let reserved = try await dhcp.observe(subnets: [subnet]).endpoints.first?.reservations?.first { $0.owner?.binding == "mover-public" }

            // A destination without the guest's bridge is refused before anything moves (the
            // manifests say so; the planner's own check is in MovePlannerTests).
            mover.placement = "{host: stack-h2}"
            try Self.writeMovers([mover, sleeper], site: site, image: image, directory: directory, bridgeless: ["stack-h2"])
            (output, code) = await runVirtform(["apply", "--auto-approve", directory])
            #expect(code == 1 && output.contains("stack-h2") && output.contains("fe0"), "\(output)")
            #expect(await Self.states(of: "appl:mover", on: [h1, h2]) == [.running, nil])

            // Edited placement: the running guest migrates live, the stopped one moves cold.
            mover.placement = "{host: stack-h2}"
            sleeper.placement = "{host: stack-h2}"
            try Self.writeMovers([mover, sleeper], site: site, image: image, directory: directory)
            (output, code) = await runVirtform(["plan", directory])
            #expect(output.contains("⇄ VirtualMachine/appl/mover  migrate → stack-h2 (live migration)"), "\(output)")
            #expect(output.contains("⇄ VirtualMachine/appl/sleeper  migrate → stack-h2 (cold move)"), "\(output)")
            // Watched while it moves: at every look it runs (or is paused for the switch-over) on one
            // of the hosts, and libvirt reports a migration job on the source.
            let watching = Mutex(true)
            let watcher = Task { () -> (looks: Int, gaps: [String], sawJob: Bool) in
                var (looks, gaps, sawJob) = (0, [String](), false)
                while watching.withLock({ $0 }) {
                    let states = await Self.states(of: "appl:mover", on: [h1, h2])
                    looks += 1
                    if !states.contains(where: { $0 == .running || $0 == .paused }) { gaps.append("\(states)") }
                    if !sawJob, let job = try? await h1.domain(named: "appl:mover")?.jobInfo(), job.active { sawJob = true }
                    try? await Task.sleep(for: .milliseconds(50))
                }
                return (looks, gaps, sawJob)
            }
            (output, code) = await runVirtform(["apply", "--auto-approve", directory])
            watching.withLock { $0 = false }
            let watched = await watcher.value
            #expect(code == 0, "\(output)")
            #expect(watched.looks > 5 && watched.gaps.isEmpty, "the guest stopped during its move: \(watched.gaps)")
            #expect(watched.sawJob, "no migration job was seen on the source")
            #expect(await Self.states(of: "appl:mover", on: [h1, h2]) == [nil, .running])
            #expect(try await h2.domain(named: "appl:mover")?.uuid == uuid, "the UUID stays")
            #expect(await Self.states(of: "appl:sleeper", on: [h1, h2]) == [nil, .shutOff])
            #expect(try await h2.domain(named: "appl:sleeper")?.uuid == sleeperUUID)
            let after = try await dhcp.observe(subnets: [subnet]).endpoints.first?.reservations?.first { $0.owner?.binding == "mover-public" }
            #expect(after != nil && after == reserved, "its reservation is unchanged")
            (output, code) = await runVirtform(["plan", "--detailed-exitcode", directory])
            #expect(code == 0, "the next plan is empty:\n\(output)")

            // Aborted past its limit (a bandwidth cap makes it slow, a limit of 2 s per GiB makes
            // it too slow): the guest runs on its source as before, nothing is retried.
            mover.placement = "{host: stack-h1}"
            try Self.writeMovers([mover, sleeper], site: site, image: image, directory: directory,
                                 migration: "secondsPerGiB: 2, bandwidthMiBps: 1")
            (output, code) = await runVirtform(["apply", "--auto-approve", directory])
            #expect(code == 1, "\(output)")
            #expect(output.contains("was aborted: it took longer than 2.0 s (the limit for its memory); it runs on stack-h2 as before"), "\(output)")
            #expect(await Self.states(of: "appl:mover", on: [h1, h2]) == [nil, .running])
            (output, code) = await runVirtform(["plan", "--detailed-exitcode", directory])
            #expect(code == 2 && output.contains("migrate → stack-h1 (live migration)"), "planned again, not retried:\n\(output)")

            // Ctrl-C during a (slow) migration: it is aborted and the guest stays where it was.
            try Self.writeMovers([mover, sleeper], site: site, image: image, directory: directory, migration: "bandwidthMiBps: 1")
            let program = try #require(virtformExecutable())
            // Interrupted once the guest's memory is on its way (the job's first progress line).
            let run = try await runVirtformChild(program, ["apply", "--auto-approve", directory], trigger: "⇄ VirtualMachine/appl/mover → stack-h1:",
                                                 within: .seconds(60), interrupt: true, onTrigger: {}, cleanup: {})
            #expect(run.triggered && run.ended, "\(run.output)")
            #expect(run.status != 0 && run.output.contains("Interrupted"), "\(run.output)")
            #expect(run.output.contains("was aborted: the apply was interrupted"), "\(run.output)")
            #expect(await Self.states(of: "appl:mover", on: [h1, h2]) == [nil, .running])
            await h1.close()
            await h2.close()
        }
    }

    /// On two real hypervisors (libvirt's test driver): `pack` fills the first host before the
    /// next, and an anti-affinity rule keeps two web VMs apart that pack would put together.
    @Test func packFillsHostsInOrderAndAntiAffinitySpreadsTwoVMs() async throws {
        try await StackSite.with(hosts: 2) { site in
            let directory = site.root + "/manifests-rules"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var text = site.manifests(site: "stack-a", prefix: "", web: nil,
                                      cluster: "placement: {policy: pack, maxGuestsPerHost: 4}\n  rules: [{name: web-apart, antiAffinity: {tier: web}}]")
            // By name the two web VMs come first: pack alone would put both on stack-h1.
            for (name, labels) in [("a-web-1", "{tier: web}"), ("a-web-2", "{tier: web}"), ("app-1", "{}"), ("app-2", "{}"), ("app-3", "{}")] {
                text += """
                    ---
                    apiVersion: virtform.io/v1alpha1
                    kind: VirtualMachine
                    metadata: {name: \(name), labels: \(labels)}
                    spec: {project: appl, memory: 64MiB, vcpus: 1, placement: {cluster: stack}, power: running}

                    """
            }
            try text.write(toFile: directory + "/site.yaml", atomically: true, encoding: .utf8)
            var (output, code) = await runVirtform(["apply", "--auto-approve", directory])
            try #require(code == 0, "\(output)")
            let h1 = try await Connection.open(uri: site.hosts[0].testURI), h2 = try await Connection.open(uri: site.hosts[1].testURI)
            func host(_ name: String) async -> String? {
                if (try? await h1.domain(named: "appl:\(name)")) ?? nil != nil { return "stack-h1" }
                if (try? await h2.domain(named: "appl:\(name)")) ?? nil != nil { return "stack-h2" }
                return nil
            }
            let webA = await host("a-web-1"), webB = await host("a-web-2")
            #expect(webA != nil && webB != nil && webA != webB, "the anti-affinity rule keeps them apart: \(String(describing: webA)), \(String(describing: webB))")
            // Pack: the first host takes four (the first web VM and the three others), the second web VM goes next door.
            var onFirst = 0
            for name in ["a-web-1", "a-web-2", "app-1", "app-2", "app-3"] where await host(name) == "stack-h1" { onFirst += 1 }
            #expect(onFirst == 4 && webA == "stack-h1", "pack fills stack-h1 first (4 per host)")
            await h1.close()
            await h2.close()
            (output, code) = await runVirtform(["plan", "--detailed-exitcode", directory])
            #expect(code == 0, "stable: \(output)")
        }
    }

    /// A cold move killed (SIGKILL) before each of its steps in turn — the mark rewritten on the
    /// source, the define on the destination, the undefine on the source — converges on the
    /// first plain apply after it: one copy of the guest, on the destination, and a clean plan.
    @Test func aColdMoveKilledAtEveryStepConvergesOnTheNextApply() async throws {
        let program = try #require(virtformExecutable())
        try await StackSite.with(hosts: 2) { site in
            let directory = site.root + "/manifests-kill"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            func write(on host: String) throws {
                try (site.manifests(site: "stack-a", prefix: "", web: nil) + """
                    ---
                    apiVersion: virtform.io/v1alpha1
                    kind: VirtualMachine
                    metadata: {name: sleeper}
                    spec: {project: appl, memory: 64MiB, vcpus: 1, placement: {host: \(host)}, power: stopped}

                    """).write(toFile: directory + "/site.yaml", atomically: true, encoding: .utf8)
            }
            let h1 = try await Connection.open(uri: site.hosts[0].testURI), h2 = try await Connection.open(uri: site.hosts[1].testURI)
            var environment = ProcessInfo.processInfo.environment
            var killed = 0
            for point in 1...20 {
                try write(on: "stack-h1")
                var (output, code) = await runVirtform(["apply", "--auto-approve", directory])
                try #require(code == 0, "back on stack-h1: \(output)")
                try write(on: "stack-h2")
                environment["VIRTFORM_KILL_AT"] = "\(point)"
                let run = try await Command.run([program, "apply", "--auto-approve", directory], environment: environment, timeout: .seconds(60))
                (output, code) = await runVirtform(["apply", "--auto-approve", directory])
                #expect(code == 0, "after a kill at step \(point): \(output)")
                (output, code) = await runVirtform(["plan", "--detailed-exitcode", directory])
                #expect(code == 0, "after a kill at step \(point): \(output)")
                let copies = [try await h1.domain(named: "appl:sleeper") != nil, try await h2.domain(named: "appl:sleeper") != nil]
                #expect(copies == [false, true], "step \(point): on stack-h1 \(copies[0]), on stack-h2 \(copies[1])")
                guard run.status == 128 + SIGKILL else { break }  // no step left to kill: the move ran whole
                killed += 1
            }
            #expect(killed >= 4, "the move has a mark, a define and an undefine to be killed before (\(killed) killed)")
            await h1.close()
            await h2.close()
        }
    }

    /// HA on two real hypervisors with a real QEMU guest booting from its iSCSI LUN: a host
    /// whose daemon died is not given up on a failed connection alone; once its fencing command
    /// (`virtform lab fence`, which kills the host's daemon and guests as a power loss would)
    /// has run, the `ha: restart` guest starts on the other host from the same LUN; the
    /// operator's word (`--confirm-host-down`) is shown as the other way.
    @Test(.enabled(if: GuestImage.unmetRequirements() == nil, Comment(rawValue: GuestImage.unmetRequirements() ?? "")))
    func haRestartsAStoppedHostsGuestOnlyAfterFencing() async throws {
        try await StackSite.with(hosts: 2) { site in
            let program = try #require(virtformExecutable())
            let image = site.root + "/guest.img"
            try await GuestImage.build(at: image, scratch: site.root + "/guest-build")
            let directory = site.root + "/manifests-ha"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let guardian = Mover(name: "guardian", mac: "02:00:00:00:32:01", placement: "{cluster: stack}", ha: true)
            try Self.writeMovers([guardian], site: site, image: image, directory: directory)
            var (output, code) = await runVirtform(["apply", "--auto-approve", directory])
            try #require(code == 0, "\(output)")
            let h1 = try await Connection.open(uri: site.hosts[0].qemuURI)
            #expect(try await h1.domain(named: "appl:guardian")?.state == .running, "placed on stack-h1 first")
            await h1.close()

            // stack-h1's daemon dies (its guest runs on): a failed connection alone restarts nothing.
            kill(site.hosts[0].pid, SIGKILL)
            (output, code) = await runVirtform(["apply", "--auto-approve", directory])
            #expect(code == 1 && output.contains("started elsewhere only after stack-h1 is fenced (spec.fence) or confirmed down"), "\(output)")
            let h2 = try await Connection.open(uri: site.hosts[1].qemuURI)
            #expect(try await h2.domain(named: "appl:guardian") == nil)
            (output, code) = await runVirtform(["plan", "--confirm-host-down", "stack-h1", directory])
            #expect(output.contains("HA restart: host stack-h1 could not be read; confirmed down by the operator (--confirm-host-down stack-h1)"), "\(output)")

            // Its fencing command declared: it runs first, then the guest starts on stack-h2.
            try Self.writeMovers([guardian], site: site, image: image, directory: directory,
                                 fence: [program, "lab", "fence", site.hosts[0].name, "--root", site.root, "--user-prefix", "vfstackh"])
            (output, code) = await runVirtform(["apply", "--auto-approve", directory])
            #expect(output.contains("✓ fence Host/stack-h1"), "\(output)")
            #expect(output.contains("✓ start VirtualMachine/appl/guardian"), "\(output)")
            #expect(code == 1, "stack-h1 still cannot be read: \(output)")
            #expect(try await h2.domain(named: "appl:guardian")?.state == .running)
            await h2.close()
        }
    }

    @Test(.enabled(if: GuestImage.unmetRequirements() == nil, Comment(rawValue: GuestImage.unmetRequirements() ?? "")))
    func maintenanceEvacuatesAHostOfFourGuestsTwoAtATime() async throws {
        try await StackSite.with(hosts: 2) { site in
            let image = site.root + "/guest.img"
            try await GuestImage.build(at: image, scratch: site.root + "/guest-build")
            let directory = site.root + "/manifests-evacuation"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let guests = (1...4).map { Mover(name: "g\($0)", mac: "02:00:00:00:31:0\($0)", placement: "{cluster: stack}") }
            // All four on stack-h1 (stack-h2 in maintenance), then stack-h1 goes into maintenance.
            try Self.writeMovers(guests, site: site, image: image, directory: directory, maintenance: ["stack-h2"])
            var (output, code) = await runVirtform(["apply", "--auto-approve", directory])
            try #require(code == 0, "\(output)")
            try Self.writeMovers(guests, site: site, image: image, directory: directory, maintenance: ["stack-h1"])
            (output, code) = await runVirtform(["apply", "--auto-approve", directory])
            #expect(code == 0, "\(output)")
            // At most two at once (the cluster's default), and two at once at some point.
            var inFlight = 0, most = 0
            for line in output.split(separator: "\n") {
                if line.contains("… migrate VirtualMachine/") { inFlight += 1 }
                if line.contains("✓ migrate VirtualMachine/") || line.contains("✗ migrate VirtualMachine/") { inFlight -= 1 }
                most = max(most, inFlight)
            }
            #expect(most == 2, "\(output)")
            let h1 = try await Connection.open(uri: site.hosts[0].qemuURI), h2 = try await Connection.open(uri: site.hosts[1].qemuURI)
            for guest in guests {
                #expect(await Self.states(of: "appl:\(guest.name)", on: [h1, h2]) == [nil, .running], "\(guest.name)")
            }
            await h1.close()
            await h2.close()
            (output, code) = await runVirtform(["plan", "--detailed-exitcode", directory])
            #expect(code == 0, "\(output)")
        }
    }
}
