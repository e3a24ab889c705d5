// `virtform-bench storage-clone`: clone time against master size, and 200 clones + exports
// through the drivers against the same done with command-line tools one by one.
// Needs root, btrfs-progs and tgt; uses its own lab (portal 127.0.0.1:3310, control port 110)
// in a temporary folder and removes it afterwards.
import Foundation
import VirtformLab
import VirtformModel
import VirtformStorage
import VirtformSystem

enum StorageBenchmark {
    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func run(runs: Int, luns: Int) async throws {
        if let problem = StorageLab.unmetRequirements() {
            print("storage-clone: cannot run: \(problem)")
            exit(1)
        }
        let root = "/tmp/virtform-bench-storage-\(getpid())"
        let configuration = StorageLabConfiguration(root: root, mountPoint: "\(root)/pool", poolSize: 8 << 30, portalPort: 3310,
                                                    controlPort: 110, removePoolOnDown: true)
        let lab = StorageLab(configuration: configuration)
        var failure: (any Error)?
        do {
            try await lab.up()
            try await measure(configuration, runs: runs, luns: luns)
        } catch {
            failure = error
        }
        try? await lab.down()
        try? FileManager.default.removeItem(atPath: root)
        if let failure { throw failure }
    }

    static func measure(_ lab: StorageLabConfiguration, runs: Int, luns: Int) async throws {
        let pool = FileTreeDriver(flavor: .btrfs, poolName: "bench", path: lab.mountPoint)
        try await pool.probe()
        try await pool.createProject("masters")
        try await pool.createProject("clones")

        // 1. Clone time against master size: 1 GiB and 16 GiB sparse masters, 32 MiB written in each.
        print("clone time by master size (btrfs reflink through FileTreeDriver, \(runs) runs each):")
        var medians: [Double] = []
        for gibibytes in [UInt64(1), 16] {
            let size = gibibytes << 30
            let name = "m\(gibibytes)g"
            try await pool.createImage(project: "masters", name: name, size: size)
            try fill(pool.backingPath(project: "masters", volume: name), size: size, megabytes: 32)
            let snapshot = SnapshotReference(project: "masters", image: name, snapshot: "v1")
            try await pool.createSnapshot(snapshot)
            var times: [Double] = []
            for run in 0...runs {
                let start = ContinuousClock.now
                try await pool.clone(from: snapshot, project: "clones", name: "\(name)-\(run)", size: nil)
                if run > 0 { times.append(seconds(start.duration(to: .now)) * 1000) }  // the first run warms up
            }
            let middle = median(times)
            medians.append(middle)
            print(String(format: "  %2d GiB master: median %.2f ms, min %.2f ms, max %.2f ms", gibibytes, middle, times.min()!, times.max()!))
        }
        print(String(format: "  16 GiB / 1 GiB median ratio: %.2f (constant time: ~1)", medians[1] / medians[0]))

        // 2. N clones + exports through the drivers.
        let snapshot = SnapshotReference(project: "masters", image: "m1g", snapshot: "v1")
        try await pool.createProject("drivers")
        try await pool.createProject("cli")
        let export = ISCSIExport(driver: .tgt, portal: HostPort(host: "127.0.0.1", port: lab.portalPort), iqnPrefix: "iqn.2026-11.io.virtform.bench")
        let tgt = TgtExportDriver(export: export, controlPort: lab.controlPort)
        let names = (1...luns).map { "vm-\($0)" }
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            // Clones in parallel, 8 at a time (each runs on a thread of its own).
            var iterator = names.makeIterator()
            for _ in 0..<8 {
                guard let name = iterator.next() else { break }
                group.addTask { try await pool.clone(from: snapshot, project: "drivers", name: name, size: nil) }
            }
            while try await group.next() != nil {
                if let name = iterator.next() {
                    group.addTask { try await pool.clone(from: snapshot, project: "drivers", name: name, size: nil) }
                }
            }
        }
        let cloned = start.duration(to: .now)
        try await tgt.export(names.map { ExportRequest(project: "drivers", volume: $0, backingPath: pool.backingPath(project: "drivers", volume: $0)) })
        let drivers = seconds(start.duration(to: .now))
        let exported = try await tgt.observe().filter { $0.iqn.contains(":drivers.") && $0.isOwned }.count
        guard exported == luns else { throw SystemError("expected \(luns) exported targets, found \(exported)") }

        // 3. The same with the command-line tools, one by one, from a shell script.
        let source = "\(lab.mountPoint)/masters/.snapshots/m1g@v1.img"
        let script = """
            set -e
            tid=\(luns + 1)
            for i in $(seq 1 \(luns)); do
              cp --reflink=always \(source) \(lab.mountPoint)/cli/vm-$i.img
              tgtadm -C \(lab.controlPort) --lld iscsi --op new --mode target --tid $tid -T iqn.2026-11.io.virtform.bench:cli.vm-$i
              tgtadm -C \(lab.controlPort) --lld iscsi --op new --mode logicalunit --tid $tid --lun 1 -b \(lab.mountPoint)/cli/vm-$i.img
              tgtadm -C \(lab.controlPort) --lld iscsi --op bind --mode target --tid $tid -I ALL
              tid=$((tid + 1))
            done
            """
        let bash = Executables.find("bash") ?? "/bin/bash"
        let cliStart = ContinuousClock.now
        try await Command.run([bash, "-c", script], timeout: .seconds(600)).checked(["bash", "-c", "<cp + tgtadm loop>"])
        let cli = seconds(cliStart.duration(to: .now))

        print("\(luns) clones + exports (1 GiB master, tgt):")
        print(String(format: "  drivers: %.2f s (clones %.3f s, 8 in parallel; exports %.2f s, 3 tgtadm per LUN, one listing)",
                     drivers, seconds(cloned), drivers - seconds(cloned)))
        print(String(format: "  cp --reflink + tgtadm x3 per LUN from bash: %.2f s", cli))
        print(String(format: "  ratio (command line / drivers): %.2f", cli / drivers))
    }

    /// Writes `megabytes` MiB spread evenly over the file (1 MiB per stride).
    static func fill(_ path: String, size: UInt64, megabytes: Int) throws {
        let fd = open(path, O_WRONLY)
        guard fd >= 0 else { throw SystemError("failed to open \(path)") }
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0xa5, count: 1 << 20)
        let stride = size / UInt64(megabytes)
        for i in 0..<UInt64(megabytes) {
            let written = chunk.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(i * stride)) }
            guard written == chunk.count else { throw SystemError("failed to write \(path)") }
        }
        fsync(fd)
    }
}
