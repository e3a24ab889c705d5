import Foundation
import Libvirt
import VirtformHypervisor
import VirtformLab
import VirtformManifests
import VirtformModel
import VirtformPlanning

#if canImport(Glibc)
    import Glibc
#endif

/// `plan-apply`: a temporary lab of `--hosts` libvirt daemons serving the test driver, a site of
/// `--vms-per-host` guests per host, then
/// 1. `virtform apply` from scratch one action at a time, and again (after wiping) with the
///    default parallelism;
/// 2. a no-change plan (observe every host + diff) in this process, against a raw loop that
///    only lists every domain and fetches its XML with the same parallelism;
/// 3. `virtform plan` as a process: wall time and peak resident memory.
/// Needs root (the lab's daemons run under their own users) and both products built in release.
func planApplyBenchmark() async throws {
    let hostCount = option("hosts", default: 10)
    let perHost = option("vms-per-host", default: 1000)
    let runs = option("runs", default: 3)
    let parallelism = option("parallelism", default: 16)
    let perHostLimit = option("per-host", default: 4)
    let vms = hostCount * perHost
    // As the virtform executable does: no libvirt event loop (see Virtform.prepareProcess).
    LibvirtRuntime.setEventLoopEnabled(false)
    if let problem = HypervisorLab.unmetRequirements() { throw BenchmarkError(problem) }
    let virtform = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("virtform").path
    guard FileManager.default.isExecutableFile(atPath: virtform) else {
        throw BenchmarkError("build the virtform executable first: swift build -c release --product virtform")
    }

    try await withTestDriverLab(hosts: hostCount) { lab, hosts, keepers in
        let root = lab.configuration.root
        let directory = root + "/manifests"
        try FileManager.default.createDirectory(atPath: root + "/pool", withIntermediateDirectories: true)
        _ = try SiteGenerator(vms: vms, hosts: hostCount, hostsPerCluster: hostCount,
                              lab: (hosts.map(\.testURI), root + "/pool"))
            .write(to: URL(fileURLWithPath: directory))
        print("site: \(vms) VMs on \(hostCount) lab hosts (libvirt \(hosts.count) session daemons, test driver)")

        func count() async throws -> Int {
            var total = 0
            for keeper in keepers { total += try await keeper.listAllDomains().count }
            return total
        }

        // 1. Apply from scratch: serial, then parallel.
        let serial = try Measured.run([virtform, "apply", "--auto-approve", "--parallelism", "1", "--per-host", "1", directory])
        guard serial.status == 0, try await count() == vms else { throw BenchmarkError("serial apply failed (exit \(serial.status))") }
        try await wipe(keepers)
        // VIRTFORM_BENCH_PERF=FILE records the parallel apply with `perf record -g` into FILE (its
        // time is then not comparable).
        let profile = ProcessInfo.processInfo.environment["VIRTFORM_BENCH_PERF"].map { ["/usr/bin/perf", "record", "-F", "499", "-g", "-o", $0, "--"] } ?? []
        let parallel = try Measured.run(profile + [virtform, "apply", "--auto-approve", "--parallelism", "\(parallelism)",
                                                   "--per-host", "\(perHostLimit)", directory])
        guard parallel.status == 0, try await count() == vms else { throw BenchmarkError("parallel apply failed (exit \(parallel.status))") }
        print(String(format: "apply from scratch (define + start %d domains): one at a time %.2f s (virtform's own CPU %.2f s), parallel (%d in flight, %d per host) %.2f s (CPU %.2f s): %.1fx",
                     vms, serial.seconds, serial.cpuSeconds, parallelism, perHostLimit, parallel.seconds, parallel.cpuSeconds,
                     serial.seconds / parallel.seconds))

        // 1b. Parallel apply against the raw ceiling (define + start straight through the wrapper,
        // the same calls in flight per host), side by side in this lab: pairs, alternating.
        let pairs = option("apply-pairs", default: 3)
        if pairs > 0 {
            let (xmls, uris) = try renderedDomains(directory)
            var ratios: [Double] = []
            var raws: [Double] = []
            var applies: [Double] = [parallel.seconds]
            for pair in 0..<pairs {
                try await wipe(keepers)
                let rawStart = ContinuousClock.now
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (host, list) in xmls {
                        let uri = uris[host]!
                        group.addTask { try await defineAndStartShared(list, uri: uri, slots: perHostLimit) }
                    }
                    try await group.waitForAll()
                }
                let raw = inSeconds(rawStart.duration(to: .now))
                guard try await count() == vms else { throw BenchmarkError("the raw ceiling made the wrong number of domains") }
                raws.append(raw)
                if pair > 0 {
                    try await wipe(keepers)
                    let again = try Measured.run([virtform, "apply", "--auto-approve", "--parallelism", "\(parallelism)",
                                                  "--per-host", "\(perHostLimit)", directory])
                    guard again.status == 0, try await count() == vms else { throw BenchmarkError("parallel apply failed (exit \(again.status))") }
                    applies.append(again.seconds)
                }
                ratios.append(applies[pair] / raw)
            }
            print(String(format: "parallel apply against the raw ceiling (define + start, %d per host, one connection per host), %d pairs: apply %@ s, raw %@ s, ratios %@; median %.2f (target <= 1.15)",
                         perHostLimit, pairs, applies.map { String(format: "%.2f", $0) }.joined(separator: " "),
                         raws.map { String(format: "%.2f", $0) }.joined(separator: " "),
                         ratios.map { String(format: "%.2f", $0) }.joined(separator: " "), median(ratios)))
        }

        // 2. No-change plan against the raw loop, in this process.
        let loaded = ManifestLoader.load(paths: [directory])
        guard loaded.isValid else { throw BenchmarkError("the generated site is not valid: \(loaded.diagnostics.prefix(3))") }
        let site = loaded.site
        let endpoints = site.hosts.map { ($0.name, $0.uri) }
        var planTimes: [Double] = []
        var diffTimes: [Double] = []
        var rawTimes: [Double] = []
        for _ in 0..<runs {
            let rawStart = ContinuousClock.now
            let fetched = try await rawLoop(uris: site.hosts.map(\.uri), parallelism: 8)
            rawTimes.append(inSeconds(rawStart.duration(to: .now)))
            guard fetched == vms else { throw BenchmarkError("the raw loop fetched \(fetched) definitions, not \(vms)") }

            let planStart = ContinuousClock.now
            let observation = await SiteObserver.observe(endpoints)
            let diffStart = ContinuousClock.now
            let plan = Planner(site: site, observed: observation.observed).plan()
            diffTimes.append(inSeconds(diffStart.duration(to: .now)))
            planTimes.append(inSeconds(planStart.duration(to: .now)))
            guard plan.isEmpty, plan.unreachable.isEmpty else {
                throw BenchmarkError("expected no changes, got \(plan.changes.count) (unreachable: \(plan.unreachable.count))")
            }
        }
        let planMedian = median(planTimes)
        let rawMedian = median(rawTimes)
        print(String(format: "no-change plan (observe + diff, manifests loaded): median %.3f s (of which diff %.3f s); raw list + XML loop: median %.3f s; ratio %.2f (target <= 1.2, plan < 2 s) over %d runs",
                     planMedian, median(diffTimes), rawMedian, planMedian / rawMedian, runs))

        // 3. The whole command, as an operator runs it.
        let command = try Measured.run([virtform, "plan", "--detailed-exitcode", directory])
        guard command.status == 0 else { throw BenchmarkError("`virtform plan` exited \(command.status), expected 0 (no changes)") }
        print(String(format: "`virtform plan` process (load + validate + observe + diff + render): %.3f s, peak resident %.0f MB (target < 300 MB)",
                     command.seconds, Double(command.maxResidentKiB) / 1024))

        try await wipe(keepers)
    }
}

/// A temporary lab of `hosts` daemons for the test driver, with one connection held per host
/// (the test driver forgets everything when its last connection closes) and its built-in
/// `test` domain removed; the connections are closed afterwards.
func withTestDriverLab(hosts count: Int, _ body: @Sendable (HypervisorLab, [LabHost], [Connection]) async throws -> Void) async throws {
    try await HypervisorLab.withTemporaryLab(hosts: count, userPrefix: "vfbench") { lab, hosts in
        var keepers: [Connection] = []
        for host in hosts {
            let keeper = try await Connection.open(uri: host.testURI)
            if let builtIn = try await keeper.domain(named: "test") {
                try await builtIn.destroy()
                try await builtIn.undefine()
            }
            keepers.append(keeper)
        }
        do {
            try await body(lab, hosts, keepers)
        } catch {
            for keeper in keepers { await keeper.close() }
            throw error
        }
        for keeper in keepers { await keeper.close() }
    }
}

/// Destroys and undefines every domain the lab's hosts hold.
func wipe(_ keepers: [Connection]) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        for keeper in keepers {
            group.addTask {
                for summary in try await keeper.listAllDomains() {
                    if summary.state == .running { try await summary.domain.destroy() }
                    try await summary.domain.undefine()
                }
            }
        }
        try await group.waitForAll()
    }
}

/// Lists every domain of every host and fetches what a plan reads of each — its persistent
/// definition, and for a running persistent domain its live one too — `parallelism` domains at
/// a time per host, all hosts at once; nothing is parsed. Returns how many were fetched.
func rawLoop(uris: [String], parallelism: Int) async throws -> Int {
    try await withThrowingTaskGroup(of: Int.self) { hosts in
        for uri in uris {
            hosts.addTask {
                let connection = try await Connection.open(uri: uri)
                let summaries = try await connection.listAllDomains()
                let fetched = try await withThrowingTaskGroup(of: Int.self) { group in
                    var next = summaries.makeIterator()
                    var done = 0
                    func schedule() {
                        guard let summary = next.next() else { return }
                        group.addTask {
                            let persistent = try await summary.domain.xml(flags: summary.isPersistent ? [.inactive] : [])
                            if summary.isPersistent, summary.state == .running { _ = try await summary.domain.xml() }
                            return persistent.isEmpty ? 0 : 1
                        }
                    }
                    for _ in 0..<parallelism { schedule() }
                    while let one = try await group.next() {
                        done += one
                        schedule()
                    }
                    return done
                }
                await connection.close()
                return fetched
            }
        }
        return try await hosts.reduce(0, +)
    }
}

struct BenchmarkError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func inSeconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

/// A program run to its end with its wall time and peak resident memory (wait4's rusage).
struct Measured {
    var status: Int32
    var seconds: Double
    var maxResidentKiB: Int
    /// CPU time of the program itself (user + system), not of the daemons it talked to.
    var cpuSeconds: Double

    static func run(_ arguments: [String]) throws -> Measured {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))

        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let start = ContinuousClock.now
        let spawned = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, environ)
        guard spawned == 0 else { throw BenchmarkError("failed to run \(arguments[0]): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 {
            guard errno == EINTR else { throw BenchmarkError("wait4 failed: \(String(cString: strerror(errno)))") }
        }
        let elapsed = inSeconds(start.duration(to: .now))
        let exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let cpu = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        return Measured(status: exitStatus, seconds: elapsed, maxResidentKiB: usage.ru_maxrss, cpuSeconds: cpu)
    }
}

/// `xml-parse FILE`: how long reading one domain definition back into a `DomainSpec` takes.
func xmlParseBenchmark() throws {
    guard arguments.count > 1, let xml = try? String(contentsOfFile: arguments[1], encoding: .utf8) else {
        throw BenchmarkError("usage: virtform-bench xml-parse FILE (a domain's XML, e.g. from virsh dumpxml --inactive)")
    }
    let count = option("count", default: 10_000)
    let start = ContinuousClock.now
    for _ in 0..<count { _ = try DomainXML.parse(xml) }
    let elapsed = inSeconds(start.duration(to: .now))
    print(String(format: "parsed %d domain definitions (%d bytes each) in %.3f s: %.1f µs each", count, xml.utf8.count, elapsed,
                 elapsed / Double(count) * 1e6))
}

/// `planner`: the diff alone, for a generated lab site of `--hosts` × `--vms-per-host` whose
/// every VM is observed exactly as desired (a no-change plan), `--runs` times.
func plannerBenchmark() throws {
    let hostCount = option("hosts", default: 10)
    let perHost = option("vms-per-host", default: 1000)
    let runs = option("runs", default: 9)
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("virtform-bench-planner-\(getpid())")
    defer { try? FileManager.default.removeItem(at: directory) }
    _ = try SiteGenerator(vms: hostCount * perHost, hosts: hostCount, hostsPerCluster: hostCount,
                          lab: ((0..<hostCount).map { "test:///host-\($0)" }, directory.path + "/pool"))
        .write(to: directory)
    let loaded = ManifestLoader.load(paths: [directory.path])
    guard loaded.isValid else { throw BenchmarkError("the generated site is not valid: \(loaded.diagnostics.prefix(3))") }
    // Observed = what a first plan would create, as if applied, read back from its XML as
    // observation reads it (so that no string is shared with the desired side).
    let first = Planner(site: loaded.site, observed: ObservedSite(hosts: Dictionary(uniqueKeysWithValues:
        loaded.site.hosts.map { ($0.name, HostObservation.reachable([])) }))).plan()
    var domains: [String: [ObservedDomain]] = [:]
    for change in first.changes where change.action == .create {
        guard let (spec, ownership) = change.definition else { continue }
        let read = try DomainXML.parse(DomainXML.render(spec, ownership: ownership))
        domains[change.host, default: []].append(ObservedDomain(
            host: change.host, name: read.spec.name, uuid: UUID().uuidString.lowercased(), state: .running, persistent: true,
            spec: read.spec, ownership: read.ownership))
    }
    let observed = ObservedSite(hosts: Dictionary(uniqueKeysWithValues: loaded.site.hosts.map {
        ($0.name, HostObservation.reachable(domains[$0.name] ?? []))
    }))
    var times: [Double] = []
    for _ in 0..<runs {
        let start = ContinuousClock.now
        let plan = Planner(site: loaded.site, observed: observed).plan()
        times.append(inSeconds(start.duration(to: .now)))
        guard plan.isEmpty else { throw BenchmarkError("expected no changes, got \(plan.changes.count)") }
    }
    print(String(format: "no-change diff of %d VMs on %d hosts: median %.3f s, best %.3f s over %d runs",
                 hostCount * perHost, hostCount, median(times), times.min() ?? 0, runs))

    // What apply does before its first action on an empty site: plan every system from
    // scratch (its pool and DHCP servers read as empty), then render the plan as text.
    let empty = SiteObservation(
        hosts: ObservedSite(hosts: Dictionary(uniqueKeysWithValues: loaded.site.hosts.map { ($0.name, HostObservation.reachable([])) })),
        pools: Dictionary(uniqueKeysWithValues: loaded.site.pools.map {
            ($0.name, PoolReading.read(PoolContents(observation: PoolObservation(pool: $0.name, projects: [], cloneMethod: .reflink), targets: [])))
        }),
        dhcpServers: Dictionary(uniqueKeysWithValues: loaded.site.dhcpServers.map {
            ($0.meta.name, DHCPReading.read(DHCPObservation(server: $0.meta.name, subnets: [], endpoints: [], token: DHCPVersionToken(endpoints: [:]))))
        }))
    var planTimes: [Double] = []
    var renderTimes: [Double] = []
    var changes = 0
    let scratchRuns = option("scratch-runs", default: runs)
    guard scratchRuns > 0 else { return }
    for _ in 0..<scratchRuns {
        let start = ContinuousClock.now
        let plan = Planner(site: loaded.site, observation: empty).plan()
        let rendered = ContinuousClock.now
        let text = PlanRenderer.text(plan)
        planTimes.append(inSeconds(start.duration(to: rendered)))
        renderTimes.append(inSeconds(rendered.duration(to: .now)))
        changes = plan.changes.count
        guard !text.isEmpty, plan.errors.isEmpty else { throw BenchmarkError("the from-scratch plan has errors: \(plan.errors.prefix(3))") }
    }
    print(String(format: "from-scratch plan of every system (%d changes): median %.3f s, rendering it as text %.3f s, over %d runs",
                 changes, median(planTimes), median(renderTimes), runs))
}
