import Foundation
import Logging
import PostgresNIO
import Synchronization
import VirtformSystem

/// The shared backend: a PostgreSQL database. The lock is a session advisory lock on the site's
/// key, held on this backend's one connection for the whole apply — so it ends with the session,
/// however the process ends, and must not go through a transaction-pooling proxy (PgBouncer in
/// transaction mode hands the session to others). The journal and the holders' facts are tables
/// virtform creates and migrates itself (`virtform_*`).
public final class PostgresBackend: StateBackend {
    public let url: PostgresURL
    public let site: String
    let connection: PostgresConnection
    let logger: Logger
    /// The advisory lock's two keys: virtform's own class, and the site's.
    let classKey: Int32 = 0x7666_7266  // "vfrf"
    let siteKey: Int32

    public var location: String { url.description }

    private init(url: PostgresURL, site: String, connection: PostgresConnection, logger: Logger) {
        self.url = url
        self.site = site
        self.connection = connection
        self.logger = logger
        var hash: UInt32 = 2_166_136_261  // FNV-1a: stable across runs and machines, unlike Hasher.
        for byte in site.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        siteKey = Int32(bitPattern: hash & 0x7fff_ffff)
    }

    public static func connect(_ url: PostgresURL, site: String, timeout: Duration = .seconds(10)) async throws -> PostgresBackend {
        var logger = Logger(label: "virtform.state.postgres")
        logger.logLevel = .critical
        var configuration = PostgresConnection.Configuration(host: url.host, port: url.port, username: url.user, password: url.password,
                                                             database: url.database, tls: .disable)
        configuration.options.connectTimeout = .milliseconds(Int64(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000))
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
        } catch {
            throw StateError(.unavailable, "cannot reach the state backend \(url): \(Self.explain(error))")
        }
        let backend = PostgresBackend(url: url, site: site, connection: connection, logger: logger)
        do {
            try await backend.migrate()
        } catch {
            try? await connection.close()
            throw error
        }
        return backend
    }

    public func close() async {
        try? await connection.close()
    }

    deinit {
        // Not closed (a caller that threw on its way): close it now, keeping the connection
        // until it is closed (postgres-nio requires a connection closed before it goes).
        guard !connection.isClosed else { return }
        let connection = self.connection
        connection.close().whenComplete { _ in _ = connection }
    }

    /// The server's own message, never the query's values (PSQLError's description hides everything).
    static func explain(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return "\(error)" }
        if let message = error.serverInfo?[.message] {
            return message + (error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? "")
        }
        if let underlying = error.underlying { return "\(error.code): \(underlying)" }
        return "\(error.code)"
    }

    /// How long one statement may take: a server that went away mid-query (a session ended
    /// by the server is not always noticed by the client) fails here, not never.
    static let statementDeadline: Duration = .seconds(15)

    func run(_ what: String, _ query: PostgresQuery) async throws {
        _ = try await rows(what, query)
    }

    func rows(_ what: String, _ query: PostgresQuery) async throws -> [PostgresRandomAccessRow] {
        let (connection, logger) = (self.connection, self.logger)
        guard !connection.isClosed else { throw StateError(.unavailable, "cannot \(what) on \(url): the connection is closed") }
        do {
            let rows = try await withDeadline(Self.statementDeadline, "a statement on \(url)") {
                var rows: [PostgresRandomAccessRow] = []
                for try await row in try await connection.query(query, logger: logger) { rows.append(row.makeRandomAccess()) }
                return Rows(rows)
            }
            return rows.rows
        } catch {
            if error is SystemError { connection.close().whenComplete { _ in _ = connection } }
            throw StateError(.unavailable, "cannot \(what) on \(url): \(Self.explain(error))")
        }
    }

    /// Rows are read on the connection's event loop and handed over whole.
    struct Rows: @unchecked Sendable {
        let rows: [PostgresRandomAccessRow]
        init(_ rows: [PostgresRandomAccessRow]) { self.rows = rows }
    }

    /// The schema's versions, each a list of statements; applied in order, once, by whoever
    /// connects first (others wait on a transaction lock of virtform's class).
    static let migrations: [[String]] = [
        [
            """
            CREATE TABLE virtform_runs (
                id text PRIMARY KEY, site text NOT NULL, kind text NOT NULL, "user" text NOT NULL, machine text NOT NULL,
                ci_job_url text, plan_digest text, started_at timestamptz NOT NULL, finished_at timestamptz, outcome text NOT NULL,
                changes integer NOT NULL DEFAULT 0, succeeded integer NOT NULL DEFAULT 0, failed integer NOT NULL DEFAULT 0,
                skipped integer NOT NULL DEFAULT 0, not_started integer NOT NULL DEFAULT 0, blocked integer NOT NULL DEFAULT 0,
                outside integer NOT NULL DEFAULT 0, unapplied integer NOT NULL DEFAULT 0, message text)
            """,
            "CREATE INDEX virtform_runs_by_site ON virtform_runs (site, started_at DESC, id DESC)",
            "CREATE INDEX virtform_runs_by_site_kind ON virtform_runs (site, kind, started_at DESC, id DESC)",
            "CREATE INDEX virtform_runs_by_time ON virtform_runs (started_at DESC, id DESC)",
            "CREATE INDEX virtform_runs_running ON virtform_runs (site) WHERE outcome = 'running'",
            """
            CREATE TABLE virtform_actions (
                run text NOT NULL, sequence integer NOT NULL, action text NOT NULL, outcome text NOT NULL,
                started_at timestamptz, finished_at timestamptz, message text, PRIMARY KEY (run, sequence))
            """,
            "CREATE TABLE virtform_lock_holders (site text PRIMARY KEY, holder text NOT NULL, backend_pid integer NOT NULL)",
        ],
    ]

    func migrate() async throws {
        try await run("start the schema check", "BEGIN")
        do {
            try await run("wait for another virtform's schema update", "SELECT pg_advisory_xact_lock(\(classKey), 0)")
            try await run("create the schema table", "CREATE TABLE IF NOT EXISTS virtform_schema (version integer NOT NULL)")
            let current = try await rows("read the schema version", "SELECT max(version) AS version FROM virtform_schema")
                .first.flatMap { try? $0["version"].decode(Int?.self) } ?? 0
            guard current <= Self.migrations.count else {
                throw StateError(.unavailable, "the state database \(url) has schema version \(current), newer than this virtform's \(Self.migrations.count); upgrade virtform")
            }
            for (index, statements) in Self.migrations.enumerated() where index + 1 > current {
                for statement in statements { try await run("update the schema to version \(index + 1)", PostgresQuery(unsafeSQL: statement)) }
                try await run("record schema version \(index + 1)", "INSERT INTO virtform_schema (version) VALUES (\(index + 1))")
            }
            try await run("finish the schema check", "COMMIT")
        } catch {
            try? await run("roll back", "ROLLBACK")
            throw error
        }
    }

    // MARK: - SiteLock

    public func acquire(_ holder: LockHolder, timeout: Duration, onLost: @escaping @Sendable (String) -> Void) async throws -> any LockLease {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            let taken = try await rows("take the lock of site \(site)", "SELECT pg_try_advisory_lock(\(classKey), \(siteKey)) AS taken")
                .first.flatMap { try? $0["taken"].decode(Bool.self) } ?? false
            if taken { break }
            if clock.now >= deadline || Task.isCancelled {
                let current = try? await readHolder()
                throw StateError(.locked, "the site \(site) is locked (\(location))", holder: current?.holder)
            }
            try? await Task.sleep(for: min(.milliseconds(200), deadline - clock.now))
        }
        do {
            try await writeHolder(holder)
        } catch {
            try? await run("release the lock", "SELECT pg_advisory_unlock(\(classKey), \(siteKey))")
            throw error
        }
        return Lease(backend: self, holder: holder, onLost: onLost)
    }

    /// The backend process holding the site's advisory lock now, if any.
    func holdingBackend() async throws -> Int? {
        try await rows("read who holds the lock of site \(site)", """
            SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND classid::bigint = \(Int64(classKey))
              AND objid::bigint = \(Int64(siteKey)) AND objsubid = 2 AND granted
            """).first.flatMap { try? $0["pid"].decode(Int.self) }
    }

    public func status() async throws -> LockState {
        let recorded = try await readHolder()
        guard let pid = try await holdingBackend() else { return .free(stale: recorded?.holder) }
        // A record of an earlier holder does not describe the session holding it now.
        return .held(recorded?.backend == pid ? recorded?.holder : nil)
    }

    public func release(run: String, force: Bool) async throws -> String {
        guard let recorded = try await readHolder(), recorded.holder.run == run else {
            let current = try await readHolder()
            throw StateError(.refused, current.map { "run \(run) does not hold the lock of site \(site); run \($0.holder.run) does" }
                ?? "nobody holds the lock of site \(site)")
        }
        guard let pid = try await holdingBackend(), pid == recorded.backend else {
            try await clearHolder(run: run)
            return "run \(run) had died without releasing the lock of site \(site); its record is removed"
        }
        guard force else {
            throw StateError(.refused, "run \(run) still holds the lock of site \(site) (its session, backend pid \(pid), is open on \(url)); pass --force to end that session",
                             holder: recorded.holder)
        }
        let ended = try await rows("end the session of run \(run)", "SELECT pg_terminate_backend(\(Int32(pid))) AS ended")
            .first.flatMap { try? $0["ended"].decode(Bool.self) } ?? false
        guard ended else { throw StateError(.refused, "the server did not end backend \(pid), which holds the lock of site \(site) (not allowed for \(url.user)?)") }
        let deadline = ContinuousClock.now + .seconds(10)
        while try await holdingBackend() == pid, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        try await clearHolder(run: run)
        return "ended the session of run \(run) (backend pid \(pid)), which held the lock of site \(site)"
    }

    func readHolder() async throws -> (holder: LockHolder, backend: Int)? {
        guard let row = try await rows("read the lock's holder", "SELECT holder, backend_pid FROM virtform_lock_holders WHERE site = \(site)").first else {
            return nil
        }
        do {
            let text = try row["holder"].decode(String.self)
            return (try JSONCoding.decoder.decode(LockHolder.self, from: Data(text.utf8)), try row["backend_pid"].decode(Int.self))
        } catch {
            throw StateError(.unavailable, "cannot read the lock's holder on \(url): \(error)")
        }
    }

    func writeHolder(_ holder: LockHolder) async throws {
        let text = String(decoding: try JSONCoding.encoder.encode(holder), as: UTF8.self)
        try await run("record the lock's holder", """
            INSERT INTO virtform_lock_holders (site, holder, backend_pid) VALUES (\(site), \(text), pg_backend_pid())
            ON CONFLICT (site) DO UPDATE SET holder = excluded.holder, backend_pid = excluded.backend_pid
            """)
    }

    func clearHolder(run: String) async throws {
        try await self.run("remove the lock's holder", "DELETE FROM virtform_lock_holders WHERE site = \(site) AND holder::jsonb ->> 'run' = \(run)")
    }

    final class Lease: LockLease {
        let backend: PostgresBackend
        private let state: Locked<(holder: LockHolder, released: Bool)>
        private let beating = Locked<Task<Void, Never>?>(nil)

        init(backend: PostgresBackend, holder: LockHolder, onLost: @escaping @Sendable (String) -> Void) {
            self.backend = backend
            let state = Locked((holder: holder, released: false))
            self.state = state
            // The heartbeat also notices a session that ended (the server went, or `lock
            // release --force`): the lock went with it, so the apply is told to stop.
            let task = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: Heartbeat.interval)
                    guard !Task.isCancelled else { return }
                    let beat = state.withLock { current in
                        current.holder.heartbeat = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
                        return current.holder
                    }
                    do {
                        if backend.connection.isClosed { throw StateError(.unavailable, "the connection is closed") }
                        try await backend.writeHolder(beat)
                    } catch {
                        // The lock went with the session: nothing is left to release.
                        if state.withLock({ current in defer { current.released = true }; return current.released }) { return }
                        onLost("the session holding the lock of site \(backend.site) on \(backend.url) ended: \(error)")
                        return
                    }
                }
            }
            beating.withLock { $0 = task }
            // A session that ends is seen at once, not only at the next heartbeat.
            backend.connection.closeFuture.whenComplete { _ in
                if state.withLock({ current in defer { current.released = true }; return current.released }) { return }
                onLost("the session holding the lock of site \(backend.site) on \(backend.url) ended")
            }
        }

        deinit { beating.withLock { $0 }?.cancel() }

        var holder: LockHolder { state.withLock { $0.holder } }

        func update(planDigest: String) async {
            let holder = state.withLock { current in
                current.holder.planDigest = planDigest
                return current.holder
            }
            try? await backend.writeHolder(holder)
        }

        func release() async {
            let first = state.withLock { current in
                defer { current.released = true }
                return !current.released
            }
            guard first else { return }
            let task = beating.withLock { $0 }
            task?.cancel()
            await task?.value  // a beat in flight must not rewrite the record after it is cleared
            try? await backend.clearHolder(run: holder.run)
            try? await backend.run("release the lock", "SELECT pg_advisory_unlock(\(backend.classKey), \(backend.siteKey))")
        }
    }

    // MARK: - RunJournal

    public func begin(_ run: RunRecord) async throws {
        let c = run.counts
        try await self.run("record run \(run.id)", """
            INSERT INTO virtform_runs (id, site, kind, "user", machine, ci_job_url, plan_digest, started_at, finished_at, outcome,
                                       changes, succeeded, failed, skipped, not_started, blocked, outside, unapplied, message)
            VALUES (\(run.id), \(run.site), \(run.kind.rawValue), \(run.user), \(run.machine), \(run.ciJobURL), \(run.planDigest),
                    \(run.startedAt), \(run.finishedAt), \(run.outcome.rawValue), \(c.changes), \(c.succeeded), \(c.failed), \(c.skipped),
                    \(c.notStarted), \(c.blocked), \(c.outside), \(c.unapplied), \(run.message))
            """)
    }

    public func finish(_ run: RunRecord) async throws {
        let c = run.counts
        try await self.run("record the end of run \(run.id)", """
            UPDATE virtform_runs SET plan_digest = \(run.planDigest), finished_at = \(run.finishedAt), outcome = \(run.outcome.rawValue),
                changes = \(c.changes), succeeded = \(c.succeeded), failed = \(c.failed), skipped = \(c.skipped),
                not_started = \(c.notStarted), blocked = \(c.blocked), outside = \(c.outside), unapplied = \(c.unapplied),
                message = \(run.message)
            WHERE id = \(run.id)
            """)
    }

    public func record(_ actions: [ActionRecord]) async throws {
        // One statement per thousand rows (seven binds each, under the protocol's 65,535).
        for start in stride(from: 0, to: actions.count, by: 1000) {
            let chunk = actions[start..<min(start + 1000, actions.count)]
            var query = PostgresQuery(unsafeSQL: "")
            var sql = "INSERT INTO virtform_actions (run, sequence, action, outcome, started_at, finished_at, message) VALUES "
            var bindings = PostgresBindings(capacity: chunk.count * 7)
            for (i, action) in chunk.enumerated() {
                let n = i * 7
                sql += (i == 0 ? "" : ", ") + "($\(n + 1), $\(n + 2), $\(n + 3), $\(n + 4), $\(n + 5), $\(n + 6), $\(n + 7))"
                bindings.append(action.run)
                bindings.append(action.sequence)
                bindings.append(action.action)
                bindings.append(action.outcome.rawValue)
                bindings.append(action.startedAt)
                bindings.append(action.finishedAt)
                bindings.append(action.message)
            }
            sql += " ON CONFLICT (run, sequence) DO UPDATE SET action = excluded.action, outcome = excluded.outcome, started_at = excluded.started_at, finished_at = excluded.finished_at, message = excluded.message"
            query = PostgresQuery(unsafeSQL: sql, binds: bindings)
            try await run("record \(chunk.count) action(s)", query)
        }
    }

    public func runs(_ query: RunQuery) async throws -> [RunRecord] {
        var sql = "SELECT * FROM virtform_runs"
        var bindings = PostgresBindings()
        var conditions: [String] = []
        if let site = query.site {
            bindings.append(site)
            conditions.append("site = $\(bindings.count)")
        }
        if let kind = query.kind {
            bindings.append(kind.rawValue)
            conditions.append("kind = $\(bindings.count)")
        }
        if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
        bindings.append(query.limit)
        sql += " ORDER BY started_at DESC, id DESC LIMIT $\(bindings.count)"
        return try await rows("read the run history", PostgresQuery(unsafeSQL: sql, binds: bindings)).map(Self.run)
    }

    public func run(_ id: String) async throws -> RunRecord? {
        try await rows("read run \(id)", "SELECT * FROM virtform_runs WHERE id = \(id)").first.map(Self.run)
    }

    public func actions(of run: String) async throws -> [ActionRecord] {
        try await rows("read the actions of run \(run)", "SELECT * FROM virtform_actions WHERE run = \(run) ORDER BY sequence").map { row in
            ActionRecord(run: (try? row["run"].decode(String.self)) ?? run, sequence: (try? row["sequence"].decode(Int.self)) ?? 0,
                         action: (try? row["action"].decode(String.self)) ?? "",
                         outcome: (try? row["outcome"].decode(String.self)).flatMap(ActionRecord.Outcome.init(rawValue:)) ?? .failed,
                         startedAt: try? row["started_at"].decode(Date?.self), finishedAt: try? row["finished_at"].decode(Date?.self),
                         message: try? row["message"].decode(String?.self))
        }
    }

    public func abandonUnfinished(site: String, except: String) async throws -> [String] {
        try await rows("mark unfinished runs", """
            UPDATE virtform_runs SET outcome = 'abandoned' WHERE site = \(site) AND outcome = 'running' AND id <> \(except) AND kind IN ('apply', 'reconcile')
            RETURNING id
            """).compactMap { try? $0["id"].decode(String.self) }
    }

    static func run(_ row: PostgresRandomAccessRow) -> RunRecord {
        func text(_ name: String) -> String { (try? row[name].decode(String.self)) ?? "" }
        func number(_ name: String) -> Int { (try? row[name].decode(Int.self)) ?? 0 }
        return RunRecord(
            id: text("id"), site: text("site"), kind: RunKind(rawValue: text("kind")) ?? .apply, user: text("user"), machine: text("machine"),
            ciJobURL: try? row["ci_job_url"].decode(String?.self), planDigest: try? row["plan_digest"].decode(String?.self),
            startedAt: (try? row["started_at"].decode(Date.self)) ?? Date(timeIntervalSince1970: 0),
            finishedAt: try? row["finished_at"].decode(Date?.self), outcome: RunOutcome(rawValue: text("outcome")) ?? .failed,
            counts: RunCounts(changes: number("changes"), succeeded: number("succeeded"), failed: number("failed"), skipped: number("skipped"),
                              notStarted: number("not_started"), blocked: number("blocked"), outside: number("outside"), unapplied: number("unapplied")),
            message: try? row["message"].decode(String?.self))
    }
}
