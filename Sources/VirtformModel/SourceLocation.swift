/// A place in a manifest file: 1-based line and column.
public struct SourceLocation: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public static func < (a: SourceLocation, b: SourceLocation) -> Bool {
        (a.file, a.line, a.column) < (b.file, b.line, b.column)
    }

    public var description: String { "\(file):\(line):\(column)" }
}

/// Resolves a field path such as `spec.interfaces[1].network` to where it stands in the source.
///
/// The model stays free of YAML: the manifests module supplies an implementation backed by its
/// parsed document, so locations are looked up only when a diagnostic needs one.
public protocol SourceMap: Sendable {
    /// Where the value at `path` stands, or nil when the document has no such field.
    func location(of path: String) -> SourceLocation?
}

/// Where an object was declared and how to find its fields there.
public struct Provenance: Sendable {
    /// The start of the object's document.
    public var document: SourceLocation
    public var fields: (any SourceMap)?

    public init(document: SourceLocation, fields: (any SourceMap)? = nil) {
        self.document = document
        self.fields = fields
    }

    /// The field's location, or the nearest enclosing field that exists, or the document.
    public func location(of path: String) -> SourceLocation {
        guard let fields else { return document }
        var candidate = Substring(path)
        while !candidate.isEmpty {
            if let found = fields.location(of: String(candidate)) { return found }
            guard let cut = candidate.lastIndex(where: { $0 == "." || $0 == "[" }) else { break }
            candidate = candidate[..<cut]
        }
        return document
    }

    /// For objects made in code rather than read from a file (tests, generated sites).
    public static func synthetic(_ name: String) -> Provenance {
        Provenance(document: SourceLocation(file: "<\(name)>", line: 1, column: 1))
    }
}
