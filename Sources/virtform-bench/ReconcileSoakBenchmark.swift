import Foundation
import VirtformLab

/// `reconcile-soak`: `virtform reconcile --watch` over a temporary lab of `--hosts` libvirt
/// daemons (test driver) holding `--vms-per-host` guests each, for `--minutes`, with nothing
/// changing. Every `--sample` seconds it reads the loop's resident memory, open descriptors and
/// CPU time from /proc, and counts its passes from its log; it prints a row per sample and, after
/// a warm-up of the first `--warmup` minutes, the growth of memory and descriptors and the CPU
/// time per idle pass. SIGTERM at the end must exit 0. Needs root and the virtform executable.
enum ReconcileSoakBenchmark {
    struct Sample {
        var seconds: Double
        var residentKiB: Int
        var descriptors: Int
        var cpuSeconds: Double
        var passes: Int
    }

    static func run(hosts hostCount: Int, perHost: Int, minutes: Int, resync: Int, sampleEvery: Int, warmup: Int) async throws {
        if let problem = HypervisorLab.unmetRequirements() { throw BenchmarkError(problem) }
        let virtform = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("virtform").path
        guard FileManager.default.isExecutableFile(atPath: virtform) else { throw BenchmarkError("build the virtform executable first") }
        try await withTestDriverLab(hosts: hostCount) { lab, hosts, _ in
            let root = lab.configuration.root
            let directory = root + "/manifests"
            try FileManager.default.createDirectory(atPath: root + "/pool", withIntermediateDirectories: true)
            _ = try SiteGenerator(vms: hostCount * perHost, hosts: hostCount, hostsPerCluster: hostCount, lab: (hosts.map(\.testURI), root + "/pool"))
                .write(to: URL(fileURLWithPath: directory))
            let backend = "file:" + root + "/state"
            let applied = try Measured.run([virtform, "apply", "--auto-approve", "--backend", backend, directory])
            guard applied.status == 0 else { throw BenchmarkError("the first apply failed (exit \(applied.status))") }
            print("site: \(hostCount * perHost) VMs on \(hostCount) lab hosts (test driver); applied in \(String(format: "%.1f", applied.seconds)) s")

            let log = root + "/reconcile.log"
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: virtform)
            process.arguments = ["reconcile", "--watch", "--resync", "\(resync)", "--metrics-address", "none", "--backend", backend, directory]
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
            let pid = process.processIdentifier
            print("virtform reconcile --watch --resync \(resync): pid \(pid), \(minutes) min, a sample every \(sampleEvery) s")
            print("   min   RSS MiB   fds   CPU s   passes")
            let started = ContinuousClock.now
            var samples: [Sample] = []
            while ContinuousClock.now - started < .seconds(minutes * 60) {
                try await Task.sleep(for: .seconds(sampleEvery))
                guard process.isRunning else { throw BenchmarkError("virtform reconcile ended early (exit \(process.terminationStatus)); see \(log)") }
                let elapsed = ContinuousClock.now - started
                let sample = Sample(seconds: Double(elapsed.components.seconds), residentKiB: resident(pid), descriptors: descriptors(pid),
                                    cpuSeconds: cpu(pid), passes: passes(log))
                samples.append(sample)
                print(String(format: "%6.1f %9.1f %5d %7.2f %8d", sample.seconds / 60, Double(sample.residentKiB) / 1024, sample.descriptors,
                             sample.cpuSeconds, sample.passes))
            }
            process.terminate()  // SIGTERM
            process.waitUntilExit()
            let after = samples.filter { $0.seconds >= Double(warmup * 60) }
            guard let first = after.first, let last = after.last, last.passes > first.passes else {
                throw BenchmarkError("too few samples after the warm-up")
            }
            let growth = Double(last.residentKiB - first.residentKiB) / Double(first.residentKiB) * 100
            let peak = after.map(\.residentKiB).max()!
            let fds = (after.map(\.descriptors).min()!, after.map(\.descriptors).max()!)
            let perPass = (last.cpuSeconds - first.cpuSeconds) / Double(last.passes - first.passes)
            print(String(format: "after %d min of warm-up: RSS %.1f → %.1f MiB (%+.1f %%, peak %.1f MiB); descriptors %d–%d; %d passes, %.1f ms CPU per idle pass; SIGTERM: exit %d",
                         warmup, Double(first.residentKiB) / 1024, Double(last.residentKiB) / 1024, growth, Double(peak) / 1024,
                         fds.0, fds.1, last.passes - first.passes, perPass * 1000, process.terminationStatus))
        }
    }

    private static func status(_ pid: Int32) -> String { (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? "" }

    static func resident(_ pid: Int32) -> Int {
        for line in status(pid).split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
        }
        return 0
    }

    static func descriptors(_ pid: Int32) -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0 }

    /// utime + stime of the process, in seconds.
    static func cpu(_ pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3; utime and stime are fields 14 and 15.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func passes(_ log: String) -> Int {
        ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").components(separatedBy: " virtform.reconcile: pass ").count - 1
    }
}
