import VirtformModel

/// Checks one document's nodes against a shape, collecting every problem with its place.
struct ShapeChecker {
    let file: String
    /// `Kind/name` of the document being checked, for messages.
    var object: String?
    var diagnostics: [Diagnostic] = []

    init(file: String) {
        self.file = file
    }

    mutating func report(_ node: YAMLNode, _ path: @autoclosure () -> String, _ message: String, suggestion: String? = nil) {
        diagnostics.append(Diagnostic(at: SourceLocation(file: file, line: node.line, column: node.column), object: object,
                                      field: path(), message: message, suggestion: suggestion))
    }

    /// `path` is built only when something is reported: most nodes are fine.
    mutating func check(_ node: YAMLNode, _ shape: Shape, path: @autoclosure () -> String) {
        switch shape {
        case .string(let format):
            guard let text = node.scalar, !node.isNull else { return mismatch(node, shape, path()) }
            if !format.accepts(text) { mismatch(node, shape, path()) }
        case .integer(let range):
            guard let value = node.integer else { return mismatch(node, shape, path()) }
            if !range.contains(value) { mismatch(node, shape, path()) }
        case .boolean:
            guard node.boolean == nil else { return }
            var suggestion: String?
            switch node.scalar?.lowercased() {
            case "yes", "on", "y": suggestion = "true"
            case "no", "off", "n": suggestion = "false"
            default: break
            }
            mismatch(node, shape, path(), suggestion: suggestion)
        case .byteSize:
            guard let text = node.scalar, !node.isNull, let size = ByteSize(parsing: text) else { return mismatch(node, shape, path()) }
            // No size virtform manages can be empty: libvirt refuses a guest without memory, a
            // pool a LUN of no bytes.
            if size.bytes == 0 { report(node, path(), "a size must be more than 0") }
        case .choice(let options):
            guard let text = node.scalar, options.contains(text) else {
                return mismatch(node, shape, path(), suggestion: node.scalar.flatMap { Suggestion.nearest(to: $0, in: options) })
            }
        case .list(let item, let minItems, let maxItems, let unique):
            guard case .sequence(let items) = node.content else { return mismatch(node, shape, path()) }
            if items.count < minItems {
                report(node, path(), "expected at least \(minItems) item\(minItems == 1 ? "" : "s"), got \(items.count)")
            }
            if let maxItems, items.count > maxItems {
                report(node, path(), "expected at most \(maxItems) item\(maxItems == 1 ? "" : "s"), got \(items.count)")
            }
            var seen: Set<String> = []
            for (i, element) in items.enumerated() {
                check(element, item, path: "\(path())[\(i)]")
                if unique, let text = element.scalar, !seen.insert(text).inserted {
                    report(element, "\(path())[\(i)]", "\"\(text)\" is listed twice")
                }
            }
        case .stringMap(let keyFormat, let valueFormat):
            guard case .mapping(let pairs) = node.content else { return mismatch(node, shape, path()) }
            for pair in pairs {
                let key = pair.key.scalar ?? ""
                if !keyFormat.accepts(key) {
                    report(pair.key, "\(path()).\(key)", "expected \(keyFormat.expectation), got \(pair.key.summary)")
                }
                guard let value = pair.value.scalar, !pair.value.isNull, valueFormat.accepts(value) else {
                    report(pair.value, "\(path()).\(key)", "expected \(valueFormat.expectation), got \(pair.value.summary)")
                    continue
                }
            }
        case .object(let objectShape):
            checkObject(node, objectShape, path: path())
        }
    }

    mutating func checkObject(_ node: YAMLNode, _ shape: ObjectShape, path: String, skipping: Set<String> = []) {
        guard case .mapping(let pairs) = node.content else { return mismatch(node, .object(shape), path) }
        let prefix = path.isEmpty ? "" : path + "."
        var present = [Bool](repeating: false, count: shape.fields.count)
        for pair in pairs {
            let key = pair.key.scalar ?? ""
            guard let fieldIndex = shape.fieldIndex(key) else {
                let known = shape.fields.map(\.name)
                if let suggestion = Suggestion.nearest(to: key, in: known) {
                    report(pair.key, prefix + key, "unknown field \"\(key)\"", suggestion: suggestion)
                } else {
                    report(pair.key, prefix + key, "unknown field \"\(key)\"; known fields: \(known.joined(separator: ", "))")
                }
                continue
            }
            let field = shape.fields[fieldIndex]
            if pair.value.isNull {
                // `field:` with no value is the same as leaving it out.
                if field.required { report(pair.value, prefix + key, "missing value: expected \(field.shape.expectation)") }
                continue
            }
            present[fieldIndex] = true
            if skipping.contains(key) { continue }
            check(pair.value, field.shape, path: prefix + key)
        }
        for (i, field) in shape.fields.enumerated() where field.required && !present[i] && node[field.name] == nil {
            report(node, prefix + field.name, "missing required field \"\(field.name)\" (\(field.shape.expectation))")
        }
        for group in shape.exactlyOne {
            let set = group.filter { name in shape.fieldIndex(name).map { present[$0] } ?? false }
            if set.isEmpty {
                report(node, path, "needs one of " + group.map { "\"\($0)\"" }.joined(separator: " or "))
            } else if set.count > 1 {
                report(node, path, set.map { "\"\($0)\"" }.joined(separator: " and ") + " cannot be used together; choose one")
            }
        }
    }

    private mutating func mismatch(_ node: YAMLNode, _ shape: Shape, _ path: @autoclosure () -> String, suggestion: String? = nil) {
        if case .string(.stateBackend) = shape {
            // A backend URL may hold a password: the value is never repeated.
            report(node, path(), "expected \(shape.expectation) (the value is not shown)", suggestion: suggestion)
            return
        }
        report(node, path(), "expected \(shape.expectation), got \(node.summary)", suggestion: suggestion)
    }
}
