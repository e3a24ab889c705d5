import VirtformModel

/// Turns the documents of one file into model objects, reporting every problem on the way.
struct DocumentReader {
    let file: String
    private(set) var site = Site()
    private(set) var diagnostics: [Diagnostic] = []

    init(file: String) {
        self.file = file
    }

    mutating func read(_ document: YAMLDocument) {
        guard let root = document.root, !root.isNull else { return }  // an empty document, e.g. a trailing `---`
        var checker = ShapeChecker(file: file)
        guard case .mapping = root.content else {
            checker.report(root, "", "a manifest document must be a mapping with apiVersion, kind, metadata and spec; got \(root.summary)")
            diagnostics += checker.diagnostics
            return
        }
        let kind = root["kind"]?.scalar.flatMap(Kind.init(rawValue:))
        let name = root["metadata"]?["name"]?.scalar
        if let kind, let name { checker.object = "\(kind.rawValue)/\(name)" }

        // The envelope; `spec` is checked against its kind's shape below.
        checker.checkObject(root, ManifestSchema.envelope, path: "", skipping: ["spec"])
        if let kind, let spec = root["spec"], !spec.isNull {
            checker.checkObject(spec, ManifestSchema.spec(of: kind), path: "spec")
        }
        guard let kind else {
            diagnostics += checker.diagnostics
            return
        }

        let provenance = Provenance(document: document.start, fields: DocumentSourceMap(file: file, root: root))
        var builder = ModelBuilder(root: root, provenance: provenance, checker: checker)
        let object = checker.diagnostics.isEmpty ? builder.build(kind) : nil
        diagnostics += builder.checker.diagnostics
        if let object, builder.checker.diagnostics.isEmpty {
            site.add(object)
        } else if let name {
            // Declared, but broken: references to it are not reported again as unknown.
            site.incomplete.insert(Site.incompleteKey(kind, Self.uniqueName(kind, name: name, spec: root["spec"])))
        }
    }

    private static func uniqueName(_ kind: Kind, name: String, spec: YAMLNode?) -> String {
        switch kind {
        case .virtualMachine, .image: return "\(spec?["project"]?.scalar ?? "")/\(name)"
        default: return name
        }
    }
}
