import Foundation
import VirtformExecution

/// A run's id: when it started (UTC, to the second) and six random hex digits, e.g.
/// `20261201T163700Z-3fa2c1`. Sorts by start time, short enough to type into
/// `virtform history RUN` or `virtform lock release RUN`.
public enum RunID {
    public static func make(at date: Date = Date()) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter.string(from: date) + "-" + String(format: "%06x", UInt32.random(in: 0..<0x100_0000))
    }
}

/// Who holds (or asks for) a site's apply lock, as `lock status` and a refused second apply show it.
public struct LockHolder: Sendable, Equatable, Codable {
    public var run: String
    /// `user@machine` of the process that holds the lock.
    public var user: String
    public var machine: String
    public var pid: Int32
    public var command: String
    /// The CI job's page, when the CI's environment names one (GitHub Actions, GitLab, Jenkins, Buildkite).
    public var ciJobURL: String?
    /// The digest of the plan being applied; known once the plan is made (at once for a saved plan).
    public var planDigest: String?
    public var since: Date
    /// When the holder last said it is alive (every few seconds while it holds the lock).
    public var heartbeat: Date

    public init(run: String, user: String, machine: String, pid: Int32, command: String, ciJobURL: String?,
                planDigest: String?, since: Date, heartbeat: Date) {
        self.run = run
        self.user = user
        self.machine = machine
        self.pid = pid
        self.command = command
        self.ciJobURL = ciJobURL
        self.planDigest = planDigest
        self.since = since
        self.heartbeat = heartbeat
    }

    /// A holder for this process, now.
    public static func current(run: String, command: String, planDigest: String? = nil,
                               environment: [String: String] = ProcessInfo.processInfo.environment) -> LockHolder {
        // To the microsecond: runs that start within one second still sort by when they started.
        let now = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 * 1_000_000).rounded(.down) / 1_000_000)
        return LockHolder(run: run, user: Who.user(environment), machine: Who.machine(), pid: getpid(), command: command,
                          ciJobURL: Who.ciJobURL(environment), planDigest: planDigest, since: now, heartbeat: now)
    }

    /// The facts on lines of their own, for errors and `lock status`.
    public func describe(now: Date = Date()) -> String {
        var lines = ["run \(run) by \(user)@\(machine) (pid \(pid), \(command))",
                     "since \(Timestamps.text(since)), last heartbeat \(Timestamps.ago(heartbeat, now: now))"]
        if let planDigest { lines.append("applying plan \(planDigest)") }
        if let ciJobURL { lines.append("CI job \(ciJobURL)") }
        return lines.joined(separator: "\n")
    }
}

/// What `lock status` finds.
public enum LockState: Sendable, Equatable {
    /// Nobody holds the lock. `lastHolder`: a holder that died without releasing it (its record
    /// stayed; the lock went with its process or session).
    case free(stale: LockHolder?)
    /// Held; the holder's record when it has written one (nil for a moment after it took the lock).
    case held(LockHolder?)
}

/// What a run was.
public enum RunKind: String, Sendable, Codable, CaseIterable {
    case apply
    case drift
    /// A pass of `virtform reconcile` that carried something out.
    case reconcile
}

/// How a run ended.
public enum RunOutcome: String, Sendable, Codable {
    /// Still going, or killed: a run found unfinished by a later apply becomes `abandoned`.
    case running
    case succeeded
    /// Applied what could run; some changes stayed blocked.
    case blocked
    case failed
    /// Ctrl-C, or the lock was taken away.
    case interrupted
    /// Never finished: its process or session died while it ran.
    case abandoned
    /// drift: nothing differs.
    case clean
    /// drift: something changed outside virtform (or cannot be told).
    case drifted
    /// drift: only manifest changes not applied yet.
    case unapplied
}

/// Counts of a run: for an apply its plan and what happened; for a drift check what differed.
public struct RunCounts: Sendable, Equatable, Codable {
    public var changes = 0
    public var succeeded = 0
    public var failed = 0
    public var skipped = 0
    public var notStarted = 0
    public var blocked = 0
    public var outside = 0
    public var unapplied = 0

    public init(changes: Int = 0, succeeded: Int = 0, failed: Int = 0, skipped: Int = 0, notStarted: Int = 0, blocked: Int = 0,
                outside: Int = 0, unapplied: Int = 0) {
        self.changes = changes
        self.succeeded = succeeded
        self.failed = failed
        self.skipped = skipped
        self.notStarted = notStarted
        self.blocked = blocked
        self.outside = outside
        self.unapplied = unapplied
    }
}

/// One run of `apply` or `drift`, as the journal keeps it.
public struct RunRecord: Sendable, Equatable, Codable {
    public var id: String
    public var site: String
    public var kind: RunKind
    public var user: String
    public var machine: String
    public var ciJobURL: String?
    public var planDigest: String?
    public var startedAt: Date
    public var finishedAt: Date?
    public var outcome: RunOutcome
    public var counts: RunCounts
    /// Why it failed, in a line (a refused plan, an unreadable system, the first failed action).
    public var message: String?

    public init(id: String, site: String, kind: RunKind, user: String, machine: String, ciJobURL: String? = nil,
                planDigest: String? = nil, startedAt: Date, finishedAt: Date? = nil, outcome: RunOutcome = .running,
                counts: RunCounts = RunCounts(), message: String? = nil) {
        self.id = id
        self.site = site
        self.kind = kind
        self.user = user
        self.machine = machine
        self.ciJobURL = ciJobURL
        self.planDigest = planDigest
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.outcome = outcome
        self.counts = counts
        self.message = message
    }

    /// A new run of this process, started now.
    public static func starting(_ kind: RunKind, site: String, holder: LockHolder) -> RunRecord {
        RunRecord(id: holder.run, site: site, kind: kind, user: holder.user, machine: holder.machine, ciJobURL: holder.ciJobURL,
                  planDigest: holder.planDigest, startedAt: holder.since)
    }

    /// Seconds from start to finish; nil while it runs.
    public var duration: Double? { finishedAt.map { $0.timeIntervalSince(startedAt) } }
}

/// One action of a run (or, for a drift check, one resource that differed).
public struct ActionRecord: Sendable, Equatable, Codable {
    public enum Outcome: String, Sendable, Codable {
        case succeeded, failed, skipped
        case notStarted = "not_started"
        /// drift: changed outside virtform (or cannot be told).
        case outside
        /// drift: a manifest change not applied yet.
        case unapplied
    }

    public var run: String
    /// Order within the run.
    public var sequence: Int
    /// The change's id (`create VirtualMachine/appl/web-1`) or a batch's node.
    public var action: String
    public var outcome: Outcome
    public var startedAt: Date?
    public var finishedAt: Date?
    public var message: String?

    public init(run: String, sequence: Int, action: String, outcome: Outcome, startedAt: Date? = nil, finishedAt: Date? = nil,
                message: String? = nil) {
        self.run = run
        self.sequence = sequence
        self.action = action
        self.outcome = outcome
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.message = message
    }
}

/// Which runs `history` lists: newest first.
public struct RunQuery: Sendable, Equatable {
    public var site: String?
    public var kind: RunKind?
    public var limit: Int

    public init(site: String? = nil, kind: RunKind? = nil, limit: Int = 20) {
        self.site = site
        self.kind = kind
        self.limit = limit
    }
}

/// A failure of the state backend: it cannot be reached, refused, or holds what this virtform
/// cannot read. Never carries a password (URLs are shown redacted).
public struct StateError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// Another run holds the lock (and `holder` says who, when known).
        case locked
        /// The backend cannot be reached or answered with an error.
        case unavailable
        /// A request that makes no sense (releasing a run that does not hold the lock …).
        case refused
    }

    public var code: Code
    public var message: String
    public var holder: LockHolder?

    public init(_ code: Code, _ message: String, holder: LockHolder? = nil) {
        self.code = code
        self.message = message
        self.holder = holder
    }

    public var description: String { message }
}

enum Timestamps {
    static func text(_ date: Date) -> String { ISO8601DateFormatter().string(from: date) }

    static func ago(_ date: Date, now: Date) -> String {
        let seconds = Int(now.timeIntervalSince(date).rounded())
        if seconds < 1 { return "just now" }
        if seconds < 120 { return "\(seconds) s ago" }
        if seconds < 7200 { return "\(seconds / 60) min ago" }
        return "at \(text(date))"
    }
}

/// Who this process runs for, where, and for which CI job.
public enum Who {
    public static func user(_ environment: [String: String]) -> String {
        if let name = getpwuid(geteuid())?.pointee.pw_name { return String(cString: name) }
        return environment["USER"] ?? "uid \(geteuid())"
    }

    public static func machine() -> String { RunLock.hostname() }

    /// The job's page as the CI's own variables name it: GitHub Actions (server, repository and
    /// run id), GitLab (`CI_JOB_URL`), Jenkins (`BUILD_URL`), Buildkite (`BUILDKITE_BUILD_URL`).
    public static func ciJobURL(_ environment: [String: String]) -> String? {
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        if let server = value("GITHUB_SERVER_URL"), let repository = value("GITHUB_REPOSITORY"), let run = value("GITHUB_RUN_ID") {
            return "\(server)/\(repository)/actions/runs/\(run)" + (value("GITHUB_RUN_ATTEMPT").map { "/attempts/\($0)" } ?? "")
        }
        return value("CI_JOB_URL") ?? value("BUILD_URL") ?? value("BUILDKITE_BUILD_URL")
    }
}
