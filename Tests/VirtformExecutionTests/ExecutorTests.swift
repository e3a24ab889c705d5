import Synchronization
import Testing
import VirtformExecution

/// Collects progress events from the executor.
final class EventLog<ID: Hashable & Sendable>: Sendable {
    private let storage = Mutex<[Executor.Event<ID>]>([])
    var events: [Executor.Event<ID>] { storage.withLock { $0 } }
    func record(_ event: Executor.Event<ID>) { storage.withLock { $0.append(event) } }

    var started: [ID] {
        events.compactMap { if case .started(let id, _) = $0 { id } else { nil } }
    }
    var failed: [ID] {
        events.compactMap { if case .failed(let id, _) = $0 { id } else { nil } }
    }
    var skipped: [(ID, ID)] {
        events.compactMap { if case .skipped(let id, let cause) = $0 { (id, cause) } else { nil } }
    }
    func position(ofSucceeded id: ID) -> Int? {
        events.firstIndex { if case .succeeded(id, _) = $0 { true } else { false } }
    }
    func position(ofStarted id: ID) -> Int? {
        events.firstIndex { if case .started(id, _) = $0 { true } else { false } }
    }
}

/// Tracks how many bodies run at once, per group and overall.
final class ConcurrencyTracker: Sendable {
    private struct Counts { var current: [String: Int] = [:]; var maximum: [String: Int] = [:] }
    private let counts = Mutex(Counts())

    func enter(_ group: String) {
        counts.withLock {
            for key in [group, "*"] {
                $0.current[key, default: 0] += 1
                $0.maximum[key] = max($0.maximum[key, default: 0], $0.current[key]!)
            }
        }
    }
    func leave(_ group: String) {
        counts.withLock { for key in [group, "*"] { $0.current[key, default: 0] -= 1 } }
    }
    func maximum(_ group: String) -> Int { counts.withLock { $0.maximum[group, default: 0] } }
    func current(_ group: String) -> Int { counts.withLock { $0.current[group, default: 0] } }
}

struct Failure: Error, CustomStringConvertible {
    let description: String
}

@Suite struct ExecutorTests {
    @Test func diamondRunsInDependencyAndInsertionOrder() async throws {
        var builder = ActionGraph<String>.Builder()
        builder.add("a", label: "A") {}
        builder.add("b", label: "B", dependsOn: ["a"]) {}
        builder.add("c", label: "C", dependsOn: ["a"]) {}
        builder.add("d", label: "D", dependsOn: ["b", "c"]) {}
        let graph = try builder.build()

        // One at a time: fully deterministic.
        let serial = EventLog<String>()
        let summary = await Executor.run(graph, limits: (global: 1, perGroup: 1), progress: serial.record)
        #expect(serial.started == ["a", "b", "c", "d"])
        #expect(summary.isSuccess && summary.succeeded == 4 && summary.done == 4)
        #expect(summary.order == ["a", "b", "c", "d"])
        #expect(serial.events.first == .started(id: "a", label: "A"))

        // In parallel: d only after b and c succeeded.
        let parallel = EventLog<String>()
        let second = await Executor.run(graph, limits: (global: 8, perGroup: 8), progress: parallel.record)
        #expect(second.isSuccess)
        let d = try #require(parallel.position(ofStarted: "d"))
        #expect(try #require(parallel.position(ofSucceeded: "b")) < d)
        #expect(try #require(parallel.position(ofSucceeded: "c")) < d)
        #expect(try #require(parallel.position(ofSucceeded: "a")) < #require(parallel.position(ofStarted: "b")))
    }

    @Test func failureSkipsTransitiveDependentsOnly() async throws {
        var builder = ActionGraph<String>.Builder()
        builder.add("a", label: "a") {}
        builder.add("b", label: "b", dependsOn: ["a"]) { throw Failure(description: "disk full on hv1") }
        builder.add("c", label: "c", dependsOn: ["b"]) { Issue.record("c must not run") }
        builder.add("d", label: "d", dependsOn: ["c", "e"]) { Issue.record("d must not run") }
        builder.add("e", label: "e", dependsOn: ["a"]) {}
        builder.add("f", label: "f") {}
        builder.add("g", label: "g", dependsOn: ["f"]) {}
        let graph = try builder.build()

        let log = EventLog<String>()
        let summary = await Executor.run(graph, limits: (global: 4, perGroup: 4), progress: log.record)

        #expect(summary["b"] == .failed("disk full on hv1"))
        #expect(summary["c"] == .skipped(cause: "b"))
        #expect(summary["d"] == .skipped(cause: "b"))
        for id in ["a", "e", "f", "g"] { #expect(summary[id] == .succeeded) }
        #expect(summary.failed == 1 && summary.skipped == 2 && summary.succeeded == 4)
        #expect(summary.notStarted == 0 && !summary.isSuccess && !summary.wasCancelled)
        #expect(log.failed == ["b"])  // dependents are not separate errors
        #expect(log.skipped.map(\.0) == ["c", "d"] && log.skipped.allSatisfy { $0.1 == "b" })
        #expect(!log.started.contains("c") && !log.started.contains("d"))
    }

    @Test func firstFailedAncestorIsTheSkipCause() async throws {
        var builder = ActionGraph<Int>.Builder()
        builder.add(1, label: "1") { throw Failure(description: "one") }
        builder.add(2, label: "2", dependsOn: [1]) {}
        builder.add(3, label: "3", dependsOn: [2]) {}
        let summary = await Executor.run(try builder.build(), limits: (global: 2, perGroup: 2))
        #expect(summary[2] == .skipped(cause: 1) && summary[3] == .skipped(cause: 1))
    }

    @Test(arguments: [1, 2, 3])
    func perGroupLimitIsRespected(limit: Int) async throws {
        let tracker = ConcurrencyTracker()
        var builder = ActionGraph<String>.Builder()
        for host in ["hv1", "hv2", "hv3"] {
            for n in 0..<12 {
                builder.add("\(host)-\(n)", group: host, label: "work on \(host)") {
                    tracker.enter(host)
                    defer { tracker.leave(host) }
                    try await Task.sleep(for: .milliseconds(2))
                }
            }
        }
        let summary = await Executor.run(try builder.build(), limits: (global: 100, perGroup: limit))
        #expect(summary.isSuccess && summary.succeeded == 36)
        for host in ["hv1", "hv2", "hv3"] {
            #expect((1...limit).contains(tracker.maximum(host)))
            #expect(tracker.current(host) == 0)
        }
    }

    /// A migration counts against its source host, its destination host and the cluster's
    /// migration limit at once; each key keeps its own limit.
    @Test func aNodeCountsAgainstEveryOneOfItsKeys() async throws {
        let tracker = ConcurrencyTracker()
        var builder = ActionGraph<String>.Builder()
        for n in 0..<12 {
            let (source, destination) = n % 2 == 0 ? ("hv1", "hv2") : ("hv2", "hv3")
            builder.add("move-\(n)", keys: [source, destination, "migrations"], label: "move \(n)") {
                for key in [source, destination, "migrations"] { tracker.enter(key) }
                defer { for key in [source, destination, "migrations"] { tracker.leave(key) } }
                try await Task.sleep(for: .milliseconds(2))
            }
        }
        for n in 0..<6 {
            builder.add("other-\(n)", keys: ["hv3"], label: "other \(n)") {
                tracker.enter("hv3")
                defer { tracker.leave("hv3") }
                try await Task.sleep(for: .milliseconds(2))
            }
        }
        let limits = Executor.Limits(global: 100, perKey: 3, keyLimits: ["migrations": 2])
        let summary = await Executor.run(try builder.build(), limits: limits)
        #expect(summary.isSuccess && summary.succeeded == 18)
        #expect((1...2).contains(tracker.maximum("migrations")))
        for host in ["hv1", "hv2", "hv3"] { #expect((1...3).contains(tracker.maximum(host))) }
    }

    @Test func globalLimitIsRespected() async throws {
        let tracker = ConcurrencyTracker()
        var builder = ActionGraph<Int>.Builder()
        for n in 0..<60 {
            // Mix of grouped and ungrouped nodes; the global limit binds both.
            let group: String? = n.isMultiple(of: 2) ? "hv\(n % 6)" : nil
            builder.add(n, group: group, label: "\(n)") {
                tracker.enter("x")
                defer { tracker.leave("x") }
                try await Task.sleep(for: .milliseconds(1))
            }
        }
        let summary = await Executor.run(try builder.build(), limits: (global: 3, perGroup: 10))
        #expect(summary.isSuccess)
        #expect((1...3).contains(tracker.maximum("*")))
    }

    @Test func limitsBelowOneActAsOne() async throws {
        let tracker = ConcurrencyTracker()
        var builder = ActionGraph<Int>.Builder()
        for n in 0..<5 {
            builder.add(n, label: "\(n)") {
                tracker.enter("x")
                defer { tracker.leave("x") }
                await Task.yield()
            }
        }
        let summary = await Executor.run(try builder.build(), limits: (global: 0, perGroup: -1))
        #expect(summary.isSuccess && tracker.maximum("*") == 1)
    }

    @Test func cancellationStopsNewWorkAndAwaitsRunningNodes() async throws {
        let (started, startedContinuation) = AsyncStream<Void>.makeStream()
        let finishedRunning = Mutex(false)
        var builder = ActionGraph<String>.Builder()
        builder.add("slow", label: "slow") {
            startedContinuation.yield()
            // Runs until cancelled, bounded by a deadline so a bug cannot hang the suite.
            let deadline = ContinuousClock.now + .seconds(30)
            while !Task.isCancelled, ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(1))
            }
            finishedRunning.withLock { $0 = true }
        }
        builder.add("after", label: "after", dependsOn: ["slow"]) { Issue.record("must not start") }
        for n in 0..<10 {
            builder.add("independent-\(n)", label: "i") { Issue.record("must not start") }
        }
        let graph = try builder.build()
        let log = EventLog<String>()

        let run = Task { await Executor.run(graph, limits: (global: 1, perGroup: 1), progress: log.record) }
        for await _ in started { break }
        run.cancel()
        let summary = await run.value

        #expect(finishedRunning.withLock { $0 })  // the running node was awaited
        #expect(summary["slow"] == .succeeded)
        #expect(summary["after"] == .notStarted)
        #expect(summary.notStarted == 11 && summary.wasCancelled && !summary.isSuccess)
        #expect(log.started == ["slow"])
    }

    @Test func runningAlreadyCancelledStartsNothing() async throws {
        var builder = ActionGraph<Int>.Builder()
        builder.add(1, label: "1") { Issue.record("must not start") }
        let graph = try builder.build()
        let run = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await Executor.run(graph, limits: (global: 4, perGroup: 4))
        }
        let summary = await run.value
        #expect(summary[1] == .notStarted && summary.wasCancelled)
    }

    @Test func emptyGraphSucceeds() async throws {
        let summary = await Executor.run(try ActionGraph<Int>([]), limits: (global: 1, perGroup: 1))
        #expect(summary.isSuccess && summary.order.isEmpty)
    }

    @Test func tenThousandNodesOfChainsAndFansComplete() async throws {
        // 100 chains of 50, 50 fans of a root and 99 leaves, one join on every chain tail.
        let runSequence = Mutex((next: 0, at: [Int: Int]()))
        var builder = ActionGraph<Int>.Builder()
        var dependencies: [Int: [Int]] = [:]
        func add(_ id: Int, _ deps: [Int], group: String?) {
            dependencies[id] = deps
            builder.add(id, group: group, label: "\(id)", dependsOn: deps) {
                runSequence.withLock { $0.at[id] = $0.next; $0.next += 1 }
            }
        }
        var id = 0
        var tails: [Int] = []
        for chain in 0..<100 {
            for link in 0..<50 {
                add(id, link == 0 ? [] : [id - 1], group: "chain\(chain % 7)")
                id += 1
            }
            tails.append(id - 1)
        }
        for _ in 0..<50 {
            let root = id
            add(root, [], group: nil)
            id += 1
            for _ in 0..<99 {
                add(id, [root], group: "fan")
                id += 1
            }
        }
        add(id, tails, group: nil)
        let graph = try builder.build()
        #expect(graph.count == 10_001)

        let summary = await Executor.run(graph, limits: (global: 8, perGroup: 4))
        #expect(summary.isSuccess && summary.succeeded == 10_001)
        let order = runSequence.withLock { $0.at }
        #expect(order.count == 10_001)
        let violations = dependencies.filter { node, deps in deps.contains { order[$0]! >= order[node]! } }
        #expect(violations.isEmpty)
    }
}
