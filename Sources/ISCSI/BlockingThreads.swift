import Foundation

/// A small fixed pool of dedicated threads for libiscsi's blocking `*_sync` calls.
///
/// A sync call blocks its thread for a network round trip (or until the context's timeout), so
/// it must never run on Swift's cooperative pool, which has one thread per core. The idea is the
/// one of the Libvirt module's executor; this module keeps its own so it depends on nothing but
/// libiscsi. Threads are created on first use and live for the process.
final class BlockingThreads: @unchecked Sendable {
    static let shared = BlockingThreads(threadCount: 4, name: "iscsi")

    typealias Job = @Sendable () -> Void

    // Guarded by `condition`. Slots are emptied as jobs are taken so that compacting the array
    // under the lock never releases a closure (a released closure may run a deinit that submits).
    private let condition = NSCondition()
    private var queue: [Job?] = []
    private var head = 0

    private init(threadCount: Int, name: String) {
        for index in 0..<threadCount {
            let thread = Thread { [unowned self] in self.workerLoop() }
            thread.name = "\(name)-\(index)"
            thread.start()
        }
    }

    /// Runs `body` on one of the pool's threads and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            submit { continuation.resume(with: Result { try body() }) }
        }
    }

    private func submit(_ job: @escaping Job) {
        condition.lock()
        queue.append(job)
        condition.unlock()
        condition.signal()
    }

    private func nextJob() -> Job {
        condition.lock()
        defer { condition.unlock() }
        while head == queue.count { condition.wait() }
        let job = queue[head].take()!
        head += 1
        if head == queue.count {
            queue.removeAll(keepingCapacity: true)
            head = 0
        }
        return job
    }

    private func workerLoop() -> Never {
        while true { nextJob()() }
    }
}
