import VirtformModel

/// One node of a parsed YAML document, with the place it starts.
///
/// Nodes are immutable and shared: an alias points at the anchored node itself, so a document
/// full of aliases costs no more memory than its text.
public final class YAMLNode: Sendable {
    public enum Content: Sendable {
        /// `plain` is false for quoted and block scalars: `"1024"` is a string, `1024` a number.
        case scalar(String, plain: Bool)
        case mapping([Pair])
        case sequence([YAMLNode])
    }

    public struct Pair: Sendable {
        public let key: YAMLNode
        public let value: YAMLNode
    }

    public let content: Content
    /// An explicit tag such as `!!str`, if the text has one.
    public let tag: String?
    /// 1-based.
    public let line: Int
    public let column: Int
    /// Nodes this one stands for once aliases are expanded, itself included.
    let weight: Int

    init(_ content: Content, tag: String?, line: Int, column: Int, weight: Int) {
        self.content = content
        self.tag = tag
        self.line = line
        self.column = column
        self.weight = weight
    }

    // MARK: - Reading

    /// The value under `key` in a mapping.
    public subscript(key: String) -> YAMLNode? {
        guard case .mapping(let pairs) = content else { return nil }
        for pair in pairs where pair.key.scalar == key { return pair.value }
        return nil
    }

    public var scalar: String? {
        if case .scalar(let value, _) = content { return value }
        return nil
    }

    public var isNull: Bool {
        guard case .scalar(let value, let plain) = content, plain, tag == nil else { return false }
        return value.isEmpty || value == "~" || value == "null" || value == "Null" || value == "NULL"
    }

    public var pairs: [Pair] {
        if case .mapping(let pairs) = content { return pairs }
        return []
    }

    public var items: [YAMLNode] {
        if case .sequence(let items) = content { return items }
        return []
    }

    /// A plain scalar that reads as a YAML 1.2 integer.
    public var integer: Int? {
        guard case .scalar(let value, let plain) = content, plain || tag == "tag:yaml.org,2002:int" else { return nil }
        return Int(value.hasPrefix("+") ? String(value.dropFirst()) : value)
    }

    /// `true`/`false` (any case), as YAML 1.2 reads them.
    public var boolean: Bool? {
        guard case .scalar(let value, let plain) = content, plain || tag == "tag:yaml.org,2002:bool" else { return nil }
        switch value {
        case "true", "True", "TRUE": return true
        case "false", "False", "FALSE": return false
        default: return nil
        }
    }

    /// A short description of what the node is, for "expected X, got Y" messages.
    public var summary: String {
        switch content {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .scalar(let value, let plain):
            if isNull { return "nothing (null)" }
            let shown = value.count > 40 ? String(value.prefix(37)) + "..." : value
            return plain ? "\(shown)" : "\"\(shown)\""
        }
    }

    /// The node at a field path such as `spec.interfaces[1].network`.
    public func node(at path: some StringProtocol) -> YAMLNode? {
        var current: YAMLNode? = self
        for component in path.split(separator: ".") {
            var name = component[...]
            var indexes: [Int] = []
            while name.hasSuffix("]"), let open = name.lastIndex(of: "[") {
                guard let i = Int(name[name.index(after: open)..<name.index(before: name.endIndex)]) else { return nil }
                indexes.insert(i, at: 0)
                name = name[..<open]
            }
            if !name.isEmpty { current = current?[String(name)] }
            for i in indexes {
                guard let items = current?.items, items.indices.contains(i) else { return nil }
                current = items[i]
            }
        }
        return current
    }
}

/// One document of a manifest file.
public struct YAMLDocument: Sendable {
    public let file: String
    /// Where the document starts (its `---`, or its first node).
    public let start: SourceLocation
    public let root: YAMLNode?

    public func location(of node: YAMLNode) -> SourceLocation {
        SourceLocation(file: file, line: node.line, column: node.column)
    }
}

/// Field locations of a document, for diagnostics found after the model was built.
struct DocumentSourceMap: SourceMap {
    let file: String
    let root: YAMLNode

    func location(of path: String) -> SourceLocation? {
        root.node(at: path).map { SourceLocation(file: file, line: $0.line, column: $0.column) }
    }
}
