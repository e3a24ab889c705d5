import Foundation
import Synchronization
import Testing
import VirtformLab
import VirtformState
import VirtformSystem

/// The two backends, for tests that run the same on both.
enum BackendKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case embedded, postgres
    var testDescription: String { rawValue }
}

/// A fresh place for a site's state: a directory under /tmp, or a throw-away PostgreSQL
/// server; removed (the server stopped by PID) when `body` ends.
func withLocation<T: Sendable>(_ kind: BackendKind, _ body: @Sendable (BackendLocation) async throws -> T) async throws -> T {
    switch kind {
    case .embedded:
        let directory = NSTemporaryDirectory() + "vftest-state-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        return try await body(.embedded(directory: directory + "/state"))
    case .postgres:
        return try await PostgresLab.with { server in try await body(try BackendLocation(parsing: server.url())) }
    }
}

func holder(_ run: String, ci: [String: String] = [:]) -> LockHolder {
    LockHolder.current(run: run, command: "virtform apply", planDigest: "plan-1234", environment: ci)
}

@Suite("State backends: lock and journal, the same on both", .serialized)
struct StateBackendTests {
    static let postgresMissing = PostgresLab.unavailableReason

    static func skip(_ kind: BackendKind) -> Bool {
        if kind == .postgres, let reason = postgresMissing {
            print("skipped on PostgreSQL: \(reason)")
            return true
        }
        return false
    }

    @Test(arguments: BackendKind.allCases)
    func aSecondHolderIsRefusedAtOnceWithTheFirstOnesFacts(_ kind: BackendKind) async throws {
        guard !Self.skip(kind) else { return }
        try await withLocation(kind) { location in
            let first = try await StateBackends.open(location, site: "lab")
            let second = try await StateBackends.open(location, site: "lab")
            let ci = ["GITHUB_SERVER_URL": "https://github.example", "GITHUB_REPOSITORY": "ops/site", "GITHUB_RUN_ID": "42"]
            let lease = try await first.acquire(holder("run-a", ci: ci), timeout: .zero) { _ in }
            let start = ContinuousClock.now
            let refusal = await #expect(throws: StateError.self) {
                _ = try await second.acquire(holder("run-b"), timeout: .zero) { _ in }
            }
            // Generous for a loaded machine: the point is that a zero timeout does not wait.
            #expect(ContinuousClock.now - start < .seconds(10), "refused at once, not after a wait")
            #expect(refusal?.code == .locked)
            #expect(refusal?.holder?.run == "run-a")
            #expect(refusal?.holder?.ciJobURL == "https://github.example/ops/site/actions/runs/42")
            #expect(refusal?.holder?.planDigest == "plan-1234")
            #expect(refusal?.holder?.pid == getpid())
            guard case .held(let seen) = try await second.status() else { Issue.record("the lock reads as free while held"); return }
            #expect(seen?.run == "run-a")

            // Another site is not locked by it.
            let other = try await StateBackends.open(location, site: "other-site")
            let otherLease = try await other.acquire(holder("run-c"), timeout: .zero) { _ in }
            await otherLease.release()
            await other.close()

            await lease.update(planDigest: "plan-5678")
            guard case .held(let updated) = try await second.status() else { Issue.record("free after an update"); return }
            #expect(updated?.planDigest == "plan-5678")

            await lease.release()
            #expect(try await second.status() == .free(stale: nil))
            let next = try await second.acquire(holder("run-b"), timeout: .zero) { _ in }
            await next.release()
            await first.close()
            await second.close()
        }
    }

    @Test(arguments: BackendKind.allCases)
    func lockTimeoutWaitsForTheHolderAndGivesUpWhenItStays(_ kind: BackendKind) async throws {
        guard !Self.skip(kind) else { return }
        try await withLocation(kind) { location in
            let first = try await StateBackends.open(location, site: "lab")
            let second = try await StateBackends.open(location, site: "lab")
            let lease = try await first.acquire(holder("run-a"), timeout: .zero) { _ in }
            let start = ContinuousClock.now
            await #expect(throws: StateError.self) { _ = try await second.acquire(holder("run-b"), timeout: .milliseconds(600)) { _ in } }
            #expect(ContinuousClock.now - start >= .milliseconds(550), "waited out its timeout")
            let releaser = Task {
                try await Task.sleep(for: .milliseconds(300))
                await lease.release()
            }
            let waited = ContinuousClock.now
            let next = try await second.acquire(holder("run-b"), timeout: .seconds(20)) { _ in }
            #expect(ContinuousClock.now - waited < .seconds(10), "taken soon after the release")
            try await releaser.value
            await next.release()
            await first.close()
            await second.close()
        }
    }

    @Test(arguments: BackendKind.allCases)
    func aHolderThatDiedLeavesAFreeLockAndAStaleRecordThatReleaseClears(_ kind: BackendKind) async throws {
        guard !Self.skip(kind) else { return }
        try await withLocation(kind) { location in
            // The holder's session (or process's file lock) ends without a release: closing the
            // backend's connection is what a killed process's session does on the server.
            let dying = try await StateBackends.open(location, site: "lab")
            // The lease is dropped unreleased: its file lock goes with it, as with a process's death.
            _ = try await dying.acquire(holder("run-dead"), timeout: .zero) { _ in }
            await dying.close()
            let backend = try await StateBackends.open(location, site: "lab")
            #expect(await poll(within: .seconds(10)) {
                if case .free(let stale) = (try? await backend.status()) ?? .held(nil) { return stale?.run == "run-dead" }
                return false
            }, "the lock is free, and the dead holder's record says who it was")
            await #expect(throws: StateError.self) { _ = try await backend.release(run: "run-other", force: false) }
            let said = try await backend.release(run: "run-dead", force: false)
            #expect(said.contains("died"), "\(said)")
            #expect(try await backend.status() == .free(stale: nil))
            let lease = try await backend.acquire(holder("run-next"), timeout: .zero) { _ in }
            await lease.release()
            await backend.close()
        }
    }

    @Test(arguments: BackendKind.allCases)
    func forceReleaseOfALiveHolderEndsItsSessionAndTellsIt(_ kind: BackendKind) async throws {
        guard !Self.skip(kind), kind == .postgres else { return }  // On the embedded backend it ends a process: the command tests do that.
        try await withLocation(kind) { location in
            let holding = try await StateBackends.open(location, site: "lab")
            let lost = LostSignal()
            let lease = try await holding.acquire(holder("run-live"), timeout: .zero) { reason in lost.fire(reason) }
            let operator_ = try await StateBackends.open(location, site: "lab")
            let refusal = await #expect(throws: StateError.self) { _ = try await operator_.release(run: "run-live", force: false) }
            #expect(refusal?.message.contains("--force") == true, "\(String(describing: refusal))")
            let said = try await operator_.release(run: "run-live", force: true)
            #expect(said.contains("ended the session"), "\(said)")
            #expect(try await operator_.status() == .free(stale: nil))
            #expect(await poll(within: .seconds(40)) { lost.reason != nil }, "the holder noticed within a heartbeat and a statement's deadline")
            #expect(lost.reason?.contains("ended") == true, "\(lost.reason ?? "")")
            await lease.release()
            await holding.close()
            await operator_.close()
        }
    }

    @Test(arguments: BackendKind.allCases)
    func theJournalKeepsRunsAndActionsNewestFirst(_ kind: BackendKind) async throws {
        guard !Self.skip(kind) else { return }
        try await withLocation(kind) { location in
            let journal = try await StateBackends.open(location, site: "lab")
            let base = Date(timeIntervalSince1970: 1_800_000_000)
            for i in 0..<30 {
                var run = RunRecord(id: "run-\(100 + i)", site: i % 3 == 0 ? "other" : "lab", kind: i % 5 == 0 ? .drift : .apply,
                                    user: "ops", machine: "ci-1", ciJobURL: i == 7 ? "https://ci/7" : nil, planDigest: "plan-\(i)",
                                    startedAt: base + Double(i) * 60)
                try await journal.begin(run)
                try await journal.record((1...3).map { ActionRecord(run: run.id, sequence: $0, action: "create VirtualMachine/appl/vm-\($0)",
                                                                      outcome: $0 == 3 ? .failed : .succeeded, startedAt: base, finishedAt: base + 1,
                                                                      message: $0 == 3 ? "boom" : nil) })
                if i != 29 {
                    run.finishedAt = run.startedAt + 12.5
                    run.outcome = i % 4 == 0 ? .failed : .succeeded
                    run.counts = RunCounts(changes: 3, succeeded: 2, failed: 1)
                    try await journal.finish(run)
                }
            }
            let latest = try await journal.runs(RunQuery(site: "lab", limit: 5))
            #expect(latest.map(\.id) == ["run-129", "run-128", "run-126", "run-125", "run-123"])
            #expect(latest[0].outcome == .running && latest[0].finishedAt == nil)
            #expect(latest[1].duration == 12.5 && latest[1].counts == RunCounts(changes: 3, succeeded: 2, failed: 1))
            let drift = try await journal.runs(RunQuery(site: "lab", kind: .drift, limit: 50))
            #expect(drift.map(\.id) == ["run-125", "run-120", "run-110", "run-105"])
            #expect(try await journal.runs(RunQuery(limit: 100)).count == 30)
            let one = try #require(try await journal.run("run-107"))
            #expect(one.ciJobURL == "https://ci/7" && one.planDigest == "plan-7" && one.user == "ops" && one.startedAt == base + 7 * 60)
            let actions = try await journal.actions(of: "run-107")
            #expect(actions.map(\.sequence) == [1, 2, 3])
            #expect(actions[2].outcome == .failed && actions[2].message == "boom" && actions[2].finishedAt == base + 1)
            #expect(try await journal.run("run-none") == nil)
            // The unfinished apply is abandoned once another holds the lock.
            #expect(try await journal.abandonUnfinished(site: "lab", except: "run-999") == ["run-129"])
            #expect(try await journal.run("run-129")?.outcome == .abandoned)
            await journal.close()
        }
    }

    @Test func backendLocationsParseAndNeverShowAPassword() throws {
        #expect(try BackendLocation(parsing: "file:state", base: "/srv/site") == .embedded(directory: "/srv/site/state"))
        #expect(try BackendLocation(parsing: "/var/lib/x") == .embedded(directory: "/var/lib/x"))
        guard case .postgres(let url) = try BackendLocation(parsing: "postgres://ops:s3cret@db1:5433/virtform") else {
            Issue.record("not a PostgreSQL location")
            return
        }
        #expect(url.user == "ops" && url.password == "s3cret" && url.host == "db1" && url.port == 5433 && url.database == "virtform")
        #expect(!url.description.contains("s3cret"))
        #expect(BackendLocation.redacted("postgres://ops:s3cret@db1/x") == "postgres://ops:***@db1/x")
        #expect(BackendLocation.redacted("postgres://ops:p@ss@db1/x") == "postgres://ops:***@db1/x", "a password with an @ in it")
        #expect(throws: StateError.self) { try BackendLocation(parsing: "postgres://ops@db1/x?sslmode=require") }
        #expect(throws: StateError.self) { try BackendLocation(parsing: "redis://db1") }
    }

    @Test func anUnreachableServerIsAClearError() async throws {
        // A port nobody listens on, on loopback.
        let error = await #expect(throws: StateError.self) {
            _ = try await StateBackends.open(try BackendLocation(parsing: "postgres://virtform@127.0.0.1:9/postgres"), site: "lab")
        }
        #expect(error?.code == .unavailable)
        #expect(error?.message.contains("cannot reach the state backend postgres://virtform@127.0.0.1:9/postgres") == true, "\(String(describing: error))")
    }
}

final class LostSignal: Sendable {
    private let state = Mutex<String?>(nil)
    func fire(_ reason: String) { state.withLock { $0 = $0 ?? reason } }
    var reason: String? { state.withLock { $0 } }
}
