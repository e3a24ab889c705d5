import Synchronization
import Foundation

/// What /proc says about one process.
public struct ProcessEntry: Sendable, Hashable {
    public let pid: Int32
    /// The short command name (`/proc/PID/comm`, at most 15 characters).
    public let command: String
    public let realUID: UInt32
    /// Exited but not reaped. In this lab's containers PID 1 does not reap orphans, so a stopped
    /// daemon can linger as a zombie; it is dead for every purpose here.
    public let isZombie: Bool
}

public enum Processes {
    /// The process with this PID, or nil if there is none.
    public static func entry(_ pid: Int32) -> ProcessEntry? {
        guard pid > 0,
            let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        else { return nil }
        // stat is "PID (comm) STATE ..."; comm may contain spaces or parentheses.
        guard let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return nil }
        let command = String(stat[stat.index(after: open)..<close])
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
        var uid: UInt32 = .max
        for line in status.split(separator: "\n") where line.hasPrefix("Uid:") {
            uid = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first.flatMap { UInt32($0) } ?? .max
        }
        return ProcessEntry(pid: pid, command: command, realUID: uid, isZombie: state == "Z" || state == "X")
    }

    /// Whether the process exists and has not exited.
    public static func isRunning(_ pid: Int32) -> Bool {
        guard let entry = entry(pid) else { return false }
        return !entry.isZombie
    }

    /// Every live process whose real UID is `uid`.
    public static func all(ownedBy uid: UInt32) -> [ProcessEntry] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return names.compactMap { Int32($0) }.compactMap(entry).filter { $0.realUID == uid && !$0.isZombie }
    }

    /// The parent of `pid` (from `/proc/PID/stat`), nil if it is gone.
    public static func parent(of pid: Int32) -> Int32? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // After the command: state, then the parent's PID.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? Int32(fields[1]) : nil
    }

    /// `pid`'s live children, their children and so on (not `pid` itself), parents first.
    public static func descendants(of pid: Int32) -> [Int32] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        var children: [Int32: [Int32]] = [:]
        for candidate in names.compactMap({ Int32($0) }) {
            if let parent = parent(of: candidate) { children[parent, default: []].append(candidate) }
        }
        var found: [Int32] = []
        var queue = children[pid] ?? []
        while !queue.isEmpty {
            let next = queue.removeFirst()
            guard isRunning(next) else { continue }
            found.append(next)
            queue += children[next] ?? []
        }
        return found
    }

    /// Sends SIGTERM to each process, waits until they are gone or `grace` has passed, then
    /// SIGKILLs what is left and waits again (bounded). Returns the PIDs still running after
    /// that, which should be none.
    @discardableResult
    public static func terminate(_ pids: [Int32], grace: Duration) async -> [Int32] {
        var remaining = pids.filter(isRunning)
        guard !remaining.isEmpty else { return [] }
        for pid in remaining { kill(pid, SIGTERM) }
        remaining = await waitForExit(remaining, within: grace)
        guard !remaining.isEmpty else { return [] }
        for pid in remaining { kill(pid, SIGKILL) }
        return await waitForExit(remaining, within: .seconds(5))
    }

    private static func waitForExit(_ pids: [Int32], within limit: Duration) async -> [Int32] {
        let deadline = ContinuousClock.now + limit
        var remaining = pids
        while true {
            remaining = remaining.filter(isRunning)
            if remaining.isEmpty || ContinuousClock.now >= deadline { return remaining }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }
}

/// Polls `condition` every `interval` until it holds or `limit` has passed; returns whether it
/// held.
public func poll(
    isolation: isolated (any Actor)? = #isolation, within limit: Duration, every interval: Duration = .milliseconds(50),
    _ condition: () async -> Bool
) async -> Bool {
    let deadline = ContinuousClock.now + limit
    while true {
        if await condition() { return true }
        if ContinuousClock.now >= deadline { return false }
        try? await Task.sleep(for: interval)
    }
}

/// Runs `body`, throwing a `SystemError` that names `what` once `limit` has passed — even
/// when the body cannot end yet (a blocking C call that does not see cancellation): the body
/// is cancelled and left to finish on its own, its result dropped.
public func withDeadline<T: Sendable>(
    _ limit: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let race = DeadlineRace<T>()
    return try await race.run(body) {
        Task {
            guard (try? await Task.sleep(for: limit)) != nil else { return }
            race.finish(.failure(DeadlineRace<T>.timedOut(what, limit)))
        }
    }
}

/// The body and the timer of one `withDeadline`: whichever finishes first resumes the caller
/// and cancels the other.
final class DeadlineRace<T: Sendable>: Sendable {
    static func timedOut(_ what: String, _ limit: Duration) -> SystemError {
        SystemError("\(what) did not finish within \(limit)", timedOut: true)
    }

    /// Runs `body` in a task of its own and waits for whichever comes first: its result, or
    /// `finish` called by the timer that `timer` starts (nil: something else keeps the time).
    func run(_ body: @escaping @Sendable () async throws -> T, timer: () -> Task<Void, Never>?) async throws -> T {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                begin(continuation,
                      work: Task {
                          let result: Result<T, any Error>
                          do { result = .success(try await body()) } catch { result = .failure(error) }
                          self.finish(result)
                      },
                      timer: timer())
            }
        } onCancel: {
            cancel()
        }
    }

    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var work: Task<Void, Never>?
        var timer: Task<Void, Never>?
        var early: Result<T, any Error>?
        /// Cancelled before `begin` stored the work: it is cancelled as soon as it is stored.
        var cancelled = false
    }
    private let state = Mutex(State())

    func begin(_ continuation: CheckedContinuation<T, any Error>, work: Task<Void, Never>, timer: Task<Void, Never>?) {
        let (early, cancelled) = state.withLock { state -> (Result<T, any Error>?, Bool) in
            state.work = work
            state.timer = timer
            if let early = state.early { return (early, state.cancelled) }
            state.continuation = continuation
            return (nil, state.cancelled)
        }
        if cancelled { work.cancel() }
        if let early {
            work.cancel()
            timer?.cancel()
            continuation.resume(with: early)
        }
    }

    func finish(_ result: Result<T, any Error>) {
        let (continuation, tasks) = state.withLock { state -> (CheckedContinuation<T, any Error>?, [Task<Void, Never>]) in
            guard let continuation = state.continuation else {
                // Finished before `begin` stored the continuation: it resumes with this.
                if state.early == nil && state.work == nil { state.early = result }
                return (nil, [])
            }
            state.continuation = nil
            return (continuation, [state.work, state.timer].compactMap { $0 })
        }
        guard let continuation else { return }
        tasks.forEach { $0.cancel() }
        continuation.resume(with: result)
    }

    func cancel() {
        let work = state.withLock { state -> Task<Void, Never>? in
            state.cancelled = true
            return state.work
        }
        work?.cancel()
    }
}

/// Deadlines for many calls at once, watched by one task: what apply gives each of thousands of
/// actions, where a timer task per call (as `withDeadline` has) costs about as much as the call.
/// A deadline fires within a tenth of a second of its time.
public final class DeadlineWatch: Sendable {
    private struct Entry: Sendable {
        var deadline: ContinuousClock.Instant
        var expire: @Sendable () -> Void
    }
    private struct State {
        var entries: [Int: Entry] = [:]
        var next = 0
        var watching = false
    }
    private let state = Mutex(State())

    public init() {}

    /// As `withDeadline`: `body`'s result, or a `SystemError` (timed out) naming `what` once
    /// `limit` has passed, even when the body cannot end yet (it is cancelled and left to finish).
    public func run<T: Sendable>(_ limit: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let race = DeadlineRace<T>()
        let id = register(ContinuousClock.now + limit) { race.finish(.failure(DeadlineRace<T>.timedOut(what, limit))) }
        defer { state.withLock { _ = $0.entries.removeValue(forKey: id) } }
        return try await race.run(body) { nil }
    }

    private func register(_ deadline: ContinuousClock.Instant, expire: @escaping @Sendable () -> Void) -> Int {
        let (id, start) = state.withLock { state -> (Int, Bool) in
            let id = state.next
            state.next += 1
            state.entries[id] = Entry(deadline: deadline, expire: expire)
            defer { state.watching = true }
            return (id, !state.watching)
        }
        if start { Task { await watch() } }
        return id
    }

    /// Wakes ten times a second while there are deadlines, and stops when there are none.
    private func watch() async {
        while true {
            try? await Task.sleep(for: .milliseconds(100))
            let now = ContinuousClock.now
            let (due, done) = state.withLock { state -> ([Entry], Bool) in
                let due = state.entries.filter { $0.value.deadline <= now }
                for key in due.keys { state.entries[key] = nil }
                if state.entries.isEmpty { state.watching = false }
                return (Array(due.values), state.entries.isEmpty)
            }
            for entry in due { entry.expire() }
            if done { return }
        }
    }
}
