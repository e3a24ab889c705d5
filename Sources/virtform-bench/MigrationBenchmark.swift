import Foundation
import Libvirt
import VirtformLab
import VirtformSystem

/// Live migration through virtform against `virsh migrate --live` of the same guest on the same
/// two lab hypervisors, side by side in one run (real QEMU guests booting from iSCSI LUNs of a
/// btrfs pool behind tgt), and the evacuation of a host of four guests two at a time against
/// one at a time. Needs root (a temporary lab).
enum MigrationBenchmark {
    static func run(pairs: Int, rounds: Int) async throws {
        LibvirtRuntime.setEventLoopEnabled(false)
        for problem in [HypervisorLab.unmetRequirements(), StorageLab.unmetRequirements(), GuestImage.unmetRequirements()].compactMap({ $0 }) {
            throw BenchmarkError(problem)
        }
        let virtform = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("virtform").path
        guard FileManager.default.isExecutableFile(atPath: virtform), let virsh = Executables.find("virsh") else {
            throw BenchmarkError("build the virtform executable first (swift build -c release --product virtform); virsh is needed too")
        }
        try await HypervisorLab.withTemporaryLab(hosts: 2, userPrefix: "vfbenchm") { lab, hosts in
            let root = lab.configuration.root
            let storage = StorageLab(configuration: StorageLabConfiguration(
                root: root + "/storage", mountPoint: root + "/pool", poolSize: 1 << 30, portalPort: 3345, controlPort: 145, removePoolOnDown: true))
            var failure: (any Error)?
            do {
                _ = try await storage.up()
                let image = root + "/guest.img"
                try await GuestImage.build(at: image, scratch: root + "/guest-build")
                let directory = root + "/manifests"
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                func write(guests: [(name: String, placement: String)], maintenance: String? = nil, perHost: Int = 2) throws {
                    var text = ""
                    for (i, host) in hosts.enumerated() {
                        text += """
                            apiVersion: virtform.io/v1alpha1
                            kind: Host
                            metadata: {name: bench-h\(i + 1)}
                            spec:
                              uri: "\(host.qemuURI)"
                              capacity: {memory: 4GiB, vcpus: 8}
                              bridges: [fe0]
                              migrationAddress: 127.0.0.1
                              maintenance: \(maintenance == "bench-h\(i + 1)")
                              domainType: qemu
                              guestNetworking: user-mode
                            ---

                            """
                    }
                    text += """
                        apiVersion: virtform.io/v1alpha1
                        kind: Cluster
                        metadata: {name: bench}
                        spec:
                          hosts: [bench-h1, bench-h2]
                          placement: {policy: spread}
                          migration: {maxPerHost: \(perHost)}
                        ---
                        apiVersion: virtform.io/v1alpha1
                        kind: StoragePool
                        metadata: {name: bench-pool}
                        spec:
                          driver: btrfs
                          path: \(root)/pool
                          export: {driver: tgt, portal: "127.0.0.1:3345", iqnPrefix: iqn.2026-12.io.virtform.bench, controlPort: 145}
                        ---
                        apiVersion: virtform.io/v1alpha1
                        kind: StorageProject
                        metadata: {name: masters}
                        spec: {pool: bench-pool}
                        ---
                        apiVersion: virtform.io/v1alpha1
                        kind: StorageProject
                        metadata: {name: appl}
                        spec: {pool: bench-pool}
                        ---
                        apiVersion: virtform.io/v1alpha1
                        kind: Image
                        metadata: {name: base}
                        spec: {project: masters, size: 64MiB, snapshots: [v1], source: "\(image)"}
                        ---
                        apiVersion: virtform.io/v1alpha1
                        kind: Network
                        metadata: {name: public}
                        spec: {bridge: fe0, subnet: 192.168.79.0/24}

                        """
                    for guest in guests {
                        text += """
                            ---
                            apiVersion: virtform.io/v1alpha1
                            kind: VirtualMachine
                            metadata: {name: \(guest.name)}
                            spec:
                              project: appl
                              memory: 64MiB
                              vcpus: 1
                              disk: {from: masters/base@v1}
                              interfaces: [{network: public}]
                              placement: \(guest.placement)
                              power: running

                            """
                    }
                    try text.write(toFile: directory + "/site.yaml", atomically: true, encoding: .utf8)
                }
                func apply(_ extra: [String] = []) throws -> (seconds: Double, output: String) {
                    let start = ContinuousClock.now
                    let result = try Self.capture([virtform, "apply", "--auto-approve"] + extra + [directory])
                    guard result.status == 0 else { throw BenchmarkError("apply failed (exit \(result.status)):\n\(result.output)") }
                    return (inSeconds(start.duration(to: .now)), result.output)
                }

                // 1. One guest: virsh moves it to bench-h2, virtform moves it back, in turns.
                try write(guests: [("mover", "{host: bench-h1}")])
                _ = try apply()
                var raw: [Double] = [], action: [Double] = [], whole: [Double] = []
                for _ in 0..<pairs {
                    let start = ContinuousClock.now
                    let moved = try Self.capture([virsh, "-c", hosts[0].qemuURI, "migrate", "--live", "--persistent", "--undefinesource",
                                                  "appl:mover", hosts[1].qemuURI, "--migrateuri", "tcp://127.0.0.1"])
                    guard moved.status == 0 else { throw BenchmarkError("virsh migrate failed: \(moved.output)") }
                    raw.append(inSeconds(start.duration(to: .now)))
                    let back = try apply()
                    whole.append(back.seconds)
                    guard let seconds = Self.actionSeconds("migrate VirtualMachine/appl/mover", in: back.output) else {
                        throw BenchmarkError("no migration in virtform's apply:\n\(back.output)")
                    }
                    action.append(seconds)
                }
                print(String(format: "live migration of a 64 MiB guest, %d pairs: virsh migrate --live median %.2f s; virtform's migrate action median %.2f s (%.2fx), its whole apply (read, plan, migrate) median %.2f s (%.2fx)",
                             pairs, median(raw), median(action), median(action) / median(raw), median(whole), median(whole) / median(raw)))

                // 2. Four guests leave a host in maintenance: one at a time, then two at a time, in turns.
                let four = (1...4).map { (name: "g\($0)", placement: "{cluster: bench}") }
                try write(guests: four, maintenance: "bench-h2")
                _ = try apply(["--allow-destroy"])  // the single guest goes
                var serial: [Double] = [], paired: [Double] = []
                for round in 0..<rounds {
                    for perHost in (round.isMultiple(of: 2) ? [1, 2] : [2, 1]) {
                        // Leave whichever host holds them now.
                        let on = try Self.capture([virsh, "-c", hosts[0].qemuURI, "list", "--name"]).output.contains("appl:g1") ? "bench-h1" : "bench-h2"
                        try write(guests: four, maintenance: on, perHost: perHost)
                        let evacuation = try apply()
                        if perHost == 1 { serial.append(evacuation.seconds) } else { paired.append(evacuation.seconds) }
                    }
                }
                print(String(format: "evacuation of 4 guests, %d rounds: one at a time median %.2f s, two at a time median %.2f s (%.2fx)",
                             rounds, median(serial), median(paired), median(paired) / median(serial)))
            } catch {
                failure = error
            }
            // Guests first, while their disks' targets still answer.
            for host in hosts {
                if let connection = try? await Connection.open(uri: host.qemuURI) {
                    for summary in (try? await connection.listAllDomains()) ?? [] where summary.state.isActive { try? await summary.domain.destroy() }
                    await connection.close()
                }
            }
            do { try await storage.down() } catch { failure = failure ?? error }
            if let failure { throw failure }
        }
    }

    /// `✓ ID (3.2s)` → 3.2.
    static func actionSeconds(_ id: String, in output: String) -> Double? {
        for line in output.split(separator: "\n") where line.contains("✓ \(id) (") {
            guard let open = line.lastIndex(of: "("), let close = line.lastIndex(of: ")") else { continue }
            let text = line[line.index(after: open)..<close]
            if text.hasSuffix("ms") { return Double(text.dropLast(2)).map { $0 / 1000 } }
            if text.hasSuffix("s") { return Double(text.dropLast()) }
        }
        return nil
    }

    /// Runs a program, returning its exit status and what it printed.
    static func capture(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
