import Testing
@testable import VirtformExecution

@Suite struct ActionGraphTests {
    private static func node(_ id: String, _ deps: [String] = []) -> ActionGraph<String>.Node {
        .init(id: id, label: id, dependencies: deps) {}
    }

    @Test func acceptsAValidGraph() throws {
        let graph = try ActionGraph([Self.node("a"), Self.node("b", ["a"]), Self.node("c", ["a", "b", "a"])])
        #expect(graph.count == 3)
        #expect(graph.node("c")?.dependencies == ["a", "b", "a"])
        #expect(graph.dependencyIndices[2] == [0, 1])  // deduplicated
    }

    @Test func rejectsUnknownDependenciesAllAtOnce() {
        #expect {
            try ActionGraph([Self.node("a", ["x"]), Self.node("b", ["a", "y"])])
        } throws: { error in
            guard let error = error as? ExecutionError else { return false }
            return error.code == .unknownDependency && error.nodes == ["x", "y"]
                && error.message.contains("node a depends on unknown node x")
                && error.message.contains("node b depends on unknown node y")
        }
    }

    @Test func rejectsDuplicateIDs() {
        #expect {
            try ActionGraph([Self.node("a"), Self.node("a")])
        } throws: { ($0 as? ExecutionError)?.code == .duplicateNode }
    }

    @Test(arguments: [
        // (nodes, expected cycle members)
        ([("a", ["a"])], ["a"]),
        ([("a", ["b"]), ("b", ["a"])], ["a", "b"]),
        ([("root", []), ("a", ["root", "c"]), ("b", ["a"]), ("c", ["b"]), ("tail", ["c"])], ["a", "b", "c"]),
    ])
    func rejectsCyclesNamingTheirIDs(spec: [(String, [String])], cycle: [String]) {
        #expect {
            try ActionGraph(spec.map { Self.node($0.0, $0.1) })
        } throws: { error in
            guard let error = error as? ExecutionError else { return false }
            return error.code == .dependencyCycle && Set(error.nodes) == Set(cycle)
                && error.nodes.count == cycle.count
                && cycle.allSatisfy { error.message.contains($0) }
        }
    }

    @Test func builderBuildsTheSameGraph() throws {
        var builder = ActionGraph<Int>.Builder()
        builder.add(1, group: "hv1", label: "one") {}
        builder.add(2, label: "two", dependsOn: [1]) {}
        let graph = try builder.build()
        #expect(graph.nodes.map(\.id) == [1, 2])
        #expect(graph.node(1)?.group == "hv1")
        #expect(graph.dependentIndices[0] == [1])
    }
}
