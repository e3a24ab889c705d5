import Foundation

/// A fixed pool of dedicated threads for blocking C calls (libvirt's API, libiscsi's `*_sync`).
///
/// Such calls block their thread for a network round trip (a libvirt RPC, an iSCSI login) or
/// for seconds (a migration). They must never occupy Swift's cooperative pool (which has one thread per core, two on the lab machine). Dispatch's
/// concurrent queues are no substitute on Linux: without kernel workqueues, libdispatch only
/// slowly grows its pool past the core count when threads block, so eight calls "in flight"
/// would in practice run two at a time. These threads are created once and live for the process.
public final class BlockingThreadPool: @unchecked Sendable {
    public typealias Job = @Sendable () -> Void

    // Guarded by `condition`.
    private let condition = NSCondition()
    // Slots are emptied as jobs are taken, so that compacting the array under the lock never
    // releases a closure: releasing one can run a deinit (e.g. Connection's) that submits a job,
    // which would deadlock on this non-recursive lock.
    private var queue: [Job?] = []
    private var head = 0

    public init(threadCount: Int, name: String) {
        precondition(threadCount > 0)
        for index in 0..<threadCount {
            let thread = Thread { self.workerLoop() }
            thread.name = "\(name)-\(index)"
            thread.start()
        }
    }

    /// Runs `body` on one of the pool's threads and returns its result.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            submit { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Queues `job` to run on one of the pool's threads.
    public func submit(_ job: @escaping Job) {
        condition.lock()
        queue.append(job)
        condition.unlock()
        condition.signal()
    }

    private func nextJob() -> Job {
        condition.lock()
        defer { condition.unlock() }
        while head == queue.count {
            condition.wait()
        }
        let job = queue[head].take()!
        head += 1
        // Compact once the consumed prefix dominates, so the array does not grow forever.
        if head == queue.count {
            queue.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 1024 && head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
        }
        return job
    }

    private func workerLoop() -> Never {
        while true {
            let job = nextJob()
            job()
        }
    }
}
