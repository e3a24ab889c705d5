import Dispatch
import Testing
import VirtformSystem

@Suite("Deadlines")
struct DeadlineTests {
    @Test func aBodyThatIgnoresCancellationDoesNotHoldTheCallerPastTheDeadline() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        // Resumes after 10 s whatever happens, as a blocking C call on a thread of its own would.
        let error = await #expect(throws: SystemError.self) {
            try await withDeadline(.milliseconds(100), "a stuck call") {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    DispatchQueue.global().asyncAfter(deadline: .now() + 10) { continuation.resume() }
                }
            }
        }
        #expect(error?.timedOut == true)
        // Well before the body ends, with room for a loaded machine (the whole suite starts at once).
        #expect(clock.now - start < .seconds(5), "returned at the deadline, not when the body ended")
    }

    /// A cancellation that arrives while the race is being set up (Ctrl-C the moment an action
    /// starts) still reaches the body, for both kinds of deadline.
    @Test func aCancellationThatComesFirstStillReachesTheBody() async throws {
        let watch = DeadlineWatch()
        for round in 0..<100 {
            let task = Task {
                if round.isMultiple(of: 2) {
                    try await withDeadline(.seconds(60), "wait") { try await Task.sleep(for: .seconds(60)) }
                } else {
                    try await watch.run(.seconds(60), "wait") { try await Task.sleep(for: .seconds(60)) }
                }
            }
            task.cancel()
            let start = ContinuousClock.now
            _ = await task.result
            #expect(ContinuousClock.now - start < .seconds(10), "round \(round): the body never saw the cancellation")
        }
    }

    @Test func aBodyThatFinishesInTimeGivesItsResultOrItsError() async throws {
        #expect(try await withDeadline(.seconds(5), "quick") { 42 } == 42)
        struct Failure: Error {}
        await #expect(throws: Failure.self) { try await withDeadline(.seconds(5), "failing") { throw Failure() } }
    }

    /// One watcher for many deadlines: quick calls give their results, a stuck one among them
    /// fails at its deadline (within the watcher's tenth of a second), and later calls still work.
    @Test func oneWatchKeepsTheDeadlinesOfManyCalls() async throws {
        let watch = DeadlineWatch()
        let sum = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<200 { group.addTask { try await watch.run(.seconds(5), "call \(i)") { i } } }
            return try await group.reduce(0, +)
        }
        #expect(sum == 199 * 200 / 2)
        let clock = ContinuousClock()
        let start = clock.now
        let error = await #expect(throws: SystemError.self) {
            try await watch.run(.milliseconds(200), "a stuck call") {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    DispatchQueue.global().asyncAfter(deadline: .now() + 10) { continuation.resume() }
                }
            }
        }
        #expect(error?.timedOut == true && error?.message.contains("a stuck call") == true)
        // Well before the body ends, with room for a loaded machine (the whole suite starts at once).
        #expect(clock.now - start < .seconds(5), "returned at the deadline, not when the body ended")
        #expect(try await watch.run(.seconds(5), "after") { "still works" } == "still works")
    }
}

@Suite("Blocking thread pool")
struct BlockingThreadPoolTests {
    @Test func aKeyWhoseCallsHangHoldsAtMostItsShareOfTheThreads() async throws {
        let pool = BlockingThreadPool(threadCount: 2, name: "test-pool", perKey: 2, maxThreads: 4)
        let gate = DispatchSemaphore(value: 0)
        // Six calls to a system that does not answer: only two of them may hold a thread.
        for _ in 0..<6 { pool.submit(key: "frozen") { gate.wait() } }
        defer { for _ in 0..<6 { gate.signal() } }
        // Every thread would be taken without the cap; with it, another system's call runs.
        let answer = try await withDeadline(.seconds(10), "a call to a healthy system") {
            try await pool.run(key: "healthy") { 42 }
        }
        #expect(answer == 42)
    }

    @Test func callsWithoutAKeyAndOfManyKeysAllRun() async throws {
        let pool = BlockingThreadPool(threadCount: 1, name: "test-pool-2", perKey: 1, maxThreads: 3)
        let results = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<20 { group.addTask { try await pool.run(key: i % 2 == 0 ? nil : "k\(i % 3)") { i } } }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(results.sorted() == Array(0..<20))
    }
}
