import Foundation

/// A pool of dedicated threads for blocking C calls (libvirt's API, libiscsi's `*_sync`).
///
/// Such calls block their thread for a network round trip (a libvirt RPC, an iSCSI login) or
/// for seconds (a migration). They must never occupy Swift's cooperative pool (which has one thread per core, two on the lab machine). Dispatch's
/// concurrent queues are no substitute on Linux: without kernel workqueues, libdispatch only
/// slowly grows its pool past the core count when threads block, so eight calls "in flight"
/// would in practice run two at a time. Threads are created as calls need them, up to
/// `maxThreads`, and live for the process.
///
/// Each call may name a key — the system it talks to (a libvirt URI, an iSCSI portal). At most
/// `perKey` calls of one key run at once; the rest wait, so a system that stops answering holds
/// at most `perKey` threads and calls to healthy systems keep running.
public final class BlockingThreadPool: @unchecked Sendable {
    public typealias Job = @Sendable () -> Void

    /// The pool every blocking call of the process uses (libvirt, libiscsi).
    /// Sixteen threads in all, as many calls as this machine's daemons serve best at once; a
    /// few more are added only while every thread is taken, so that a key that hangs (at most
    /// eight threads) leaves room for the rest.
    public static let shared = BlockingThreadPool(threadCount: 16, name: "blocking", perKey: 8, maxThreads: 24)

    private struct Entry {
        var key: String?
        var job: Job?
    }

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var pending: [Entry] = []
    private var running: [String: Int] = [:]
    /// Keys allowed fewer calls at once than `perKey`.
    private var limits: [String: Int] = [:]
    private var threads = 0
    private var idle = 0
    private let perKey: Int
    private let maxThreads: Int
    private let name: String

    /// `threadCount` threads start at once; more are added while every thread is busy, up to
    /// `maxThreads` (at least `threadCount`).
    public init(threadCount: Int, name: String, perKey: Int = .max, maxThreads: Int? = nil) {
        precondition(threadCount > 0 && perKey > 0)
        self.name = name
        self.perKey = perKey
        self.maxThreads = max(threadCount, maxThreads ?? threadCount)
        condition.lock()
        for _ in 0..<threadCount { startThread() }
        condition.unlock()
    }

    /// Runs `body` on one of the pool's threads and returns its result.
    public func run<T: Sendable>(key: String? = nil, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            submit(key: key) { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Lets at most `count` calls of `key` run at once from now on (fewer than `perKey`: a
    /// client that must not be called from two threads at a time).
    public func limit(key: String, to count: Int) {
        precondition(count > 0)
        condition.lock()
        limits[key] = min(count, perKey)
        condition.unlock()
    }

    /// Queues `job` to run on one of the pool's threads, counted against `key`.
    public func submit(key: String? = nil, _ job: @escaping Job) {
        condition.lock()
        pending.append(Entry(key: key, job: job))
        if idle == 0 && threads < maxThreads { startThread() }
        condition.unlock()
        // One thread is enough: if the job's key is full, the thread that finishes a job of
        // that key takes it next (see `workerLoop`).
        condition.signal()
    }

    /// Starts a worker; the caller holds the lock.
    private func startThread() {
        let thread = Thread { self.workerLoop() }
        thread.name = "\(name)-\(threads)"
        threads += 1
        thread.start()
    }

    /// The oldest job whose key has room, taken out of the queue and counted; waits for one.
    /// The job's closure is moved out before the entry goes, so that no closure is released
    /// under the lock: releasing one can run a deinit (Connection's) that submits a job, which
    /// would deadlock on this non-recursive lock.
    private func nextJob() -> (key: String?, job: Job) {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let index = pending.firstIndex(where: { $0.key.map { (running[$0] ?? 0) < (limits[$0] ?? perKey) } ?? true }) {
                let job = pending[index].job.take()!
                let key = pending[index].key
                pending.remove(at: index)
                if let key { running[key, default: 0] += 1 }
                return (key, job)
            }
            idle += 1
            condition.wait()
            idle -= 1
        }
    }

    /// Counts the job of `key` as done; the same thread then looks for its next job, which may
    /// be one of that key that was waiting.
    private func finished(_ key: String?) {
        guard let key else { return }
        condition.lock()
        let left = running[key, default: 1] - 1
        running[key] = left == 0 ? nil : left
        condition.unlock()
    }

    private func workerLoop() -> Never {
        while true {
            let (key, job) = nextJob()
            job()
            finished(key)
        }
    }
}

extension Optional {
    /// The value, leaving nil behind.
    fileprivate mutating func take() -> Wrapped? {
        defer { self = nil }
        return self
    }
}
