import Synchronization

/// Runs an `ActionGraph` (after Terraform's `dag/walk.go`).
///
/// - A node starts once every dependency has succeeded, at most `limits.global` at a time and,
///   for every resource key it counts against, at most that key's limit (`limits.perKey`, or
///   the key's own entry in `limits.keyLimits`). Among ready nodes, the earliest-inserted
///   starts first.
/// - A failed node's dependents, transitively, are skipped: never run, reported once each as
///   skipped because of that node, not as errors of their own. Independent nodes keep running.
/// - When the surrounding task is cancelled, no new node starts; running nodes are awaited
///   (they see the cancellation through their own task); the rest end as `notStarted`.
/// - When its `Drain` is set (a service asked to stop), no new node starts either, but running
///   nodes are not cancelled: they finish as they would have.
public enum Executor {
    /// Asks a run to start nothing new and let what runs finish (a graceful shutdown).
    public final class Drain: Sendable {
        private let requested = Mutex(false)
        private let parents: [Drain]
        /// Requested when it is, or when any of `parents` is (a shutdown, a lost lock).
        public init(any parents: [Drain] = []) { self.parents = parents }
        public func request() { requested.withLock { $0 = true } }
        public var isRequested: Bool { requested.withLock { $0 } || parents.contains { $0.isRequested } }
    }

    /// Progress, delivered one at a time from the executor's own task, in the order it happened.
    public enum Event<ID: Hashable & Sendable>: Sendable, Equatable {
        case started(id: ID, label: String)
        case succeeded(id: ID, duration: Duration)
        case failed(id: ID, error: String)
        case skipped(id: ID, because: ID)
    }

    /// How one node ended.
    public enum Outcome<ID: Hashable & Sendable>: Sendable, Equatable {
        case succeeded
        /// The body threw; the message is the error's description.
        case failed(String)
        /// Not run because `cause`, an ancestor, failed.
        case skipped(cause: ID)
        /// Not run because the run was cancelled first.
        case notStarted
    }

    /// The result of a run: every node's outcome, counts and wall time.
    public struct Summary<ID: Hashable & Sendable>: Sendable {
        /// Node ids in graph insertion order, for rendering outcomes stably.
        public let order: [ID]
        public let outcomes: [ID: Outcome<ID>]
        /// Wall time of the whole run.
        public let duration: Duration
        /// Whether the surrounding task was cancelled during the run.
        public let wasCancelled: Bool

        public var succeeded: Int { count { $0 == .succeeded } }
        public var failed: Int { count { if case .failed = $0 { true } else { false } } }
        public var skipped: Int { count { if case .skipped = $0 { true } else { false } } }
        public var notStarted: Int { count { $0 == .notStarted } }
        /// Nodes that ran to success (same as `succeeded`).
        public var done: Int { succeeded }
        /// Every node succeeded.
        public var isSuccess: Bool { succeeded == order.count }

        public subscript(id: ID) -> Outcome<ID>? { outcomes[id] }

        private func count(where predicate: (Outcome<ID>) -> Bool) -> Int {
            outcomes.values.reduce(0) { predicate($1) ? $0 + 1 : $0 }
        }
    }

    /// How many nodes may run at once: in all, and per resource key.
    public struct Limits: Sendable {
        public var global: Int
        /// For every key without an entry in `keyLimits`.
        public var perKey: Int
        public var keyLimits: [String: Int]

        public init(global: Int, perKey: Int, keyLimits: [String: Int] = [:]) {
            self.global = global
            self.perKey = perKey
            self.keyLimits = keyLimits
        }
    }

    /// Runs `graph` with one limit for every key (a node's keys are its groups).
    public static func run<ID: Hashable & Sendable>(
        _ graph: ActionGraph<ID>,
        limits: (global: Int, perGroup: Int),
        progress: @Sendable (Event<ID>) -> Void = { _ in }
    ) async -> Summary<ID> {
        await run(graph, limits: Limits(global: limits.global, perKey: limits.perGroup), progress: progress)
    }

    /// Runs `graph` to the end (or until cancelled) and returns what happened to each node.
    /// Limits below 1 are treated as 1. Never throws: failures are outcomes.
    public static func run<ID: Hashable & Sendable>(
        _ graph: ActionGraph<ID>,
        limits: Limits,
        drain: Drain? = nil,
        progress: @Sendable (Event<ID>) -> Void = { _ in }
    ) async -> Summary<ID> {
        let clock = ContinuousClock()
        let startedAt = clock.now
        let globalLimit = max(1, limits.global)
        let nodes = graph.nodes

        // Keys become small integers.
        var keyIndexByName: [String: Int] = [:]
        var keyLimit: [Int] = []
        let keysOf: [[Int]] = nodes.map { node in
            node.keys.map { name in
                if let index = keyIndexByName[name] { return index }
                let index = keyIndexByName.count
                keyIndexByName[name] = index
                keyLimit.append(max(1, limits.keyLimits[name] ?? limits.perKey))
                return index
            }
        }

        var state = Array(repeating: NodeState.pending, count: nodes.count)
        var waitingOn = graph.dependencyIndices.map(\.count)
        var ready = MinHeap()
        // Ready nodes that found a key full when they came up, parked on that key; one moves
        // back to `ready` each time a node counting against the key finishes.
        var parked = Array(repeating: MinHeap(), count: keyIndexByName.count)
        var runningWithKey = Array(repeating: 0, count: keyIndexByName.count)
        var running = 0
        var cancelled = false
        for index in nodes.indices where waitingOn[index] == 0 { ready.insert(index) }

        await withTaskGroup(of: Completion.self) { tasks in
            while true {
                if !cancelled, Task.isCancelled || drain?.isRequested == true { cancelled = true }
                if !cancelled {
                    while running < globalLimit, let index = ready.popMin() {
                        if let full = keysOf[index].first(where: { runningWithKey[$0] >= keyLimit[$0] }) {
                            parked[full].insert(index)
                            continue
                        }
                        state[index] = .running
                        running += 1
                        for key in keysOf[index] { runningWithKey[key] += 1 }
                        progress(.started(id: nodes[index].id, label: nodes[index].label))
                        let body = nodes[index].body
                        tasks.addTask {
                            let begin = ContinuousClock.now
                            do {
                                try await body()
                                return Completion(index: index, error: nil, duration: .now - begin)
                            } catch {
                                return Completion(index: index, error: error, duration: .now - begin)
                            }
                        }
                    }
                }
                guard running > 0, let completion = await tasks.next() else { break }

                let index = completion.index
                running -= 1
                for key in keysOf[index] {
                    runningWithKey[key] -= 1
                    if let next = parked[key].popMin() { ready.insert(next) }
                }

                if let error = completion.error {
                    let message = String(describing: error)
                    state[index] = .failed(message)
                    progress(.failed(id: nodes[index].id, error: message))
                    for skippedIndex in skipDependents(of: index, graph: graph, state: &state) {
                        progress(.skipped(id: nodes[skippedIndex].id, because: nodes[index].id))
                    }
                } else {
                    state[index] = .succeeded
                    progress(.succeeded(id: nodes[index].id, duration: completion.duration))
                    for dependent in graph.dependentIndices[index] {
                        waitingOn[dependent] -= 1
                        if waitingOn[dependent] == 0 { ready.insert(dependent) }
                    }
                }
            }
        }

        var outcomes: [ID: Outcome<ID>] = [:]
        outcomes.reserveCapacity(nodes.count)
        for (index, node) in nodes.enumerated() {
            switch state[index] {
            case .succeeded: outcomes[node.id] = .succeeded
            case .failed(let message): outcomes[node.id] = .failed(message)
            case .skipped(let cause): outcomes[node.id] = .skipped(cause: nodes[cause].id)
            // `running` cannot remain: the loop only ends once nothing is running.
            case .pending, .running: outcomes[node.id] = .notStarted
            }
        }
        return Summary(
            order: nodes.map(\.id), outcomes: outcomes, duration: clock.now - startedAt,
            wasCancelled: cancelled || Task.isCancelled)
    }

    private enum NodeState {
        case pending, running, succeeded
        case failed(String)
        case skipped(cause: Int)
    }

    private struct Completion: Sendable {
        let index: Int
        let error: (any Error)?
        let duration: Duration
    }

    /// Marks every pending transitive dependent of `failed` as skipped because of it and
    /// returns them in insertion order. Already-skipped nodes are not walked again: their
    /// dependents were skipped with them.
    private static func skipDependents<ID>(
        of failed: Int, graph: ActionGraph<ID>, state: inout [NodeState]
    ) -> [Int] {
        var skipped: [Int] = []
        var stack = graph.dependentIndices[failed]
        while let index = stack.popLast() {
            guard case .pending = state[index] else { continue }
            state[index] = .skipped(cause: failed)
            skipped.append(index)
            stack.append(contentsOf: graph.dependentIndices[index])
        }
        return skipped.sorted()
    }
}
