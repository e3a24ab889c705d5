import Synchronization
import Foundation
import Libvirt
import Testing
import VirtformLab
import VirtformSystem

/// Why the end-to-end tests cannot run here, or nil.
let endToEndUnavailable = HypervisorLab.unmetRequirements()

/// plan, apply and drift as the `virtform` command runs them, against real libvirt daemons of
/// a temporary lab (the test driver served by each daemon), and `virsh` as the operator who
/// changes things behind virtform's back.
@Suite("End to end against real libvirt daemons", .serialized,
       .enabled(if: endToEndUnavailable == nil, Comment(rawValue: endToEndUnavailable ?? "")))
struct EndToEndTests {
    @Test func applyFromScratchThenNothingToDoThenChangesFlow() async throws {
        try await E2ESite.with(hosts: 2) { site in
            var (output, code) = await runVirtform(["plan", "--detailed-exitcode", site.directory])
            try #require(code == 2, "\(output)")
            #expect(output.contains("Plan: 4 to create, 0 to update, 0 to delete, 2 to start"), "\(output)")
            #expect(output.contains("+ StorageProject/appl  create"), "\(output)")

            (output, code) = await site.apply()
            #expect(code == 0, "\(output)")
            #expect(output.contains("Apply: 6 done, 0 failed, 0 skipped"), "\(output)")
            #expect(try await site.domains(on: 0) == ["appl:db-1": false, "appl:web-1": true])
            #expect(try await site.domains(on: 1) == ["appl:web-2": true])

            (output, code) = await runVirtform(["plan", "--detailed-exitcode", site.directory])
            #expect(code == 0, "a freshly applied site must show no differences:\n\(output)")
            (output, code) = await runVirtform(["drift", site.directory])
            #expect(code == 0, "\(output)")

            // Less memory: changed live on the running guests (and in their definitions).
            try site.write(webMemory: "48MiB")
            (output, code) = await runVirtform(["plan", "--detailed-exitcode", site.directory])
            #expect(code == 2)
            #expect(output.contains("memory: 64MiB → 48MiB (live)"), "\(output)")
            #expect(output.contains("Plan: 0 to create, 2 to update, 0 to delete, 0 to start, 0 to stop, 0 to restart"), "\(output)")
            (output, code) = await site.apply()
            #expect(code == 0, "\(output)")
            let running = try await site.virsh(0, "dumpxml", "appl:web-1")
            #expect(running.contains("<currentMemory unit='KiB'>49152</currentMemory>"), "the running guest has less:\n\(running)")
            (output, code) = await runVirtform(["plan", "--detailed-exitcode", site.directory])
            #expect(code == 0, "\(output)")

            // More memory than the running guests' maximum: written to the definitions, and
            // pending until the opt-in restart.
            try site.write(webMemory: "128MiB")
            (output, code) = await site.apply()
            #expect(code == 3, "changes that stayed blocked have an exit status of their own:\n\(output)")
            #expect(output.contains("memory: 48MiB → 128MiB (needs restart)"), "\(output)")
            #expect(output.contains("2 changes stayed blocked"), "\(output)")
            (output, code) = await runVirtform(["plan", "--detailed-exitcode", site.directory])
            #expect(code == 2, "\(output)")
            #expect(output.contains("restart pending: the running guest keeps its old memory"), "\(output)")
            // virtform wrote the definition; it waits for a restart: not applied yet, exit 3.
            (output, code) = await runVirtform(["drift", site.directory])
            #expect(code == 3, "\(output)")
            #expect(output.contains("In the manifests, not applied yet:\n  restart pending VirtualMachine/appl/web-1"), "\(output)")
            (output, code) = await runVirtform(["apply", "--auto-approve", "--allow-restart", "--shutdown-timeout", "1", site.directory])
            #expect(code == 0, "\(output)")
            (output, code) = await runVirtform(["plan", "--detailed-exitcode", site.directory])
            #expect(code == 0, "\(output)")
            let xml = try await site.virsh(0, "dumpxml", "--inactive", "appl:web-1")
            #expect(xml.contains("<memory unit='KiB'>131072</memory>"), "\(xml)")
        }
    }

    @Test func changesMadeWithVirshAreDriftAndApplyRepairsThem() async throws {
        try await E2ESite.with(hosts: 2) { site in
            var (output, code) = await site.apply()
            #expect(code == 0, "\(output)")

            // Memory and an interface edited, one guest undefined, one destroyed.
            var web2 = try await site.virsh(1, "dumpxml", "--inactive", "appl:web-2")
            web2 = web2.replacingOccurrences(of: "<memory unit='KiB'>65536</memory>", with: "<memory unit='KiB'>98304</memory>")
                .replacingOccurrences(of: "<currentMemory unit='KiB'>65536</currentMemory>",
                                      with: "<currentMemory unit='KiB'>98304</currentMemory>")
                .replacingOccurrences(of: "02:00:00:00:00:02", with: "02:00:00:00:00:99")
            try await site.virshDefine(1, web2)
            _ = try await site.virsh(0, "undefine", "appl:db-1")
            _ = try await site.virsh(0, "destroy", "appl:web-1")

            (output, code) = await runVirtform(["drift", site.directory])
            #expect(code == 2, "\(output)")
            #expect(output.contains("missing VirtualMachine/appl/db-1"), "\(output)")
            #expect(output.contains("stopped VirtualMachine/appl/web-1"), "\(output)")
            #expect(output.contains("changed VirtualMachine/appl/web-2"), "\(output)")
            #expect(output.contains("memory is 96MiB, the manifest says 64MiB"), "\(output)")
            #expect(output.contains("02:00:00:00:00:99"), "\(output)")
            // db-1 has neither a disk nor a reservation: undefined, it leaves no trace and reads as new.
            #expect(output.contains("In the manifests, not applied yet:\n  missing VirtualMachine/appl/db-1"), "\(output)")
            #expect(output.contains("Drift: 3 differences (2 changed outside virtform, 1 not applied yet)."), "\(output)")

            (output, code) = await runVirtform(["drift", "--format", "json", site.directory])
            #expect(code == 2)
            #expect(output.contains("\"drift\" : true"), "\(output)")

            (output, code) = await site.apply()
            #expect(code == 0, "\(output)")
            (output, code) = await runVirtform(["drift", site.directory])
            #expect(code == 0, "\(output)")
        }
    }

    @Test func aSavedPlanIsAppliedOnlyWhileItStillHolds() async throws {
        try await E2ESite.with(hosts: 2) { site in
            let planFile = site.lab.configuration.root + "/plan.json"
            var (output, code) = await runVirtform(["plan", "--out", planFile, site.directory])
            try #require(code == 0, "\(output)")
            (output, code) = await runVirtform(["apply", "--auto-approve", "--plan", planFile])
            #expect(code == 0, "\(output)")
            #expect(try await site.domains(on: 0) == ["appl:db-1": false, "appl:web-1": true])

            // A plan made, then a manifest edited: the saved plan names the file and is refused.
            try site.write(webMemory: "56MiB")
            (output, code) = await runVirtform(["plan", "--out", planFile, site.directory])
            try #require(code == 0, "\(output)")
            try site.write(webMemory: "40MiB")
            (output, code) = await runVirtform(["apply", "--auto-approve", "--plan", planFile])
            #expect(code == 1, "\(output)")
            #expect(output.contains("the manifests changed since the plan was made"), "\(output)")
            #expect(output.contains(": edited"), "\(output)")
            #expect(try await site.domains(on: 0) == ["appl:db-1": false, "appl:web-1": true], "nothing was applied")

            // A plan made, then the world moves on before it is applied.
            try site.write(webMemory: "48MiB")
            (output, code) = await runVirtform(["plan", "--out", planFile, site.directory])
            try #require(code == 0, "\(output)")
            try await site.virsh(0, "destroy", "appl:web-1")
            (output, code) = await runVirtform(["apply", "--auto-approve", "--plan", planFile])
            #expect(code == 1, "\(output)")
            #expect(output.contains("the saved plan is out of date"), "\(output)")
            #expect(output.contains("VirtualMachine/appl/web-1"), "\(output)")
            #expect(try await site.domains(on: 0)["appl:web-1"] == false, "nothing was applied")

            // Planned again, it goes through.
            (output, code) = await runVirtform(["plan", "--out", planFile, site.directory])
            (output, code) = await runVirtform(["apply", "--auto-approve", "--plan", planFile])
            #expect(code == 0, "\(output)")
            (output, code) = await runVirtform(["plan", "--detailed-exitcode", site.directory])
            #expect(code == 0, "\(output)")
        }
    }

    @Test func unmanagedDomainsAreLeftAlone() async throws {
        try await E2ESite.with(hosts: 2) { site in
            let handmade = """
                <domain type='test'><name>handmade</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>
                <os><type>hvm</type></os></domain>
                """
            try await site.virshDefine(0, handmade)
            var (output, code) = await site.apply(extra: ["--allow-destroy"])
            #expect(code == 0, "\(output)")
            #expect(!output.contains("handmade"), "\(output)")
            #expect(try await site.domains(on: 0)["handmade"] == false)

            (output, code) = await runVirtform(["plan", "--show-unmanaged", site.directory])
            #expect(code == 0)
            #expect(output.contains("handmade"), "\(output)")
            (output, code) = await runVirtform(["plan", site.directory])
            #expect(!output.contains("handmade"), "\(output)")
        }
    }

    @Test func anUnreachableHostMakesItsGuestsUnknownAndTheRunFail() async throws {
        try await E2ESite.with(hosts: 2) { site in
            var (output, code) = await site.apply()
            #expect(code == 0, "\(output)")
            try site.write(webMemory: "96MiB")
            try await site.stopHost(1)

            (output, code) = await runVirtform(["plan", "--detailed-exitcode", site.directory])
            #expect(code == 1, "\(output)")
            #expect(output.contains("e2e-h2"), "\(output)")
            #expect(output.contains("unknown"), "\(output)")
            #expect(!output.contains("+ VirtualMachine/appl/web-2"), "nothing is planned for a guest of an unreadable host:\n\(output)")
            #expect(output.contains("~ VirtualMachine/appl/web-1"), "the reachable host is still planned:\n\(output)")

            (output, code) = await runVirtform(["drift", site.directory])
            #expect(code == 1, "\(output)")
        }
    }

    @Test func anApplyKilledMidwayIsFinishedByTheNextOne() async throws {
        let extra = 400
        try await E2ESite.with(hosts: 2, extraVMs: extra) { site in
            let program = try #require(virtformExecutable(), "the virtform executable is built next to the tests")
            let watcher = try await Connection.open(uri: site.hosts[0].testURI)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = ["apply", "--auto-approve", "--per-host", "1", site.directory]
            process.environment = ProcessInfo.processInfo.environment.merging(["VIRTFORM_BACKEND": testBackend(for: [site.directory])!]) { _, new in new }
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            let midway = await poll(within: .seconds(30), every: .milliseconds(1)) {
                ((try? await watcher.listAllDomains().count) ?? 0) >= 10
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            await watcher.close()
            #expect(midway)
            #expect(process.terminationReason == .uncaughtSignal, "the apply was killed before it finished")
            let partial = try await site.domains(on: 0).count + site.domains(on: 1).count
            #expect(partial < extra + 3, "killed midway, not after the end")

            // SIGKILL freed the lock: the next apply takes it at once and records the killed run as abandoned.
            let (status, statusCode) = await runVirtform(["lock", "status", "--manifests", site.directory, "--backend", testBackend(for: [site.directory])!])
            #expect(statusCode == 0 && status.contains("is free; its last holder ended without releasing it"), "\(status)")
            let (output, code) = await site.apply()
            #expect(code == 0, "\(output)")
            #expect(output.contains("never finished") && output.contains("recorded as abandoned"), "\(output)")
            let all = try await site.domains(on: 0).merging(site.domains(on: 1)) { first, _ in first }
            #expect(all.count == extra + 3, "every VM exactly once")
            #expect(all.values.filter { $0 }.count == extra + 2, "every guest that should run runs")
            let (again, againCode) = await runVirtform(["plan", "--detailed-exitcode", site.directory])
            #expect(againCode == 0, "\(again)")
        }
    }

    /// A hypervisor whose libvirtd freezes (SIGSTOP) in the middle of an apply costs one
    /// deadline: its action in flight fails as timed out, its other actions fail at once without
    /// waiting, the other host's actions all run, and the run ends with a summary that names the
    /// host. Once the daemon thaws, one apply converges.
    @Test func aHypervisorFrozenMidApplyCostsOneDeadline() async throws {
        let extra = 40
        try await E2ESite.with(hosts: 2, extraVMs: extra) { site in
            let program = try #require(virtformExecutable(), "the virtform executable is built next to the tests")
            let frozen = try #require(await site.lab.daemonPID(site.hosts[1].index), "the second host's libvirtd")
            // Driven by the apply's own progress: the first action on e2e-h2 freezes its daemon.
            let (output, status, ended, froze) = try await runVirtformChild(
                program, ["apply", "--auto-approve", "--per-host", "1", "--operation-timeout", "3", site.directory],
                trigger: "on e2e-h2\n", onTrigger: { kill(frozen, SIGSTOP) }, cleanup: { kill(frozen, SIGCONT) })
            #expect(ended, "the apply did not end while a host was frozen:\n\(output)")
            #expect(froze, "no action ran on e2e-h2:\n\(output)")
            #expect(status == 1, "\(output)")
            #expect(output.contains("did not finish within 3"), "\(output)")
            #expect(output.contains("not tried: e2e-h2 did not answer an earlier action"), "\(output)")
            #expect(output.contains(" skipped: "), "what waits for a failed action does not run:\n\(output)")
            // Every action on the other host ran: planning again finds nothing left to do there.
            let (json, _) = await runVirtform(["plan", "--format", "json", site.directory])
            let changes = try #require((try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])?["changes"] as? [[String: Any]])
            let left = changes.filter { (($0["system"] as? [String: Any])?["name"] as? String) == "e2e-h1" }
            #expect(left.isEmpty, "left on e2e-h1: \(left.map { $0["id"] ?? "?" })")
            #expect(changes.contains { (($0["system"] as? [String: Any])?["name"] as? String) == "e2e-h2" }, "e2e-h2 was left unfinished")

            let (again, code) = await site.apply()
            #expect(code == 0, "\(again)")
            let (plan, planCode) = await runVirtform(["plan", "--detailed-exitcode", site.directory])
            #expect(planCode == 0, "\(plan)")
        }
    }

    /// A plan run while a hypervisor's libvirtd is frozen ends within its reading's deadline,
    /// with the host unreachable and its guests unknown (it used to hang with no output).
    @Test func aPlanWithAFrozenHypervisorEndsWithinItsDeadline() async throws {
        try await E2ESite.with(hosts: 2) { site in
            var (output, code) = await site.apply()
            try #require(code == 0, "\(output)")
            let daemon = try #require(await site.lab.daemonPID(site.hosts[1].index), "the second host's libvirtd")
            // The executable, as an operator runs it: the calls it leaves blocked on the frozen
            // daemon stay in its process, not in this one's libvirt (whose event loop other
            // suites share).
            let program = try #require(virtformExecutable(), "the virtform executable is built next to the tests")
            kill(daemon, SIGSTOP)
            let start = ContinuousClock.now
            let run = try await runVirtformChild(program, ["plan", "--read-timeout", "1", site.directory], trigger: "\u{0}",
                                                 within: .seconds(30), onTrigger: {}, cleanup: { kill(daemon, SIGCONT) })
            let took = start.duration(to: .now)
            (output, code) = (run.output, run.status)
            #expect(run.ended && code == 1 && output.contains("Host e2e-h2: unreachable"), "\(output)")
            #expect(took < .seconds(10), "the plan took \(took)")
            (output, code) = await runVirtform(["plan", "--detailed-exitcode", site.directory])
            #expect(code == 0, "after the thaw: \(output)")
        }
    }

    /// A libvirtd killed (SIGKILL) while virtform holds connections to it fails that host's
    /// actions — not virtform, with SIGPIPE or otherwise: the run ends with its summary, the
    /// other host's actions all ran, and after the daemon restarts one apply converges.
    @Test func aHypervisorKilledMidApplyFailsOnlyItsActions() async throws {
        try await E2ESite.with(hosts: 2, extraVMs: 40) { site in
            let program = try #require(virtformExecutable(), "the virtform executable is built next to the tests")
            let daemon = try #require(await site.lab.daemonPID(site.hosts[1].index), "the second host's libvirtd")
            let run = try await runVirtformChild(
                program, ["apply", "--auto-approve", "--per-host", "1", "--operation-timeout", "10", site.directory],
                trigger: "on e2e-h2\n", onTrigger: { kill(daemon, SIGKILL) }, cleanup: {})
            #expect(run.ended && run.triggered, "\(run.output)")
            #expect(run.status == 1, "virtform must fail the host's actions, not die (status \(run.status)):\n\(run.output)")
            #expect(run.output.contains("Apply: ") && run.output.contains("on e2e-h2"), "\(run.output)")
            #expect(run.output.contains(" skipped: "), "what waits for a failed action does not run:\n\(run.output)")
            _ = try await site.lab.startHost(site.hosts[1].index)
            // The test driver keeps its domains only while a connection is open: the site's
            // keeper died with the daemon, so one is opened again.
            let keeper = try await Connection.open(uri: site.hosts[1].testURI)
            let (again, code) = await site.apply()
            #expect(code == 0, "\(again)")
            let (plan, planCode) = await runVirtform(["plan", "--detailed-exitcode", site.directory])
            #expect(planCode == 0, "\(plan)")
            await keeper.close()
        }
    }

    /// The test driver adds almost nothing to a definition; QEMU adds a versioned machine type,
    /// controllers, PCI addresses, an emulator, a console, … All of it must be normalised away.
    @Test func realQEMUGuestsShowNoDifferencesOnceApplied() async throws {
        try await E2ESite.with(hosts: 2, driver: .qemu) { site in
            var (output, code) = await site.apply()
            #expect(code == 0, "\(output)")
            #expect(output.contains("Apply: 6 done, 0 failed, 0 skipped"), "\(output)")
            #expect(try await site.domains(on: 0) == ["appl:db-1": false, "appl:web-1": true])
            #expect(try await site.domains(on: 1) == ["appl:web-2": true])

            (output, code) = await runVirtform(["plan", "--detailed-exitcode", site.directory])
            #expect(code == 0, "a freshly applied QEMU site must show no differences:\n\(output)")
            (output, code) = await runVirtform(["drift", site.directory])
            #expect(code == 0, "\(output)")

            // What QEMU added is really there, so the normalisation was put to work.
            let xml = try await site.virsh(0, "dumpxml", "--inactive", "appl:web-1")
            #expect(xml.contains("machine='pc-i440fx-"), "\(xml)")
            #expect(xml.contains("<controller type='pci'"), "\(xml)")
            #expect(xml.contains("<address type='pci'"), "\(xml)")
            #expect(xml.contains("<emulator>"), "\(xml)")
        }
    }
}

/// The `virtform` executable built beside the test bundle.
func virtformExecutable() -> String? {
    let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let candidate = directory.appendingPathComponent("virtform").path
    return FileManager.default.isExecutableFile(atPath: candidate) ? candidate : nil
}

/// A temporary lab and a site of manifests that points at it: web-1 (running) and db-1
/// (stopped) pinned to the first host, web-2 (running) to the second, plus `extraVMs` small
/// running guests spread over both.
struct E2ESite: Sendable {
    /// Which libvirt driver of the lab's daemons the site's hosts use.
    enum Driver: Sendable {
        /// libvirt's test driver: no guest processes, fast; most tests.
        case test
        /// QEMU (TCG) guests that really start, with user-mode networking (the daemons are
        /// unprivileged, like the reference lab's).
        case qemu
    }

    let lab: HypervisorLab
    let hosts: [LabHost]
    let directory: String
    let extraVMs: Int
    let driver: Driver

    /// With `ssh`, the site's hosts are reached through each host's own sshd (libssh, the lab's
    /// key and known_hosts); the tests' own connections still use the daemons' sockets.
    static func with(hosts count: Int, extraVMs: Int = 0, driver: Driver = .test, ssh: Bool = false,
                     _ body: @Sendable (E2ESite) async throws -> Void) async throws {
        precondition(!ssh || driver == .qemu, "libvirt's test driver keeps no state between ssh sessions")
        try await HypervisorLab.withTemporaryLab(hosts: count, userPrefix: "vfetesth", ssh: ssh) { lab, hosts in
            let directory = lab.configuration.root + "/manifests"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: lab.configuration.root + "/pool", withIntermediateDirectories: true)
            let site = E2ESite(lab: lab, hosts: hosts, directory: directory, extraVMs: extraVMs, driver: driver)
            try site.write(webMemory: "64MiB")
            // The test driver forgets everything when its last connection closes: hold one.
            var keepers: [Connection] = []
            for host in hosts where driver == .test {
                let keeper = try await Connection.open(uri: host.testURI)
                keepers.append(keeper)
                // The test driver starts with a running domain of its own called `test`.
                if let builtIn = try await keeper.domain(named: "test") {
                    try await builtIn.destroy()
                    try await builtIn.undefine()
                }
            }
            var failure: (any Error)?
            do { try await body(site) } catch { failure = error }
            for keeper in keepers { await keeper.close() }
            if let failure { throw failure }
        }
    }

    /// Applies in this process. The site lock is named after the hosts' URIs, which are this
    /// lab's own, so it never meets another test's lock.
    func apply(extra: [String] = []) async -> (output: String, exitCode: Int32) {
        await runVirtform(["apply", "--auto-approve"] + extra + [directory])
    }

    func stopHost(_ index: Int) async throws {
        try await lab.stopHost(hosts[index].index)
    }

    /// The URI of host `index` for this site's driver.
    func uri(_ index: Int) -> String {
        driver == .test ? hosts[index].testURI : hosts[index].qemuURI
    }

    /// Domain name → whether it runs, on host `index`.
    func domains(on index: Int) async throws -> [String: Bool] {
        let connection = try await Connection.open(uri: uri(index))
        do {
            let list = try await connection.listAllDomains()
            await connection.close()
            return Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0.state == .running) })
        } catch {
            await connection.close()
            throw error
        }
    }

    @discardableResult
    func virsh(_ index: Int, _ arguments: String...) async throws -> String {
        let virsh = try #require(Executables.find("virsh"), "virsh (libvirt-clients) is installed")
        let command = [virsh, "-c", uri(index)] + arguments
        return try await Command.run(command).checked(command).standardOutput
    }

    func virshDefine(_ index: Int, _ xml: String) async throws {
        let file = lab.configuration.root + "/define-\(UUID().uuidString).xml"
        try xml.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        try await virsh(index, "define", file)
    }

    func write(webMemory: String) throws {
        var text = """
            apiVersion: virtform.io/v1alpha1
            kind: Network
            metadata: {name: public}
            spec: {bridge: fe0, subnet: 192.168.76.0/24}
            ---
            apiVersion: virtform.io/v1alpha1
            kind: StoragePool
            metadata: {name: e2e-pool}
            spec: {driver: dir, path: "\(lab.configuration.root)/pool"}
            ---
            apiVersion: virtform.io/v1alpha1
            kind: StorageProject
            metadata: {name: appl}
            spec: {pool: e2e-pool}

            """
        for offset in hosts.indices {
            text += """
                ---
                apiVersion: virtform.io/v1alpha1
                kind: Host
                metadata: {name: e2e-h\(offset + 1)}
                spec:
                  uri: "\(hosts[offset].ssh?.uri() ?? uri(offset))"
                  \(hosts[offset].ssh.map { "ssh: {identity: \($0.identity), knownHosts: \($0.knownHosts)}" } ?? "")
                  capacity: {memory: 64GiB, vcpus: 512, maxGuests: 500}
                  bridges: [fe0]
                  \(driver == .test ? "domainType: test" : "domainType: qemu\n  guestNetworking: user-mode")

                """
        }
        typealias Guest = (name: String, host: Int, memory: String, power: String, mac: String)
        var guests: [Guest] = [
            ("web-1", 1, webMemory, "running", "02:00:00:00:00:01"),
            ("web-2", hosts.count, webMemory, "running", "02:00:00:00:00:02"),
            ("db-1", 1, "64MiB", "stopped", "02:00:00:00:00:03"),
        ]
        for index in 0..<extraVMs {
            let mac = String(format: "02:00:00:00:%02x:%02x", 1 + index / 256, index % 256)
            guests.append(("extra-\(index)", 1 + index % hosts.count, "32MiB", "running", mac))
        }
        for guest in guests {
            text += """
                ---
                apiVersion: virtform.io/v1alpha1
                kind: VirtualMachine
                metadata: {name: \(guest.name)}
                spec:
                  project: appl
                  type: hvm
                  memory: \(guest.memory)
                  vcpus: 1
                  interfaces: [{network: public, mac: "\(guest.mac)"}]
                  placement: {host: e2e-h\(guest.host)}
                  power: \(guest.power)

                """
        }
        try text.write(toFile: directory + "/site.yaml", atomically: true, encoding: .utf8)
    }
}
