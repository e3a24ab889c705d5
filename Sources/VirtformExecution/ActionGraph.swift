/// A validated set of actions and the dependencies between them.
///
/// Construction rejects duplicate ids, dependencies on unknown ids and cycles, so a value of
/// this type can always be run to completion. Node order is insertion order; the executor
/// starts ready nodes in that order, which keeps output stable.
public struct ActionGraph<ID: Hashable & Sendable>: Sendable {
    /// One action: what it is called, where it runs, what it waits for and what it does.
    public struct Node: Sendable {
        public let id: ID
        /// The resources the node counts against (a source host, a destination host, an
        /// export server); each key has a limit of its own. No keys: only the global limit binds.
        public let keys: [String]
        /// The first key: the node's place in progress output.
        public var group: String? { keys.first }
        /// A human label for progress output, e.g. "create domain web-1 on hv1".
        public let label: String
        /// Ids that must all succeed before this node starts.
        public let dependencies: [ID]
        public let body: @Sendable () async throws -> Void

        public init(
            id: ID, group: String? = nil, label: String, dependencies: [ID] = [],
            body: @escaping @Sendable () async throws -> Void
        ) {
            self.init(id: id, keys: group.map { [$0] } ?? [], label: label, dependencies: dependencies, body: body)
        }

        public init(
            id: ID, keys: [String], label: String, dependencies: [ID] = [],
            body: @escaping @Sendable () async throws -> Void
        ) {
            self.id = id
            self.keys = keys
            self.label = label
            self.dependencies = dependencies
            self.body = body
        }
    }

    /// Collects nodes, then validates them all at once in `build()`.
    public struct Builder: Sendable {
        private var nodes: [Node] = []

        public init() {}

        public mutating func add(
            _ id: ID, group: String? = nil, label: String, dependsOn dependencies: [ID] = [],
            body: @escaping @Sendable () async throws -> Void
        ) {
            nodes.append(Node(id: id, group: group, label: label, dependencies: dependencies, body: body))
        }

        /// A node that counts against every one of `keys`.
        public mutating func add(
            _ id: ID, keys: [String], label: String, dependsOn dependencies: [ID] = [],
            body: @escaping @Sendable () async throws -> Void
        ) {
            nodes.append(Node(id: id, keys: keys, label: label, dependencies: dependencies, body: body))
        }

        public func build() throws(ExecutionError) -> ActionGraph {
            try ActionGraph(nodes)
        }
    }

    /// The nodes in insertion order.
    public let nodes: [Node]
    /// Position of each id in `nodes`.
    let indexByID: [ID: Int]
    /// For each node, the positions of its (deduplicated) dependencies.
    let dependencyIndices: [[Int]]
    /// For each node, the positions of the nodes that depend on it, ascending.
    let dependentIndices: [[Int]]

    /// Validates `nodes`: ids unique, every dependency known, no cycle.
    /// Unknown dependencies are all reported in one error.
    public init(_ nodes: [Node]) throws(ExecutionError) {
        var indexByID: [ID: Int] = [:]
        indexByID.reserveCapacity(nodes.count)
        for (index, node) in nodes.enumerated() {
            if indexByID.updateValue(index, forKey: node.id) != nil {
                throw ExecutionError(
                    .duplicateNode, "duplicate node id \(node.id)", nodes: ["\(node.id)"])
            }
        }

        var unknown: [(node: ID, dependency: ID)] = []
        var dependencyIndices: [[Int]] = []
        dependencyIndices.reserveCapacity(nodes.count)
        for node in nodes {
            var seen = Set<Int>()
            var indices: [Int] = []
            for dependency in node.dependencies {
                guard let index = indexByID[dependency] else {
                    unknown.append((node.id, dependency))
                    continue
                }
                if seen.insert(index).inserted { indices.append(index) }
            }
            dependencyIndices.append(indices)
        }
        if !unknown.isEmpty {
            let lines = unknown.map { "node \($0.node) depends on unknown node \($0.dependency)" }
            throw ExecutionError(
                .unknownDependency, lines.joined(separator: "; "),
                nodes: unknown.map { "\($0.dependency)" })
        }

        var dependentIndices = Array(repeating: [Int](), count: nodes.count)
        for (index, dependencies) in dependencyIndices.enumerated() {
            for dependency in dependencies { dependentIndices[dependency].append(index) }
        }

        if let cycle = Self.findCycle(dependencyIndices: dependencyIndices, dependentIndices: dependentIndices) {
            let ids = cycle.map { "\(nodes[$0].id)" }
            throw ExecutionError(
                .dependencyCycle,
                "dependency cycle: \((ids + [ids[0]]).joined(separator: " → ")) (→ means depends on)",
                nodes: ids)
        }

        self.nodes = nodes
        self.indexByID = indexByID
        self.dependencyIndices = dependencyIndices
        self.dependentIndices = dependentIndices
    }

    public var count: Int { nodes.count }

    public func node(_ id: ID) -> Node? {
        indexByID[id].map { nodes[$0] }
    }

    /// Kahn's algorithm; if nodes remain, each has a remaining dependency, so following
    /// remaining dependencies from any of them must revisit a node: that loop is a cycle.
    /// Iterative, so deep chains cannot overflow the stack.
    private static func findCycle(dependencyIndices: [[Int]], dependentIndices: [[Int]]) -> [Int]? {
        var pending = dependencyIndices.map(\.count)
        var queue = pending.indices.filter { pending[$0] == 0 }
        var head = 0
        while head < queue.count {
            let node = queue[head]
            head += 1
            for dependent in dependentIndices[node] {
                pending[dependent] -= 1
                if pending[dependent] == 0 { queue.append(dependent) }
            }
        }
        guard queue.count < dependencyIndices.count,
              var current = pending.firstIndex(where: { $0 > 0 })
        else { return nil }

        var positionInPath: [Int: Int] = [:]
        var path: [Int] = []
        while positionInPath[current] == nil {
            positionInPath[current] = path.count
            path.append(current)
            // A dependency with pending > 0 was never released, so it is itself blocked.
            guard let next = dependencyIndices[current].first(where: { pending[$0] > 0 }) else {
                return path // unreachable by construction; report what was walked
            }
            current = next
        }
        return Array(path[positionInPath[current]!...])
    }
}
