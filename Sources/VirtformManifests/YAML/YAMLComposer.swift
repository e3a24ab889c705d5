import CYAML
import VirtformModel

/// Builds `YAMLNode` trees from libyaml's event stream.
///
/// Written against the C API rather than a YAML library's object model because manifests are
/// untrusted input that must never hang or crash the tool: nesting is limited, alias expansion is
/// counted as the document is read (a "billion laughs" document is refused after its first
/// million nodes, not expanded), mapping keys must be scalars, and duplicate keys are reported
/// with their place. It is also several times faster than building a general-purpose node tree.
public enum YAMLComposer {
    public struct Limits: Sendable {
        /// Deepest nesting of mappings and lists. Manifests need about eight.
        public var maxDepth = 64
        /// Nodes one document may stand for once aliases are expanded.
        public var maxExpandedNodes = 1_000_000

        public init() {}
    }

    public struct Result: Sendable {
        public var documents: [YAMLDocument] = []
        public var diagnostics: [Diagnostic] = []
        /// True when reading stopped early: later documents of the file are unknown.
        public var stoppedEarly = false
    }

    /// Reads every document of `bytes` (UTF-8 or UTF-16 with a BOM).
    public static func compose(_ bytes: [UInt8], file: String, limits: Limits = Limits()) -> Result {
        var composer = Composer(file: file, limits: limits)
        bytes.withUnsafeBufferPointer { composer.run($0) }
        return composer.result
    }
}

private struct Frame {
    var isMapping: Bool
    var items: [YAMLNode] = []
    var pairs: [YAMLNode.Pair] = []
    var pendingKey: YAMLNode?
    var tag: String?
    var anchor: String?
    var line: Int
    var column: Int
    var weight = 1
}

private struct Fatal: Error {
    var line: Int
    var column: Int
    var message: String
}

private struct Composer {
    let file: String
    let limits: YAMLComposer.Limits
    var result = YAMLComposer.Result()

    private var stack: [Frame] = []
    private var anchors: [String: YAMLNode] = [:]
    private var documentStart = SourceLocation(file: "", line: 1, column: 1)
    private var documentRoot: YAMLNode?
    private var documentWeight = 0

    init(file: String, limits: YAMLComposer.Limits) {
        self.file = file
        self.limits = limits
        documentStart = SourceLocation(file: file, line: 1, column: 1)
    }

    mutating func run(_ input: UnsafeBufferPointer<UInt8>) {
        let parser = UnsafeMutablePointer<yaml_parser_t>.allocate(capacity: 1)
        let event = UnsafeMutablePointer<yaml_event_t>.allocate(capacity: 1)
        defer {
            yaml_parser_delete(parser)
            parser.deallocate()
            event.deallocate()
        }
        guard yaml_parser_initialize(parser) == 1 else {
            fail(Fatal(line: 1, column: 1, message: "could not start the YAML parser (out of memory)"))
            return
        }
        yaml_parser_set_input_string(parser, input.baseAddress, input.count)
        while true {
            guard yaml_parser_parse(parser, event) == 1 else {
                fail(parserError(parser.pointee))
                return
            }
            defer { yaml_event_delete(event) }
            let type = event.pointee.type
            if type == YAML_STREAM_END_EVENT { return }
            do {
                try handle(event.pointee)
            } catch let fatal as Fatal {
                fail(fatal)
                return
            } catch {
                return
            }
        }
    }

    private mutating func fail(_ fatal: Fatal) {
        result.stoppedEarly = true
        result.diagnostics.append(Diagnostic(at: SourceLocation(file: file, line: fatal.line, column: fatal.column),
                                             message: fatal.message))
    }

    private func parserError(_ parser: yaml_parser_t) -> Fatal {
        let problem = parser.problem.map { String(cString: $0) } ?? "unknown error"
        var message = "invalid YAML: \(problem)"
        if let context = parser.context.map({ String(cString: $0) }) {
            message += " \(context) (line \(parser.context_mark.line + 1), column \(parser.context_mark.column + 1))"
        }
        if parser.error == YAML_READER_ERROR {
            // Reader errors carry a byte offset, not a line: undecodable bytes or control characters.
            return Fatal(line: 1, column: 1, message: "\(message) at byte \(parser.problem_offset); manifests must be UTF-8 text")
        }
        return Fatal(line: Int(parser.problem_mark.line) + 1, column: Int(parser.problem_mark.column) + 1, message: message)
    }

    private mutating func handle(_ event: yaml_event_t) throws {
        let line = Int(event.start_mark.line) + 1
        let column = Int(event.start_mark.column) + 1
        switch event.type {
        case YAML_DOCUMENT_START_EVENT:
            anchors.removeAll(keepingCapacity: true)
            documentRoot = nil
            documentWeight = 0
            documentStart = SourceLocation(file: file, line: line, column: column)
        case YAML_DOCUMENT_END_EVENT:
            result.documents.append(YAMLDocument(file: file, start: documentStart, root: documentRoot))
        case YAML_SCALAR_EVENT:
            let data = event.data.scalar
            let value = String(decoding: UnsafeBufferPointer(start: data.value, count: data.length), as: UTF8.self)
            let node = YAMLNode(.scalar(value, plain: data.style == YAML_PLAIN_SCALAR_STYLE), tag: text(data.tag),
                                line: line, column: column, weight: 1)
            register(node, anchor: text(data.anchor))
            try attach(node)
        case YAML_ALIAS_EVENT:
            let name = text(event.data.alias.anchor) ?? ""
            guard let node = anchors[name] else {
                throw Fatal(line: line, column: column, message: "invalid YAML: alias *\(name) refers to no anchor &\(name) before it")
            }
            try attach(node)
        case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
            guard stack.count < limits.maxDepth else {
                throw Fatal(line: line, column: column, message: "nesting is deeper than \(limits.maxDepth) levels")
            }
            let isMapping = event.type == YAML_MAPPING_START_EVENT
            let tag = isMapping ? text(event.data.mapping_start.tag) : text(event.data.sequence_start.tag)
            let anchor = isMapping ? text(event.data.mapping_start.anchor) : text(event.data.sequence_start.anchor)
            stack.append(Frame(isMapping: isMapping, tag: tag, anchor: anchor, line: line, column: column))
        case YAML_SEQUENCE_END_EVENT:
            let frame = stack.removeLast()
            let node = YAMLNode(.sequence(frame.items), tag: frame.tag, line: frame.line, column: frame.column, weight: frame.weight)
            register(node, anchor: frame.anchor)
            try attach(node)
        case YAML_MAPPING_END_EVENT:
            let frame = stack.removeLast()
            let (pairs, weight) = mergeAndCheck(frame)
            let node = YAMLNode(.mapping(pairs), tag: frame.tag, line: frame.line, column: frame.column, weight: weight)
            register(node, anchor: frame.anchor)
            try attach(node)
        default:
            break
        }
    }

    private mutating func register(_ node: YAMLNode, anchor: String?) {
        if let anchor { anchors[anchor] = node }
    }

    /// Adds a finished node to its parent, counting what it expands to.
    private mutating func attach(_ node: YAMLNode) throws {
        documentWeight = saturatingAdd(documentWeight, node.weight)
        if documentWeight > limits.maxExpandedNodes {
            throw Fatal(line: node.line, column: node.column,
                        message: "document expands to more than \(limits.maxExpandedNodes) nodes through aliases; refusing to read it (a YAML alias bomb?)")
        }
        guard !stack.isEmpty else {
            documentRoot = node
            return
        }
        let top = stack.count - 1
        stack[top].weight = saturatingAdd(stack[top].weight, node.weight)
        if !stack[top].isMapping {
            stack[top].items.append(node)
        } else if let key = stack[top].pendingKey {
            stack[top].pairs.append(YAMLNode.Pair(key: key, value: node))
            stack[top].pendingKey = nil
        } else {
            stack[top].pendingKey = node
        }
    }

    /// Applies `<<` merge keys and reports complex and duplicate keys (keeping the first).
    private mutating func mergeAndCheck(_ frame: Frame) -> ([YAMLNode.Pair], Int) {
        var seen: [String: YAMLNode] = [:]
        var pairs: [YAMLNode.Pair] = []
        var merged: [YAMLNode.Pair] = []
        var weight = frame.weight
        pairs.reserveCapacity(frame.pairs.count)
        for pair in frame.pairs {
            guard case .scalar(let key, let plain) = pair.key.content else {
                report(pair.key, "a mapping key must be a plain string, not \(pair.key.summary)")
                continue
            }
            if plain, key == "<<", pair.key.tag == nil {
                let sources = pair.value.pairs.isEmpty ? pair.value.items : [pair.value]
                guard sources.allSatisfy({ if case .mapping = $0.content { return true } else { return false } }) else {
                    report(pair.value, "a merge key `<<` takes a mapping or a list of mappings")
                    continue
                }
                merged.append(contentsOf: sources.flatMap(\.pairs))
                continue
            }
            // Manifest mappings are small: a linear scan beats hashing every key.
            if let first = frame.pairs.count <= 16 ? pairs.first(where: { $0.key.scalar == key })?.key : seen[key] {
                report(pair.key, "duplicate key \"\(key)\" (first at line \(first.line), column \(first.column))")
                continue
            }
            if frame.pairs.count > 16 { seen[key] = pair.key }
            pairs.append(pair)
        }
        for pair in merged {
            guard let key = pair.key.scalar, !pairs.contains(where: { $0.key.scalar == key }) else { continue }
            pairs.append(pair)
            weight = saturatingAdd(weight, pair.value.weight)
        }
        return (pairs, weight)
    }

    private mutating func report(_ node: YAMLNode, _ message: String) {
        result.diagnostics.append(Diagnostic(at: SourceLocation(file: file, line: node.line, column: node.column),
                                             message: message))
    }

    private func text(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        guard let pointer else { return nil }
        let value = String(cString: pointer)
        return value == "!" ? nil : value
    }
}

private func saturatingAdd(_ a: Int, _ b: Int) -> Int {
    let (sum, overflow) = a.addingReportingOverflow(b)
    return overflow ? Int.max : sum
}
