// `virtform-bench dhcp-reservations [--reservations 5000] [--runs 3]`: adds N reservations to one
// Kea subnet in a single apply, against a real kea-dhcp4 in a throw-away network namespace
// (root, kea-dhcp4, iproute2 and busybox needed), and counts control-socket round trips.
import Foundation
import VirtformDHCP
import VirtformLab
import VirtformModel

enum DHCPBenchmark {
    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

    static func timed<T>(_ body: () async throws -> T) async rethrows -> (T, Double) {
        let start = ContinuousClock.now
        let value = try await body()
        return (value, seconds(start.duration(to: .now)))
    }

    static func run(reservations count: Int, runs: Int) async throws {
        if let problem = DHCPLab.unmetRequirements(server: .kea) {
            print("dhcp-reservations: cannot run: \(problem)")
            exit(1)
        }
        guard count <= 250 * 250 else {
            print("dhcp-reservations: at most \(250 * 250) reservations")
            exit(2)
        }
        let subnet = IPv4Subnet(parsing: "10.76.0.0/16")!
        let desired = (0..<count).map { i in
            Reservation(
                subnet: subnet, mac: MACAddress(0x02_00_00_00_00_00 | UInt64(i + 1)),
                address: IPv4Address(parsing: "10.76.\(1 + i / 250).\(1 + i % 250)")!, hostname: "vm-\(i)",
                owner: OwnerMark(binding: "vm-\(i)-fe0", vm: VMID(project: "bench", name: "vm-\(i)"), interface: "fe0"))
        }
        print("dhcp-reservations: \(count) reservations into one Kea subnet (\(subnet)), \(runs) runs, each on a fresh kea-dhcp4 2.2")
        var applyTimes: [Double] = []
        for run in 1...runs {
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("vfbench-dhcp-\(getpid())-\(run)").path
            let lab = DHCPLab(configuration: DHCPLabConfiguration(
                root: root, namespace: "vfbench-dhcp-\(getpid())",
                subnets: [DHCPLabSubnet(name: "bench", network: "10.76.0.0", prefixLength: 16)]))
            do {
                try await lab.up()
                let server = DHCPServer(
                    meta: ObjectMeta(name: "bench"), driver: .kea,
                    endpoints: [.init(name: "kea-1", controlSocket: lab.configuration.controlSocket)],
                    provenance: Provenance(document: SourceLocation(file: "bench", line: 1, column: 1)))
                let driver = try DHCPDrivers.driver(for: server)
                let (seen, observeEmpty) = try await timed { try await driver.observe(subnets: [subnet]) }
                let (plan, compareTime) = await timed { seen.compare(desired: desired) }
                let (report, applyTime) = try await timed { try await driver.apply(plan.changes, basedOn: seen.token) }
                let (full, observeFull) = try await timed { try await driver.observe(subnets: [subnet]) }
                guard full.endpoints[0].reservations?.count == count else {
                    print("run \(run): Kea holds \(full.endpoints[0].reservations?.count ?? -1) reservations, expected \(count)")
                    exit(1)
                }
                // One binding changes on the full server: the cost of a small apply at this size.
                var moved = desired[0]
                moved.address = IPv4Address(parsing: "10.76.251.1")!
                let (small, smallTime) = try await timed {
                    try await driver.apply([.change(from: desired[0], to: moved)], basedOn: full.token)
                }
                let (noop, noopTime) = try await timed {
                    let again = try await driver.observe(subnets: [subnet])
                    return try await driver.apply(again.compare(desired: [moved] + desired.dropFirst()).changes, basedOn: again.token)
                }
                applyTimes.append(applyTime)
                func breakdown(_ r: DHCPApplyReport) -> String {
                    r.endpoints[0].steps.map { String(format: "%@ %.3f", $0.name, seconds($0.duration)) }.joined(separator: ", ")
                }
                print(String(
                    format: "run %d: apply of %d adds %.3f s in %d round trips | observe empty %.3f s, full %.3f s | compare %.3f s | change 1 of %d: %.3f s, %d round trips | converged re-plan+apply: %.3f s, %d round trip(s)",
                    run, plan.changes.count, applyTime, report.roundTrips, observeEmpty, observeFull, compareTime, count,
                    smallTime, small.roundTrips, noopTime, noop.roundTrips))
                print("  steps of the 5,000-add apply (s): \(breakdown(report))")
                print("  steps of the 1-change apply (s):  \(breakdown(small))")
            } catch {
                print("run \(run) failed: \(error)")
                try? await lab.down()
                try? FileManager.default.removeItem(atPath: root)
                exit(1)
            }
            try await lab.down()
            try? FileManager.default.removeItem(atPath: root)
        }
        print(String(format: "apply of %d reservations: median %.3f s, best %.3f s", count, median(applyTimes), applyTimes.min()!))
    }
}
