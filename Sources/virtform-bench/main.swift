// Benchmarks for virtform. Not timed tests: run them on purpose and record the figures in
// docs/performance.md.
//
//     swift run -c release virtform-bench load-validate [--vms 10000] [--hosts 500] [--runs 5]
//     swift build -c release && .build/release/virtform-bench plan-apply [--hosts 10] [--vms-per-host 1000] [--runs 3] [--parallelism 16] [--per-host 4]
//     swift build -c release && .build/release/virtform-bench raw-apply [--hosts 10] [--vms-per-host 1000] [--per-host 4]   (root)
//     swift run -c release virtform-bench dhcp-reservations [--reservations 5000] [--runs 3]   (root, kea-dhcp4)
//     swift run -c release virtform-bench storage-clone [--runs 7] [--luns 200]   (root, btrfs-progs, tgt)
//     swift build -c release && .build/release/virtform-bench reconcile-soak [--hosts 30] [--vms-per-host 50] [--minutes 60] [--resync 10]   (root)
//     swift build -c release && .build/release/virtform-bench history [--runs 100000] [--actions 100] [--repeats 20]   (sqlite3, postgresql)
import Foundation
import VirtformManifests
import VirtformModel

let arguments = Array(CommandLine.arguments.dropFirst())

func option(_ name: String, default value: Int) -> Int {
    guard let i = arguments.firstIndex(of: "--\(name)"), i + 1 < arguments.count, let n = Int(arguments[i + 1]) else { return value }
    return n
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

func loadValidate() throws {
    let vms = option("vms", default: 10_000)
    let hosts = option("hosts", default: 500)
    let runs = option("runs", default: 5)
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("virtform-bench-\(getpid())")
    defer { try? FileManager.default.removeItem(at: directory) }
    let generated = try SiteGenerator(vms: vms, hosts: hosts).write(to: directory)
    print("site: \(vms) VMs (with \(vms) bindings) across \(hosts) hosts, \(generated.files) files, \(ByteSize(bytes: UInt64(generated.bytes)))")

    var times: [Double] = []
    for run in 0...runs {
        let start = ContinuousClock.now
        let result = ManifestLoader.load(paths: [directory.path])
        let elapsed = start.duration(to: .now)
        let seconds = inSeconds(elapsed)
        guard result.isValid, result.site.virtualMachines.count == vms else {
            print("generated site did not validate: \(result.diagnostics.prefix(5))")
            exit(1)
        }
        if run > 0 { times.append(seconds) }  // the first run warms the page cache
    }
    print(String(format: "load+validate: median %.3f s, best %.3f s over %d runs (target < 0.5 s)",
                 median(times), times.min()!, runs))
}

func dispatch() async throws {
    switch arguments.first {
    case "load-validate", nil:
        try loadValidate()
    case "generate":
        // The large site alone, for measuring a command by hand (`/usr/bin/time -v virtform validate DIR`).
        guard let i = arguments.firstIndex(of: "--out"), i + 1 < arguments.count else { throw BenchmarkError("generate needs --out DIR") }
        let generated = try SiteGenerator(vms: option("vms", default: 10_000), hosts: option("hosts", default: 500))
            .write(to: URL(fileURLWithPath: arguments[i + 1]))
        print("wrote \(generated.files) files, \(ByteSize(bytes: UInt64(generated.bytes)))")
    case "plan-apply":
        try await planApplyBenchmark()
    case "raw-apply":
        try await rawApplyBenchmark()
    case "xml-parse":
        try xmlParseBenchmark()
    case "planner":
        try plannerBenchmark()
    case "migration":
        try await MigrationBenchmark.run(pairs: option("pairs", default: 5), rounds: option("rounds", default: 2))
    case "placement":
        try PlacementBenchmark.run(hosts: option("hosts", default: 500), vms: option("vms", default: 10_000), runs: option("runs", default: 5))
    case "storage-clone":
        try await StorageBenchmark.run(runs: option("runs", default: 7), luns: option("luns", default: 200))
    case "history":
        try await HistoryBenchmark.run(runs: option("runs", default: 100_000), actions: option("actions", default: 100),
                                       repeats: option("repeats", default: 20))
    case "reconcile-soak":
        try await ReconcileSoakBenchmark.run(hosts: option("hosts", default: 30), perHost: option("vms-per-host", default: 50),
                                             minutes: option("minutes", default: 60), resync: option("resync", default: 10),
                                             sampleEvery: option("sample", default: 30), warmup: option("warmup", default: 5))
    case "dhcp-reservations":
        try await DHCPBenchmark.run(reservations: option("reservations", default: 5_000), runs: option("runs", default: 3))
    default:
        print("""
            usage: virtform-bench load-validate [--vms N] [--hosts N] [--runs N]
                   virtform-bench generate --out DIR [--vms N] [--hosts N]
                   virtform-bench plan-apply [--hosts N] [--vms-per-host N] [--runs N]   (root; a temporary lab)
                   virtform-bench raw-apply [--hosts N] [--vms-per-host N] [--per-host N] (root; a temporary lab)
                   virtform-bench placement [--hosts N] [--vms N] [--runs N]            (pure planning)
                   virtform-bench history [--runs N] [--actions N] [--repeats N]        (sqlite3; postgresql, run as root)
                   virtform-bench migration [--pairs N] [--rounds N]                     (root; a temporary lab, QEMU)
                   virtform-bench storage-clone [--runs N] [--luns N]                    (root; btrfs-progs, tgt)
                   virtform-bench dhcp-reservations [--reservations N] [--runs N]      (root; kea-dhcp4)
            """)
        exit(2)
    }
}

do {
    try await dispatch()
} catch {
    print("virtform-bench: \(error)")
    exit(1)
}
