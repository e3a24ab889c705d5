import Foundation
import Libvirt
import Synchronization
import Testing
import VirtformLab
import VirtformModel
@testable import VirtformDHCP
import VirtformState
import VirtformSystem

/// The two state backends, for the command tests that run on both.
enum TeamBackend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case embedded, postgres
    var testDescription: String { rawValue }

    /// Runs `body` with a backend URL of this kind: a state directory inside `root`, or a
    /// throw-away PostgreSQL server on loopback (stopped by PID at the end). Nil when
    /// PostgreSQL cannot run here (the test says so and passes without it).
    func with(root: String, _ body: @Sendable (String) async throws -> Void) async throws {
        switch self {
        case .embedded: try await body("file:\(root)/.team-state")
        case .postgres:
            if let reason = PostgresLab.unavailableReason {
                print("skipped on PostgreSQL: \(reason)")
                return
            }
            try await PostgresLab.with { server in try await body(server.url()) }
        }
    }
}

/// Several operators and CI runners on one site: the lock names its holder, a killed apply frees
/// it, plans never take it, and the history says what each run did — on both backends, with the
/// whole-stack lab (libvirt test-driver hosts, btrfs + tgt, Kea).
/// (In the whole-stack suite: the stack's ports and namespace are one at a time.)
extension StackTests {
    @Test(arguments: TeamBackend.allCases)
    func aKilledApplyFreesTheLockAndTheNextOneRecordsItAbandoned(_ kind: TeamBackend) async throws {
        let program = try #require(virtformExecutable(), "the virtform executable is built next to the tests")
        try await StackSite.with { site in
            try await kind.with(root: site.root) { backend in
                try site.write(withWeb: true)
                // The apply kills itself (SIGKILL) before its third step, holding the lock.
                let killed = try await Command.run([program, "apply", "--auto-approve", site.directory],
                                                   environment: ProcessInfo.processInfo.environment.merging(
                                                       ["VIRTFORM_KILL_AT": "3", "VIRTFORM_BACKEND": backend]) { _, new in new },
                                                   timeout: .seconds(120))
                #expect(killed.status == 128 + SIGKILL, "the apply was killed: \(killed.standardOutput)\(killed.standardError)")

                var (output, code) = await runVirtform(["lock", "status", "--manifests", site.directory, "--backend", backend])
                #expect(code == 0 && output.contains("is free; its last holder ended without releasing it"), "\(output)")
                let user = Who.user(ProcessInfo.processInfo.environment)
                #expect(output.contains("by \(user)@\(Who.machine())") && output.contains("virtform apply"), "the holder's facts:\n\(output)")

                (output, code) = await runVirtform(["apply", "--auto-approve", "--backend", backend, site.directory])
                #expect(code == 0, "\(output)")
                #expect(output.contains("never finished") && output.contains("recorded as abandoned"), "\(output)")

                (output, code) = await runVirtform(["history", "--manifests", site.directory, "--backend", backend, "--format", "json"])
                #expect(code == 0, "\(output)")
                let runs = try JSONDecoder.iso.decode([RunRecord].self, from: Data(output.utf8))
                #expect(runs.map(\.outcome) == [.succeeded, .abandoned], "\(runs)")
                let applied = try #require(runs.first)
                #expect(applied.counts.changes > 0 && applied.counts.succeeded > 0 && applied.planDigest?.hasPrefix("plan-") == true)

                // Every action is in the history, and the run's id is in the mark of what it made.
                (output, code) = await runVirtform(["history", applied.id, "--manifests", site.directory, "--backend", backend])
                #expect(code == 0 && output.contains("Run \(applied.id): apply of site stack-a, succeeded"), "\(output)")
                #expect(output.contains("✓ create VirtualMachine/appl/web-1"), "\(output)")
                let connection = try await Connection.open(uri: site.hosts[0].testURI)
                let xml = try await connection.domain(named: "appl:web-1")?.xml() ?? ""
                await connection.close()
                #expect(xml.contains("run='\(applied.id)'") || xml.contains("run=\"\(applied.id)\""), "the domain's mark names the run:\n\(xml)")
                // So do the LUN's (its xattr) and the reservation's (Kea's user-context).
                typealias GetAttribute = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeMutableRawPointer?, Int) -> Int
                let get = unsafeBitCast(try #require(dlsym(UnsafeMutableRawPointer(bitPattern: 0), "lgetxattr")), to: GetAttribute.self)
                var buffer = [UInt8](repeating: 0, count: 1024)
                let length = get(site.mountPoint + "/appl/web-1.img", OwnershipMark.attributeName, &buffer, buffer.count)
                let lunMark = length > 0 ? String(decoding: buffer[..<length], as: UTF8.self) : ""
                #expect(lunMark.contains("run=\(applied.id)"), "the LUN's mark: \(lunMark)")
                let kea = KeaControlChannel(endpoint: "kea", path: site.dhcp.configuration.controlSocket, timeout: .seconds(10))
                let config = try await kea.send("config-get").arguments?.canonicalText ?? ""
                #expect(config.contains("\"run\":\"\(applied.id)\""), "the reservation's mark names the run")
            }
        }
    }

    @Test(arguments: TeamBackend.allCases)
    func twoAppliesInTwoProcessesExcludeEachOther(_ kind: TeamBackend) async throws {
        let program = try #require(virtformExecutable(), "the virtform executable is built next to the tests")
        try await StackSite.with { site in
            try await kind.with(root: site.root) { backend in
                let sweep = KillSweep(site: site, program: program)
                let directory = site.root + "/busy"
                try sweep.write(directory, vms: (1...12).map { KillSweep.VM(name: "web-\($0)", mac: String(format: "02:00:00:00:41:%02x", $0), address: "192.168.76.\(120 + $0)") })
                let environment = ProcessInfo.processInfo.environment.merging(
                    ["VIRTFORM_BACKEND": backend, "CI_JOB_URL": "https://gitlab.example/ops/site/-/jobs/77"]) { _, new in new }
                let second = SecondRun()
                let run = try await runVirtformChild(program, ["apply", "--auto-approve", "--parallelism", "1", directory], trigger: "  … ",
                                                     environment: environment) {
                    // The first apply is under way: a second process is refused at once, told who holds the lock.
                    second.run(program, ["apply", "--auto-approve", directory],
                               environment: ProcessInfo.processInfo.environment.merging(["VIRTFORM_BACKEND": backend]) { _, new in new })
                } cleanup: {}
                #expect(run.ended && run.status == 0, "the first apply:\n\(run.output)")
                let (status, said) = try #require(second.result)
                #expect(status == 1, "\(said)")
                #expect(said.contains("another apply is running for site stack-a"), "\(said)")
                #expect(said.contains("CI job https://gitlab.example/ops/site/-/jobs/77") && said.contains("last heartbeat"), "the holder's facts:\n\(said)")
                let (output, code) = await runVirtform(["lock", "status", "--manifests", directory, "--backend", backend])
                #expect(code == 0 && output.contains("is free."), "released at the end:\n\(output)")
            }
        }
    }

    @Test(arguments: TeamBackend.allCases)
    func forceReleaseEndsALiveApplyWhichStartsNothingNew(_ kind: TeamBackend) async throws {
        let program = try #require(virtformExecutable(), "the virtform executable is built next to the tests")
        try await StackSite.with { site in
            try await kind.with(root: site.root) { backend in
                let sweep = KillSweep(site: site, program: program)
                let directory = site.root + "/busy"
                try sweep.write(directory, vms: (1...60).map { KillSweep.VM(name: "web-\($0)", mac: String(format: "02:00:00:00:42:%02x", $0), address: "192.168.76.\(130 + $0)") })
                let environment = ProcessInfo.processInfo.environment.merging(["VIRTFORM_BACKEND": backend]) { _, new in new }
                let released = Mutex<(String, Int32)?>(nil)
                // The target server freezes mid-apply, so the apply is still running when it is ended.
                let tgtd = try #require(Int32((try String(contentsOfFile: site.root + "/storage/tgtd.pid", encoding: .utf8))
                    .trimmingCharacters(in: .whitespacesAndNewlines)))
                let run = try await runVirtformChild(program, ["apply", "--auto-approve", "--parallelism", "1", "--operation-timeout", "30", directory],
                                                     trigger: "✓ create VirtualMachine/appl/web-2", within: .seconds(120), environment: environment) {
                    kill(tgtd, SIGSTOP)
                    defer { kill(tgtd, SIGCONT) }
                    // Another operator ends the holder: it is named by its run, read from `lock status`.
                    let said = SecondRun()
                    said.run(program, ["lock", "status", "--json", "--manifests", directory], environment: environment)
                    struct Status: Decodable { var holder: LockHolder? }
                    guard let text = said.result?.1, let holder = (try? JSONDecoder.iso.decode(Status.self, from: Data(text.utf8)))?.holder else {
                        released.withLock { $0 = ("no holder in: \(said.result?.1 ?? "")", -1) }
                        return
                    }
                    let release = SecondRun()
                    release.run(program, ["lock", "release", holder.run, "--force", "--manifests", directory], environment: environment)
                    released.withLock { $0 = (release.result?.1 ?? "", release.result?.0 ?? -1) }
                } cleanup: { kill(tgtd, SIGCONT) }
                let (said, code) = try #require(released.withLock { $0 })
                #expect(code == 0 && said.hasPrefix("Ended"), "\(said)")
                #expect(run.ended, "the apply ended: \(run.output)")
                switch kind {
                case .embedded:
                    #expect(run.status == 128 + SIGTERM, "its process was ended:\n\(run.output)")
                case .postgres:
                    #expect(run.status == 1 && run.output.contains("the apply lock was lost"), "it noticed and stopped:\n\(run.output)")
                    #expect(run.output.contains("Apply: stopped, the apply lock was lost"), "\(run.output)")
                }
                #expect(!run.output.contains("✓ create VirtualMachine/appl/web-60"), "it did not run to its end")
                let (output, status) = await runVirtform(["lock", "status", "--manifests", directory, "--backend", backend])
                #expect(status == 0 && output.contains("is free."), "\(output)")
            }
        }
    }

    @Test(arguments: TeamBackend.allCases)
    func twentyConcurrentPlansNeverTakeTheLock(_ kind: TeamBackend) async throws {
        try await StackSite.with { site in
            try await kind.with(root: site.root) { backend in
                try site.write(withWeb: true)
                // Someone holds the lock: every plan still runs, and says so.
                let location = try BackendLocation(parsing: backend)
                let state = try await StateBackends.open(location, site: "stack-a")
                let lease = try await state.acquire(LockHolder.current(run: "held-by-test", command: "virtform apply"), timeout: .zero) { _ in }
                let results = await withTaskGroup(of: (String, Int32).self) { group in
                    for _ in 0..<20 { group.addTask { await runVirtform(["plan", "--backend", backend, site.directory]) } }
                    return await group.reduce(into: []) { $0.append($1) }
                }
                #expect(results.count == 20)
                for (output, code) in results {
                    #expect(code == 0 && output.contains("an apply of this site is running (run held-by-test"), "\(output)")
                }
                await lease.release()
                // And while twenty plans run, an apply takes the lock.
                let (applied, plans) = await withTaskGroup(of: (String, (String, Int32)).self) { group in
                    for _ in 0..<20 { group.addTask { ("plan", await runVirtform(["plan", "--backend", backend, site.directory])) } }
                    group.addTask { ("apply", await runVirtform(["apply", "--auto-approve", "--backend", backend, site.directory])) }
                    var applied: (String, Int32) = ("", -1)
                    var plans: [(String, Int32)] = []
                    for await (what, result) in group { if what == "apply" { applied = result } else { plans.append(result) } }
                    return (applied, plans)
                }
                #expect(applied.1 == 0, "\(applied.0)")
                #expect(plans.allSatisfy { $0.1 == 0 }, "\(plans.filter { $0.1 != 0 }.map(\.0))")
                await state.close()
            }
        }
    }

    @Test(arguments: TeamBackend.allCases)
    func driftChecksAreRecordedAndHistoryTellsWhenDriftAppearedAndWent(_ kind: TeamBackend) async throws {
        try await StackSite.with { site in
            try await kind.with(root: site.root) { backend in
                try site.write(withWeb: true)
                var (output, code) = await runVirtform(["apply", "--auto-approve", "--backend", backend, site.directory])
                try #require(code == 0, "\(output)")
                (output, code) = await runVirtform(["drift", "--backend", backend, site.directory])
                #expect(code == 0, "\(output)")
                let connection = try await Connection.open(uri: site.hosts[0].testURI)
                try await connection.domain(named: "appl:web-1")?.destroy()
                await connection.close()
                (output, code) = await runVirtform(["drift", "--backend", backend, site.directory])
                #expect(code == 2, "\(output)")
                (output, code) = await runVirtform(["apply", "--auto-approve", "--backend", backend, site.directory])
                #expect(code == 0, "\(output)")
                (output, code) = await runVirtform(["drift", "--backend", backend, site.directory])
                #expect(code == 0, "\(output)")

                (output, code) = await runVirtform(["history", "--drift", "--manifests", site.directory, "--backend", backend])
                #expect(code == 0, "\(output)")
                let lines = output.split(separator: "\n").map(String.init)
                let appeared = lines.firstIndex { $0.contains("VirtualMachine/appl/web-1 (outside): appeared") }
                let went = lines.firstIndex { $0.contains("VirtualMachine/appl/web-1: went") }
                #expect(appeared != nil && went != nil && appeared! < went!, "drift appeared, then went:\n\(output)")
                #expect(lines.filter { $0.contains(" drifted") }.count == 1 && lines.filter { $0.contains(" clean") }.count == 2, "\(output)")
                (output, code) = await runVirtform(["history", "--manifests", site.directory, "--backend", backend])
                #expect(code == 0 && output.split(separator: "\n").count == 6, "a header and five runs, newest first:\n\(output)")
            }
        }
    }
}

extension JSONDecoder {
    static let iso: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()
}

/// A second `virtform` run from a progress trigger (a plain thread): run to its end there.
final class SecondRun: Sendable {
    private let state = Mutex<(Int32, String)?>(nil)

    func run(_ program: String, _ arguments: [String], environment: [String: String]) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        guard (try? process.run()) != nil else { return }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        state.withLock { $0 = (process.terminationStatus, String(decoding: data, as: UTF8.self)) }
    }

    var result: (Int32, String)? { state.withLock { $0 } }
}

/// `virtform import`: what runs without virtform's marks — a domain, its LUN and target, its
/// Kea reservation — becomes manifests that plan clean, and an apply marks it as the site's.
extension StackTests {
    @Test func importWritesManifestsThatPlanCleanAndApplyMarksWhatRuns() async throws {
        try await StackSite.with { site in
            try site.write(withWeb: true)
            var (output, code) = await site.run(["apply", "--auto-approve"])
            try #require(code == 0, "\(output)")
            // Made by hand, as far as anybody can tell: every mark taken off.
            let connection = try await Connection.open(uri: site.hosts[0].testURI)
            let domain = try #require(try await connection.domain(named: "appl:web-1"))
            var xml = try await domain.xml(flags: [.inactive])
            let marked = try #require(xml.range(of: "<metadata>"), "the domain has a mark")
            xml.removeSubrange(marked.lowerBound..<xml.range(of: "</metadata>")!.upperBound)
            _ = try await connection.define(xml: xml)
            let lun = site.mountPoint + "/appl/web-1.img"
            // glibc's removexattr (sys/xattr.h is not in Swift's Glibc module).
            typealias RemoveAttribute = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>) -> Int32
            let remove = unsafeBitCast(try #require(dlsym(UnsafeMutableRawPointer(bitPattern: 0), "removexattr")), to: RemoveAttribute.self)
            #expect(remove(lun, OwnershipMark.attributeName) == 0, "the LUN had a mark")
            let kea = KeaControlChannel(endpoint: "kea", path: site.dhcp.configuration.controlSocket, timeout: .seconds(10))
            let config = try #require(try await kea.send("config-get").arguments)
            _ = try await kea.send("config-set", arguments: Self.strippingUserContext(config))
            try site.write(withWeb: false)

            // Without the master the LUN came from, import cannot say what the disk is.
            let out = site.directory + "/imported"
            (output, code) = await runVirtform(["import", "--host", "stack-h1", "--out", out, "--manifests", site.directory])
            #expect(code == 1 && output.contains("appl:web-1: it has a disk: name the master"), "\(output)")
            #expect(!FileManager.default.fileExists(atPath: out))

            // A guest ballooned below its memory does not plan clean: nothing is written.
            var ballooned = xml
            if let current = ballooned.range(of: #"<currentMemory unit='KiB'>\d+</currentMemory>"#, options: .regularExpression) {
                ballooned.replaceSubrange(current, with: "<currentMemory unit='KiB'>32768</currentMemory>")
            }
            _ = try await connection.define(xml: ballooned)
            (output, code) = await runVirtform(["import", "--host", "stack-h1", "--out", out, "--disk-from", "masters/base@v1", "--manifests", site.directory])
            #expect(code == 1 && output.contains("do not plan clean") && output.contains("VirtualMachine/appl/web-1"), "\(output)")
            #expect(!FileManager.default.fileExists(atPath: out), "nothing written")
            _ = try await connection.define(xml: xml)

            (output, code) = await runVirtform(["import", "--host", "stack-h1", "--out", out, "--disk-from", "masters/base@v1", "--manifests", site.directory])
            #expect(code == 0 && output.contains("wrote \(out)/appl-web-1.yaml: VirtualMachine/appl/web-1, NetworkBinding/appl-web-1-public"), "\(output)")
            let written = (try? String(contentsOfFile: out + "/appl-web-1.yaml", encoding: .utf8)) ?? ""
            #expect(written.contains("virtform.io/imported-from: stack-h1") && written.contains("mac: \"\(StackSite.webMAC)\"")
                && written.contains("address: 192.168.76.71"), "\(written)")

            // The plan only marks; the apply marks; then nothing is left to do.
            (output, code) = await runVirtform(["plan", "--detailed-exitcode", site.directory])
            #expect(code == 2, "\(output)")
            #expect(output.contains("import: the domain is marked") && output.contains("import: the LUN is marked")
                && output.contains("import: the reservation is marked"), "\(output)")
            #expect(output.contains("Plan: 0 to create,") && output.contains(" 0 to delete,"), "only marks to write:\n\(output)")
            (output, code) = await site.run(["apply", "--auto-approve"])
            #expect(code == 0, "\(output)")
            (output, code) = await runVirtform(["plan", "--detailed-exitcode", site.directory])
            #expect(code == 0, "clean after the apply:\n\(output)")
            let now = try await connection.domain(named: "appl:web-1")?.xml() ?? ""
            #expect(now.contains("site='stack-a'") || now.contains("site=\"stack-a\""), "the domain carries the site's mark:\n\(now)")
            await connection.close()
        }
    }

    /// Kea's configuration with every reservation's `user-context` (virtform's mark) removed.
    static func strippingUserContext(_ value: JSONValue) -> JSONValue {
        switch value {
        case .object(var members):
            members["user-context"] = nil
            for (key, member) in members { members[key] = strippingUserContext(member) }
            return .object(members)
        case .array(let items): return .array(items.map(strippingUserContext))
        default: return value
        }
    }
}
