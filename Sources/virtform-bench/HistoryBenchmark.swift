import Foundation
import VirtformLab
import VirtformModel
import VirtformState
import VirtformSystem

/// `virtform-bench history`: the run history at scale and the cost of the apply lock, on both
/// backends. Seeds `runs` runs with `actions` actions each (100,000 × 100 = 10,000,000 action
/// rows by default) straight through SQL, then times, as processes, `virtform history --limit
/// 20` against the same query run by the database's own client (sqlite3, psql: the floor), and
/// in-process the lock's whole cost to an apply (open, take, record the run's start and end,
/// release, close).
enum HistoryBenchmark {
    static func run(runs: Int, actions: Int, repeats: Int) async throws {
        let virtform = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("virtform").path
        guard FileManager.default.isExecutableFile(atPath: virtform) else {
            throw BenchmarkError("build virtform next to the benchmark first: swift build -c release")
        }
        print("history: \(runs) runs × \(actions) actions = \(runs * actions) action rows; each figure the median of \(repeats)")

        // Embedded.
        let directory = NSTemporaryDirectory() + "virtform-bench-state-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let embedded = try EmbeddedBackend(directory: directory, site: "bench")
        await embedded.close()
        let database = directory + "/state.sqlite"
        let start = ContinuousClock.now
        try await sh(["sqlite3", database, seedSQLite(runs: runs, actions: actions)])
        print(String(format: "embedded: seeded in %.1f s, database %@", inSeconds(start.duration(to: .now)),
                     ByteSize(bytes: UInt64((try? FileManager.default.attributesOfItem(atPath: database)[.size] as? Int) ?? 0)).description))
        let query = "SELECT * FROM runs WHERE site = 'bench' ORDER BY started_at DESC, id DESC LIMIT 20"
        try await compare(label: "embedded", repeats: repeats,
                          command: [virtform, "history", "--limit", "20", "--site", "bench", "--backend", "file:\(directory)"],
                          floor: ["sqlite3", database, query])
        try await lockCost(.embedded(directory: directory), label: "embedded", repeats: repeats)

        // PostgreSQL, on a throw-away server on loopback.
        if let reason = PostgresLab.unavailableReason {
            print("postgres: skipped (\(reason))")
            return
        }
        try await PostgresLab.with { server in
            let backend = try await StateBackends.open(try BackendLocation(parsing: server.url()), site: "bench")
            await backend.close()
            let psql = ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", String(server.port), "-U", server.user, "-d", "postgres", "-v", "ON_ERROR_STOP=1"]
            let start = ContinuousClock.now
            try await sh(psql + ["-c", seedPostgres(runs: runs, actions: actions)])
            print(String(format: "postgres: seeded (and analyzed) in %.1f s", inSeconds(start.duration(to: .now))))
            try await compare(label: "postgres", repeats: repeats,
                              command: [virtform, "history", "--limit", "20", "--site", "bench", "--backend", server.url()],
                              floor: psql + ["-c", "SELECT * FROM virtform_runs WHERE site = 'bench' ORDER BY started_at DESC, id DESC LIMIT 20"])
            try await lockCost(try BackendLocation(parsing: server.url()), label: "postgres", repeats: repeats)
        }
    }

    static func seedSQLite(runs: Int, actions: Int) -> String {
        """
        PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;
        BEGIN;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < \(runs))
        INSERT INTO runs (id, site, kind, user, machine, started_at, finished_at, outcome, changes, succeeded)
        SELECT printf('r%07d', i), 'bench', CASE WHEN i % 4 = 0 THEN 'drift' ELSE 'apply' END, 'ops', 'ci-1',
               1700000000 + i * 60, 1700000000 + i * 60 + 30, 'succeeded', \(actions), \(actions) FROM n;
        WITH RECURSIVE s(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM s WHERE j < \(actions))
        INSERT INTO actions (run, sequence, action, outcome, started_at, finished_at)
        SELECT r.id, s.j, 'create VirtualMachine/appl/vm-' || s.j, 'succeeded', r.started_at, r.started_at + 1 FROM runs r, s;
        COMMIT;
        ANALYZE;
        """
    }

    static func seedPostgres(runs: Int, actions: Int) -> String {
        """
        SET synchronous_commit = off;
        INSERT INTO virtform_runs (id, site, kind, "user", machine, started_at, finished_at, outcome, changes, succeeded)
        SELECT 'r' || lpad(i::text, 7, '0'), 'bench', CASE WHEN i % 4 = 0 THEN 'drift' ELSE 'apply' END, 'ops', 'ci-1',
               to_timestamp(1700000000 + i * 60), to_timestamp(1700000000 + i * 60 + 30), 'succeeded', \(actions), \(actions)
        FROM generate_series(1, \(runs)) AS i;
        INSERT INTO virtform_actions (run, sequence, action, outcome, started_at, finished_at)
        SELECT r.id, s, 'create VirtualMachine/appl/vm-' || s, 'succeeded', r.started_at, r.started_at + interval '1 second'
        FROM virtform_runs r, generate_series(1, \(actions)) AS s;
        ANALYZE;
        """
    }

    /// The command and its floor, each run `repeats` times as a process (after one warm-up).
    static func compare(label: String, repeats: Int, command: [String], floor: [String]) async throws {
        let ours = try await timeProcess(command, repeats: repeats, expect: "RUN")
        let raw = try await timeProcess(floor, repeats: repeats, expect: "")
        // What any virtform command costs before it does anything: the process start.
        let started = try await timeProcess([command[0], "--version"], repeats: repeats, expect: "")
        print(String(format: "%@: `virtform history --limit 20` %.1f ms (of which %.1f ms `virtform --version`, the process start); the same query by %@ %.1f ms; ratio %.2f (target: under 100 ms)",
                     label, ours * 1000, started * 1000, floor[0], raw * 1000, ours / raw))
    }

    static func timeProcess(_ arguments: [String], repeats: Int, expect: String) async throws -> Double {
        var times: [Double] = []
        for round in 0...repeats {
            let start = ContinuousClock.now
            let result = try await Command.run(resolved(arguments), timeout: .seconds(60))
            let elapsed = inSeconds(start.duration(to: .now))
            guard result.status == 0, expect.isEmpty || result.standardOutput.contains(expect) else {
                throw BenchmarkError("\(arguments.joined(separator: " ")) failed (exit \(result.status)): \(result.standardError.prefix(400))")
            }
            if round > 0 { times.append(elapsed) }
        }
        return median(times)
    }

    /// What the lock costs one apply: open the backend, take the lock, mark unfinished runs,
    /// record the run's start and end, release, close.
    static func lockCost(_ location: BackendLocation, label: String, repeats: Int) async throws {
        var times: [Double] = []
        for round in 0...repeats {
            let start = ContinuousClock.now
            let backend = try await StateBackends.open(location, site: "bench-lock")
            let holder = LockHolder.current(run: RunID.make(), command: "virtform apply")
            let lease = try await backend.acquire(holder, timeout: .zero) { _ in }
            _ = try await backend.abandonUnfinished(site: "bench-lock", except: holder.run)
            var run = RunRecord.starting(.apply, site: "bench-lock", holder: holder)
            try await backend.begin(run)
            run.finishedAt = Date()
            run.outcome = .succeeded
            try await backend.finish(run)
            await lease.release()
            await backend.close()
            if round > 0 { times.append(inSeconds(start.duration(to: .now))) }
        }
        print(String(format: "%@: the lock and the run's record add %.1f ms to an apply (best %.1f ms; target: under 50 ms)",
                     label, median(times) * 1000, times.min()! * 1000))
    }

    /// The program by its full path.
    static func resolved(_ arguments: [String]) throws -> [String] {
        guard let program = arguments.first.flatMap({ $0.hasPrefix("/") ? $0 : Executables.find($0) }) else {
            throw BenchmarkError("\(arguments.first ?? "") is not installed")
        }
        return [program] + arguments.dropFirst()
    }

    static func sh(_ arguments: [String]) async throws {
        let result = try await Command.run(resolved(arguments), timeout: .seconds(3600))
        guard result.status == 0 else { throw BenchmarkError("\(arguments[0]) failed (exit \(result.status)): \(result.standardError.prefix(600))") }
    }
}
