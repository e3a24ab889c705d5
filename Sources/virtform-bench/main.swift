// Benchmarks for virtform. Not timed tests: run them on purpose and record the figures in
// docs/performance.md.
//
//     swift run -c release virtform-bench load-validate [--vms 10000] [--hosts 500] [--runs 5]
//     swift run -c release virtform-bench storage-clone [--runs 7] [--luns 200]   (root, btrfs-progs, tgt)
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
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        guard result.isValid, result.site.virtualMachines.count == vms else {
            print("generated site did not validate: \(result.diagnostics.prefix(5))")
            exit(1)
        }
        if run > 0 { times.append(seconds) }  // the first run warms the page cache
    }
    print(String(format: "load+validate: median %.3f s, best %.3f s over %d runs (target < 0.5 s)",
                 median(times), times.min()!, runs))
}

switch arguments.first {
case "load-validate", nil:
    try loadValidate()
case "storage-clone":
    try await StorageBenchmark.run(runs: option("runs", default: 7), luns: option("luns", default: 200))
default:
    print("usage: virtform-bench load-validate [--vms N] [--hosts N] [--runs N] | storage-clone [--runs N] [--luns N]")
    exit(2)
}
