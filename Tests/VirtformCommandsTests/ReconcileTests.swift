import Foundation
import Libvirt
import Synchronization
import Testing
import VirtformLab
import VirtformSystem

/// `virtform reconcile --watch` as a child process, its log lines collected as they come.
final class ReconcileChild: Sendable {
    let process: Process
    private final class Said: Sendable { let text = Mutex("") }
    private let said = Said()

    init(_ program: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        self.process = process
        let said = self.said
        let reader = Thread {
            while true {
                let chunk = pipe.fileHandleForReading.availableData
                if chunk.isEmpty { return }
                said.text.withLock { $0 += String(decoding: chunk, as: UTF8.self) }
            }
        }
        reader.start()
    }

    var output: String { said.text.withLock { $0 } }

    /// The JSON log lines whose message is `message`.
    func lines(_ message: String) -> [String] {
        output.split(separator: "\n").map(String.init).filter { $0.contains("\"message\":\"\(message)\"") }
    }

    /// Waits until `condition` holds for the output, at most `within`.
    @discardableResult
    func waitFor(within: Duration, _ condition: @escaping @Sendable (String) -> Bool) async -> Bool {
        await poll(within: within, every: .milliseconds(100)) { condition(self.output) }
    }

    /// Sends `signal` and waits for the exit; the status, or nil when it did not end in time (then killed).
    func stop(_ signal: Int32 = SIGTERM, within: Duration = .seconds(60)) async -> Int32? {
        kill(process.processIdentifier, signal)
        let ended = await poll(within: within, every: .milliseconds(100)) { !self.process.isRunning }
        if !ended { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return ended ? process.terminationStatus : nil
    }

    /// The metrics address it logged.
    var metricsURL: String? {
        guard let range = output.range(of: #"http://127\.0\.0\.1:[0-9]+/metrics"#, options: .regularExpression) else { return nil }
        return String(output[range])
    }
}

/// Reads a metrics page with python's `prometheus_client` parser (Debian's python3-prometheus-client):
/// each sample as `name{labels} value`, one a line, labels sorted.
func scrape(_ url: String) async throws -> [String: Double] {
    let script = """
        import sys, urllib.request
        from prometheus_client.parser import text_string_to_metric_families
        text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                print(f"{sample.name}{{{labels}}} {sample.value}")
        """
    let result = try await Command.run(["/usr/bin/python3", "-c", script, url], timeout: .seconds(30))
    guard result.status == 0 else { throw CommandFailureForTests("the Prometheus parser refused the metrics: \(result.standardError)") }
    var samples: [String: Double] = [:]
    for line in result.standardOutput.split(separator: "\n") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
        samples[String(line[..<space])] = value
    }
    return samples
}

struct CommandFailureForTests: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The reconcile loop on real hypervisors with a real QEMU guest booting from its iSCSI LUN.
extension StackTests {
    static var prometheusParser: String? {
        FileManager.default.fileExists(atPath: "/usr/lib/python3/dist-packages/prometheus_client/parser.py") ? nil
            : "python3-prometheus-client is not installed (scripts/setup installs it)"
    }

    /// Sets the Site document's `spec.reconcile` in `directory/site.yaml`.
    static func setReconcile(_ mode: String, in directory: String) throws {
        let path = directory + "/site.yaml"
        var text = try String(contentsOfFile: path, encoding: .utf8)
        for before in ["spec: {}", "spec: {reconcile: observe}", "spec: {reconcile: repair}", "spec: {reconcile: full}"] {
            text = text.replacingOccurrences(of: "kind: Site\nmetadata: {name: stack-a}\n" + before, with: "kind: Site\nmetadata: {name: stack-a}\nspec: {reconcile: \(mode)}")
        }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Observe reports a killed guest and a hand edit and does nothing; repair (picked up from
    /// disk) starts the guest again and undoes the edit within two resyncs, recorded as a
    /// reconcile run; SIGTERM while it applies lets the running action finish, starts nothing
    /// new, releases the lock and exits 0; the next pass converges.
    @Test(.enabled(if: GuestImage.unmetRequirements() == nil && prometheusParser == nil,
                   Comment(rawValue: GuestImage.unmetRequirements() ?? prometheusParser ?? "")))
    func reconcileObservesRepairsAndStopsGracefully() async throws {
        try await StackSite.with(hosts: 1) { site in
            let program = try #require(virtformExecutable())
            let image = site.root + "/guest.img"
            try await GuestImage.build(at: image, scratch: site.root + "/guest-build")
            let directory = site.root + "/manifests-reconcile"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let keeper = Mover(name: "keeper", mac: "02:00:00:00:33:01", placement: "{host: stack-h1}", address: "192.168.76.91")
            try Self.writeMovers([keeper], site: site, image: image, directory: directory)
            try Self.setReconcile("observe", in: directory)
            let backend = "file:" + directory + "/.virtform-state"
            var (output, code) = await runVirtform(["apply", "--auto-approve", "--backend", backend, directory])
            try #require(code == 0, "\(output)")
            let h1 = try await Connection.open(uri: site.hosts[0].qemuURI)
            defer { Task { await h1.close() } }
            let domain = try #require(try await h1.domain(named: "appl:keeper"))
            let maxMemory = try await domain.info.maxMemoryKiB

            let resync = 3
            let child = try ReconcileChild(program, ["reconcile", "--watch", "--resync", "\(resync)", "--metrics-address", "127.0.0.1:0",
                                                     "--log-format", "json", "--backend", backend, directory])
            var stopped = false
            defer { if !stopped { kill(child.process.processIdentifier, SIGKILL) } }
            #expect(await child.waitFor(within: .seconds(60)) { $0.contains("\"message\":\"pass\"") }, "\(child.output)")
            let metrics = try #require(child.metricsURL, "\(child.output)")
            var samples = try await scrape(metrics)
            #expect(samples[#"virtform_objects{kind="VirtualMachine",state="in_sync"}"#] == 1, "\(samples)")
            #expect(samples[#"virtform_reconcile_passes_total{outcome="clean"}"#] ?? 0 >= 1, "\(samples)")

            // Observe: the guest killed by hand and its maximum memory edited are reported, not undone.
            try await domain.destroy()
            let edit = try await Command.run(["/usr/bin/virsh", "-c", site.hosts[0].qemuURI, "setmaxmem", "appl:keeper", "\(maxMemory + 65536)", "--config"],
                                             timeout: .seconds(30))
            #expect(edit.status == 0, "\(edit.standardError)")
            let reported = await poll(within: .seconds(resync * 3 + 10), every: .milliseconds(250)) {
                (try? await scrape(metrics))?[#"virtform_drift{cause="outside"}"#] ?? 0 >= 2
            }
            samples = try await scrape(metrics)
            #expect(reported, "within one resync the metrics count both as changed outside virtform: \(samples)\n\(child.output)")
            #expect(samples[#"virtform_objects{kind="VirtualMachine",state="drifted"}"#] == 1, "\(samples)")
            #expect(child.lines("drift").contains { $0.contains("start VirtualMachine/appl/keeper") && $0.contains("observe") }, "\(child.output)")
            #expect(child.lines("drift").contains { $0.contains("update VirtualMachine/appl/keeper") }, "\(child.output)")
            #expect(child.lines("applying").isEmpty, "observe applies nothing: \(child.output)")
            #expect(try await domain.state == .shutOff)

            // Repair, read from disk: the guest runs again and the edit is undone within two resyncs.
            try Self.setReconcile("repair", in: directory)
            let repaired = await poll(within: .seconds(resync * 2 + 15), every: .milliseconds(250)) {
                (try? await h1.domain(named: "appl:keeper")?.state) == .running
            }
            #expect(repaired, "\(child.output)")
            #expect(child.lines("manifests changed").count == 1, "\(child.output)")
            // After the run that repaired it, a pass finds nothing left to do.
            #expect(await child.waitFor(within: .seconds(30)) { text in
                guard let applied = text.range(of: "\"message\":\"applied\"") else { return false }
                return text[applied.upperBound...].split(separator: "\n").contains { $0.contains("\"message\":\"pass\"") && $0.contains("\"outcome\":\"clean\"") }
            }, "\(child.output)")
            #expect(try await h1.domain(named: "appl:keeper")?.info.maxMemoryKiB == maxMemory)
            (output, code) = await runVirtform(["history", "--manifests", directory, "--backend", backend])
            #expect(code == 0 && output.contains("reconcile"), "the history names the reconcile run: \(output)")

            // SIGTERM while an action runs: it finishes, nothing new starts, the lock is let go, exit 0.
            let startedBefore = child.lines("action started").count
            try await h1.domain(named: "appl:keeper")?.destroy()
            #expect(await child.waitFor(within: .seconds(resync * 3 + 10)) { _ in child.lines("action started").count > startedBefore }, "\(child.output)")
            let status = await child.stop(SIGTERM)
            stopped = true
            #expect(status == 0, "\(child.output)")
            #expect(child.output.contains("shutting down"), "\(child.output)")
            if let shutdown = child.output.range(of: "shutting down") {
                #expect(!child.output[shutdown.upperBound...].contains("\"message\":\"action started\""), "nothing new starts: \(child.output)")
            }
            #expect(!child.lines("action started").isEmpty)
            // Every action that started also ended (none was cut off).
            #expect(child.lines("action started").count == child.lines("action succeeded").count + child.lines("action failed").count, "\(child.output)")
            // The lock is free and the next pass converges.
            (output, code) = await runVirtform(["reconcile", "--backend", backend, directory])
            #expect(code == 0, "\(output)")
            #expect(try await h1.domain(named: "appl:keeper")?.state == .running)
        }
    }

    /// HA in the loop: stack-h1's daemon killed; the loop fences it only after three failed
    /// readings over the time given, then starts its HA guest on stack-h2 from the same LUN; with
    /// a fencing command that fails, nothing is restarted and the reason is logged.
    @Test(.enabled(if: GuestImage.unmetRequirements() == nil, Comment(rawValue: GuestImage.unmetRequirements() ?? "")))
    func reconcileFencesAFailedHostAndRestartsItsHAGuestElsewhere() async throws {
        try await StackSite.with(hosts: 2) { site in
            let program = try #require(virtformExecutable())
            let image = site.root + "/guest.img"
            try await GuestImage.build(at: image, scratch: site.root + "/guest-build")
            let directory = site.root + "/manifests-reconcile-ha"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let guardian = Mover(name: "guardian", mac: "02:00:00:00:34:01", placement: "{cluster: stack}", ha: true)
            try Self.writeMovers([guardian], site: site, image: image, directory: directory, fence: ["/bin/false"])
            try Self.setReconcile("repair", in: directory)
            let backend = "file:" + directory + "/.virtform-state"
            var (output, code) = await runVirtform(["apply", "--auto-approve", "--backend", backend, directory])
            try #require(code == 0, "\(output)")
            let h1 = try await Connection.open(uri: site.hosts[0].qemuURI)
            #expect(try await h1.domain(named: "appl:guardian")?.state == .running, "placed on stack-h1 first")
            await h1.close()

            let child = try ReconcileChild(program, ["reconcile", "--watch", "--resync", "2", "--host-down-after", "3", "--host-down-seconds", "3",
                                                     "--metrics-address", "none", "--log-format", "json", "--backend", backend, directory])
            var stopped = false
            defer { if !stopped { kill(child.process.processIdentifier, SIGKILL) } }
            #expect(await child.waitFor(within: .seconds(60)) { $0.contains("\"message\":\"pass\"") }, "\(child.output)")

            // The host's daemon dies; its fencing command fails: nothing restarts, and the log says why.
            kill(site.hosts[0].pid, SIGKILL)
            #expect(await child.waitFor(within: .seconds(60)) { $0.contains("fencing command exited 1") }, "\(child.output)")
            let h2 = try await Connection.open(uri: site.hosts[1].qemuURI)
            #expect(try await h2.domain(named: "appl:guardian") == nil, "never restarted without fencing")
            let failedAt = child.output.range(of: "fencing command exited 1")!.lowerBound
            let before = String(child.output[..<failedAt])
            #expect(before.contains("has failed 2 of 3 readings"), "it waited for three readings in a row: \(child.output)")
            if let firstFence = child.output.range(of: "\"message\":\"action started\"") {
                #expect(String(child.output[..<firstFence.lowerBound]).contains("has failed 2 of 3 readings"), "fenced only after the threshold: \(child.output)")
            }

            // A working fencing command (read from disk): fenced once, the guest runs on stack-h2.
            try Self.writeMovers([guardian], site: site, image: image, directory: directory,
                                 fence: [program, "lab", "fence", site.hosts[0].name, "--root", site.root, "--user-prefix", "vfstackh"])
            try Self.setReconcile("repair", in: directory)
            let restarted = await poll(within: .seconds(60), every: .milliseconds(250)) {
                (try? await h2.domain(named: "appl:guardian")?.state) == .running
            }
            #expect(restarted, "\(child.output)")
            #expect(child.output.components(separatedBy: "\"action\":\"fence Host/stack-h1\"").count - 1 >= 1, "\(child.output)")
            #expect(child.lines("action succeeded").filter { $0.contains("fence Host/stack-h1") }.count == 1, "fenced once: \(child.output)")
            await h2.close()
            #expect(await child.stop(SIGTERM) == 0, "\(child.output)")
            stopped = true
            (output, code) = await runVirtform(["history", "--manifests", directory, "--backend", backend])
            #expect(output.contains("reconcile"), "\(output)")
        }
    }
}

/// The example systemd unit is one systemd accepts: `systemd-analyze verify` with the unit's
/// ExecStart pointed at the built executable.
@Suite("reconcile's systemd unit")
struct ReconcileUnitTests {
    static let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first { FileManager.default.isExecutableFile(atPath: $0) }

    @Test(.enabled(if: analyze != nil && virtformExecutable() != nil, "systemd-analyze and the built virtform"))
    func theExampleUnitVerifies() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let unit = try String(contentsOfFile: root + "/examples/systemd/virtform-reconcile.service", encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/local/bin/virtform reconcile --watch"))
        #expect(unit.contains("Restart=on-failure") && unit.contains("NoNewPrivileges=yes") && unit.contains("KillSignal=SIGTERM"))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vftest-unit-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/virtform-reconcile.service"
        try unit.replacingOccurrences(of: "/usr/local/bin/virtform", with: virtformExecutable()!).write(toFile: path, atomically: true, encoding: .utf8)
        let result = try await Command.run([Self.analyze!, "verify", "--man=no", path], timeout: .seconds(60))
        #expect(result.status == 0, "\(result.standardError)\(result.standardOutput)")
        // And it refuses a broken one, so the check means something.
        try unit.replacingOccurrences(of: "/usr/local/bin/virtform", with: "/nonexistent/virtform").write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try await Command.run([Self.analyze!, "verify", "--man=no", path], timeout: .seconds(60)).status != 0)
    }
}
