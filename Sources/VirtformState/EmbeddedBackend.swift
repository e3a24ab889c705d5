import Foundation
import GRDB
import Synchronization
import VirtformExecution
import VirtformSystem

/// The backend with no server: a directory of this machine holding `state.sqlite` (the journal
/// and the lock holders' facts, SQLite through GRDB in WAL mode, so plans read while an apply
/// writes) and one lock file per site, `SITE.lock`, locked with `flock(2)` for the whole apply
/// — the kernel drops it when the process ends, however it ends.
public final class EmbeddedBackend: StateBackend {
    public let directory: String
    public let site: String
    let database: DatabasePool
    let lockPath: String

    public var location: String { "file:\(directory)" }

    /// Opens (creating and migrating) the state in `directory`, on a thread of its own: the
    /// files and SQLite's locks are blocking work, never for the cooperative pool.
    public static func open(directory: String, site: String) async throws -> EmbeddedBackend {
        do {
            return try await BlockingThreadPool.shared.run(key: "state") { try EmbeddedBackend(directory: directory, site: site) }
        } catch let error as StateError {
            throw error
        } catch {
            throw StateError(.unavailable, "cannot open the state in \(directory): \(error)")
        }
    }

    public init(directory: String, site: String) throws {
        self.directory = directory
        self.site = site
        do {
            let parent = (directory as NSString).deletingLastPathComponent
            if !parent.isEmpty { try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true) }
            try RunLock.prepareDirectory(directory)
        } catch {
            throw StateError(.unavailable, "cannot use the state directory \(directory): \(error)")
        }
        lockPath = (directory as NSString).appendingPathComponent(Self.fileName(site) + ".lock")
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.label = "virtform state"
        do {
            database = try DatabasePool(path: (directory as NSString).appendingPathComponent("state.sqlite"), configuration: configuration)
            try Self.migrator.migrate(database)
        } catch {
            throw StateError(.unavailable, "cannot open the state database in \(directory): \(error)")
        }
    }

    public func close() async {
        let database = self.database
        _ = try? await BlockingThreadPool.shared.run(key: "state") { try database.close() }
    }

    /// A site name as a file name: letters, digits, `-`, `_` and `.` kept, anything else as `%XX`.
    static func fileName(_ site: String) -> String {
        var name = ""
        for byte in site.utf8 {
            let scalar = Unicode.Scalar(byte)
            if (byte < 0x80 && (CharacterSet.alphanumerics.contains(scalar))) || byte == 0x2d || byte == 0x5f || (byte == 0x2e && !name.isEmpty) {
                name.unicodeScalars.append(scalar)
            } else {
                name += String(format: "%%%02X", byte)
            }
        }
        return name.isEmpty ? "%" : name
    }

    static let migrator: DatabaseMigrator = {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1 runs, actions, lock holders") { db in
            try db.execute(sql: """
                CREATE TABLE runs (
                    id TEXT PRIMARY KEY NOT NULL, site TEXT NOT NULL, kind TEXT NOT NULL, user TEXT NOT NULL, machine TEXT NOT NULL,
                    ci_job_url TEXT, plan_digest TEXT, started_at REAL NOT NULL, finished_at REAL, outcome TEXT NOT NULL,
                    changes INTEGER NOT NULL DEFAULT 0, succeeded INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
                    skipped INTEGER NOT NULL DEFAULT 0, not_started INTEGER NOT NULL DEFAULT 0, blocked INTEGER NOT NULL DEFAULT 0,
                    outside INTEGER NOT NULL DEFAULT 0, unapplied INTEGER NOT NULL DEFAULT 0, message TEXT);
                CREATE INDEX runs_by_site ON runs (site, started_at DESC);
                CREATE INDEX runs_by_site_kind ON runs (site, kind, started_at DESC);
                CREATE INDEX runs_by_time ON runs (started_at DESC);
                CREATE INDEX runs_running ON runs (site) WHERE outcome = 'running';
                CREATE TABLE actions (
                    run TEXT NOT NULL, sequence INTEGER NOT NULL, action TEXT NOT NULL, outcome TEXT NOT NULL,
                    started_at REAL, finished_at REAL, message TEXT, PRIMARY KEY (run, sequence)) WITHOUT ROWID;
                CREATE TABLE lock_holders (site TEXT PRIMARY KEY NOT NULL, holder TEXT NOT NULL);
                """)
        }
        return migrator
    }()

    // MARK: - SiteLock

    public func acquire(_ holder: LockHolder, timeout: Duration, onLost: @escaping @Sendable (String) -> Void) async throws -> any LockLease {
        let lock: RunLock
        do {
            lock = timeout > .zero
                ? try await RunLock.lock(at: lockPath, command: holder.command, timeout: timeout)
                : try RunLock.tryLock(at: lockPath, command: holder.command)
        } catch where error.code == .locked || error.code == .lockTimeout {
            let current = try? await readHolder()
            throw StateError(.locked, "the site \(site) is locked (\(location))", holder: current)
        } catch {
            throw StateError(.unavailable, "cannot take the lock \(lockPath): \(error)")
        }
        do {
            try await writeHolder(holder)
        } catch {
            lock.unlock()
            throw StateError(.unavailable, "cannot record the lock's holder in \(directory): \(error)")
        }
        return Lease(backend: self, lock: lock, holder: holder)
    }

    public func status() async throws -> LockState {
        let recorded = try await readHolder()
        guard RunLock.holdingProcess(at: lockPath) != nil else { return .free(stale: recorded) }
        return .held(recorded)
    }

    public func release(run: String, force: Bool) async throws -> String {
        let recorded = try await readHolder()
        guard let recorded, recorded.run == run else {
            throw StateError(.refused, recorded.map { "run \(run) does not hold the lock of site \(site); run \($0.run) does" }
                ?? "nobody holds the lock of site \(site)")
        }
        let holding = RunLock.holdingProcess(at: lockPath)
        guard let pid = holding, pid == recorded.pid, recorded.machine == Who.machine() else {
            if holding != nil {
                // Held by a process that has not recorded itself yet: never the dead run's.
                throw StateError(.refused, "run \(run) no longer holds the lock of site \(site); pid \(holding!) does, and has not recorded itself yet")
            }
            try await clearHolder(run: run)
            return "run \(run) had died without releasing the lock of site \(site); its record is removed"
        }
        guard force else {
            throw StateError(.refused, "run \(run) still holds the lock of site \(site) (pid \(pid) on this machine); pass --force to end that process", holder: recorded)
        }
        guard pid > 0, kill(pid, SIGTERM) == 0 || errno == ESRCH else {
            throw StateError(.refused, "cannot end pid \(pid), which holds the lock of site \(site): \(String(cString: strerror(errno)))")
        }
        // Until that process lets go (SIGKILL after 10 s), and no longer than 20 s.
        let start = ContinuousClock.now
        var killed = false
        while RunLock.holdingProcess(at: lockPath) == pid {
            let waited = ContinuousClock.now - start
            if waited > .seconds(10) && !killed {
                _ = kill(pid, SIGKILL)
                killed = true
            }
            if waited > .seconds(20) { throw StateError(.refused, "pid \(pid) still holds the lock of site \(site) after SIGTERM and SIGKILL") }
            try await Task.sleep(for: .milliseconds(50))
        }
        try await clearHolder(run: run)
        return "ended pid \(pid) of run \(run), which held the lock of site \(site)"
    }

    func readHolder() async throws -> LockHolder? {
        let site = self.site
        do {
            let text = try await database.read { db in try String.fetchOne(db, sql: "SELECT holder FROM lock_holders WHERE site = ?", arguments: [site]) }
            return try text.map { try JSONCoding.decoder.decode(LockHolder.self, from: Data($0.utf8)) }
        } catch {
            throw StateError(.unavailable, "cannot read the lock's holder from \(directory): \(error)")
        }
    }

    func writeHolder(_ holder: LockHolder) async throws {
        let text = String(decoding: try JSONCoding.encoder.encode(holder), as: UTF8.self)
        let site = self.site
        try await database.write { db in
            try db.execute(sql: "INSERT INTO lock_holders (site, holder) VALUES (?, ?) ON CONFLICT (site) DO UPDATE SET holder = excluded.holder",
                           arguments: [site, text])
        }
    }

    func clearHolder(run: String) async throws {
        let site = self.site
        try await database.write { db in
            try db.execute(sql: "DELETE FROM lock_holders WHERE site = ? AND json_extract(holder, '$.run') = ?", arguments: [site, run])
        }
    }

    final class Lease: LockLease {
        let backend: EmbeddedBackend
        let lock: RunLock
        private let state: Locked<LockHolder>
        private let beating: Task<Void, Never>

        init(backend: EmbeddedBackend, lock: RunLock, holder: LockHolder) {
            self.backend = backend
            self.lock = lock
            let state = Locked(holder)
            self.state = state
            // The heartbeat: the file lock is the truth here; the beat tells `lock status` the holder is alive.
            beating = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: Heartbeat.interval)
                    guard !Task.isCancelled else { return }
                    let beat = state.withLock { holder in
                        holder.heartbeat = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
                        return holder
                    }
                    try? await backend.writeHolder(beat)
                }
            }
        }

        deinit { beating.cancel() }

        var holder: LockHolder { state.withLock { $0 } }

        func update(planDigest: String) async {
            let holder = state.withLock { holder in
                holder.planDigest = planDigest
                return holder
            }
            try? await backend.writeHolder(holder)
        }

        func release() async {
            beating.cancel()
            await beating.value  // a beat in flight must not rewrite the record after it is cleared
            guard lock.isLocked else { return }
            try? await backend.clearHolder(run: holder.run)
            lock.unlock()
        }
    }

    // MARK: - RunJournal

    public func begin(_ run: RunRecord) async throws {
        try await write("record run \(run.id)") { db in
            try db.execute(sql: """
                INSERT INTO runs (id, site, kind, user, machine, ci_job_url, plan_digest, started_at, finished_at, outcome,
                                  changes, succeeded, failed, skipped, not_started, blocked, outside, unapplied, message)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: Self.arguments(run))
        }
    }

    public func finish(_ run: RunRecord) async throws {
        try await write("record the end of run \(run.id)") { db in
            try db.execute(sql: """
                UPDATE runs SET plan_digest = ?, finished_at = ?, outcome = ?, changes = ?, succeeded = ?, failed = ?, skipped = ?,
                                not_started = ?, blocked = ?, outside = ?, unapplied = ?, message = ?
                WHERE id = ?
                """, arguments: [run.planDigest, run.finishedAt?.timeIntervalSince1970, run.outcome.rawValue, run.counts.changes,
                                 run.counts.succeeded, run.counts.failed, run.counts.skipped, run.counts.notStarted, run.counts.blocked,
                                 run.counts.outside, run.counts.unapplied, run.message, run.id])
        }
    }

    public func record(_ actions: [ActionRecord]) async throws {
        guard !actions.isEmpty else { return }
        try await write("record \(actions.count) action(s)") { db in
            let statement = try db.cachedStatement(sql: """
                INSERT OR REPLACE INTO actions (run, sequence, action, outcome, started_at, finished_at, message) VALUES (?, ?, ?, ?, ?, ?, ?)
                """)
            for action in actions {
                try statement.execute(arguments: [action.run, action.sequence, action.action, action.outcome.rawValue,
                                                  action.startedAt?.timeIntervalSince1970, action.finishedAt?.timeIntervalSince1970, action.message])
            }
        }
    }

    public func runs(_ query: RunQuery) async throws -> [RunRecord] {
        var conditions: [String] = []
        var arguments: StatementArguments = []
        if let site = query.site {
            conditions.append("site = ?")
            arguments += [site]
        }
        if let kind = query.kind {
            conditions.append("kind = ?")
            arguments += [kind.rawValue]
        }
        arguments += [query.limit]
        let sql = "SELECT * FROM runs" + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
            + " ORDER BY started_at DESC, id DESC LIMIT ?"
        let finalArguments = arguments
        return try await read("read the run history") { db in try Row.fetchAll(db, sql: sql, arguments: finalArguments).map(Self.run) }
    }

    public func run(_ id: String) async throws -> RunRecord? {
        try await read("read run \(id)") { db in try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE id = ?", arguments: [id]).map(Self.run) }
    }

    public func actions(of run: String) async throws -> [ActionRecord] {
        try await read("read the actions of run \(run)") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM actions WHERE run = ? ORDER BY sequence", arguments: [run]).map { row in
                ActionRecord(run: row["run"], sequence: row["sequence"], action: row["action"],
                             outcome: ActionRecord.Outcome(rawValue: row["outcome"]) ?? .failed,
                             startedAt: (row["started_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                             finishedAt: (row["finished_at"] as Double?).map(Date.init(timeIntervalSince1970:)), message: row["message"])
            }
        }
    }

    public func abandonUnfinished(site: String, except: String) async throws -> [String] {
        try await write("mark unfinished runs") { db in
            let ids = try String.fetchAll(db, sql: "SELECT id FROM runs WHERE site = ? AND outcome = 'running' AND id != ? AND kind IN ('apply', 'reconcile')",
                                          arguments: [site, except])
            try db.execute(sql: "UPDATE runs SET outcome = 'abandoned' WHERE site = ? AND outcome = 'running' AND id != ? AND kind IN ('apply', 'reconcile')",
                           arguments: [site, except])
            return ids
        }
    }

    static func arguments(_ run: RunRecord) -> StatementArguments {
        [run.id, run.site, run.kind.rawValue, run.user, run.machine, run.ciJobURL, run.planDigest, run.startedAt.timeIntervalSince1970,
         run.finishedAt?.timeIntervalSince1970, run.outcome.rawValue, run.counts.changes, run.counts.succeeded, run.counts.failed,
         run.counts.skipped, run.counts.notStarted, run.counts.blocked, run.counts.outside, run.counts.unapplied, run.message]
    }

    static func run(_ row: Row) -> RunRecord {
        RunRecord(id: row["id"], site: row["site"], kind: RunKind(rawValue: row["kind"]) ?? .apply, user: row["user"], machine: row["machine"],
                  ciJobURL: row["ci_job_url"], planDigest: row["plan_digest"], startedAt: Date(timeIntervalSince1970: row["started_at"]),
                  finishedAt: (row["finished_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                  outcome: RunOutcome(rawValue: row["outcome"]) ?? .failed,
                  counts: RunCounts(changes: row["changes"], succeeded: row["succeeded"], failed: row["failed"], skipped: row["skipped"],
                                    notStarted: row["not_started"], blocked: row["blocked"], outside: row["outside"], unapplied: row["unapplied"]),
                  message: row["message"])
    }

    private func write<T: Sendable>(_ what: String, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do { return try await database.write(body) } catch { throw StateError(.unavailable, "cannot \(what) in \(directory): \(error)") }
    }

    private func read<T: Sendable>(_ what: String, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do { return try await database.read(body) } catch { throw StateError(.unavailable, "cannot \(what) from \(directory): \(error)") }
    }
}

enum Heartbeat {
    /// How often a holder rewrites its heartbeat.
    static let interval: Duration = .seconds(5)
}

enum JSONCoding {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()
    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()
}

/// A value behind a lock, shareable with tasks (a `Mutex` itself cannot be captured).
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T: Sendable>(_ body: (inout sending Value) -> sending T) -> T { mutex.withLock(body) }
}
