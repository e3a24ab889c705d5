import VirtformModel

/// `virtform fmt`: one canonical text for every manifest file, keeping its comments.
///
/// - Documents are separated by `---` lines (none before the first); mappings and lists are
///   written in block style with two spaces of indentation (list items indented under their
///   key); empty ones as `{}` and `[]`.
/// - Keys in the manifest language's order (`apiVersion`, `kind`, `metadata`, `spec`; each
///   object's fields as the schema lists them, `virtform schema`); keys it does not know come
///   after, in the order they were written.
/// - Scalars keep their kind: plain stays plain; quoted becomes double-quoted; text of several
///   lines becomes a literal block (`|`, `|-` or `|+`).
/// - Comments stay with the entry they stand above, or end the line of; single blank lines
///   between entries are kept.
///
/// Nothing is lost: the result is read back and must hold the same documents, values and
/// comments as the input; otherwise the file is refused and left as it is (as is a file with
/// anchors and aliases, which block style would expand, or one that is not valid YAML).
public enum ManifestFormatter {
    public enum Outcome: Sendable, Equatable {
        /// The canonical text (equal to the input when it was canonical already).
        case formatted(String)
        /// Not formatted, and why.
        case refused([Diagnostic])
    }

    public static func format(_ text: String, file: String) -> Outcome {
        let bytes = Array(text.utf8)
        let composed = YAMLComposer.compose(bytes, file: file)
        let errors = composed.diagnostics.filter { $0.severity == .error }
        if !errors.isEmpty { return .refused(errors) }
        func refuse(_ why: String) -> Outcome {
            .refused([Diagnostic(.error, at: SourceLocation(file: file, line: 0, column: 0),
                                 message: "not formatted: \(why); the file is left as it is")])
        }
        if let shared = sharedNode(in: composed.documents) {
            return refuse("it uses anchors and aliases (line \(shared)), which a canonical text would expand")
        }
        let source = SourceText(text)
        let comments = CommentMap(source: source, documents: composed.documents)
        var writer = Writer(comments: comments)
        writer.header(composed.documents)
        for (i, document) in composed.documents.enumerated() {
            if i > 0 { writer.line(0, "---") }
            if let root = document.root { writer.document(root) }
            writer.documentEnd(i, of: composed.documents)
        }
        let output = writer.lines.isEmpty ? "" : writer.lines.joined(separator: "\n") + "\n"

        // Read it back: the same documents, values and comments, or nothing is written.
        let again = YAMLComposer.compose(Array(output.utf8), file: file)
        guard again.diagnostics.allSatisfy({ $0.severity != .error }), again.documents.count == composed.documents.count,
            zip(composed.documents, again.documents).allSatisfy({ same($0.root, $1.root) })
        else { return refuse("its canonical text would not read back as the same values (a case fmt does not handle)") }
        let kept = CommentMap(source: SourceText(output), documents: again.documents)
        guard kept.all.sorted() == comments.all.sorted() else {
            return refuse("its comments could not all be kept in place")
        }
        return .formatted(output)
    }

    /// The line of a node that appears twice (an alias of an anchored node), if any.
    private static func sharedNode(in documents: [YAMLDocument]) -> Int? {
        var seen = Set<ObjectIdentifier>()
        func walk(_ node: YAMLNode) -> Int? {
            guard seen.insert(ObjectIdentifier(node)).inserted else { return node.line }
            switch node.content {
            case .scalar: return nil
            case .sequence(let items): return items.lazy.compactMap(walk).first
            case .mapping(let pairs): return pairs.lazy.compactMap { walk($0.key) ?? walk($0.value) }.first
            }
        }
        return documents.lazy.compactMap { $0.root.flatMap(walk) }.first
    }

    /// The same value: scalars alike (text, plain or not, tag), lists item by item, mappings key
    /// by key in any order.
    static func same(_ a: YAMLNode?, _ b: YAMLNode?) -> Bool {
        guard let a, let b else { return a == nil && b == nil }
        switch (a.content, b.content) {
        case (.scalar(let x, let px), .scalar(let y, let py)):
            return x == y && px == py && a.tag == b.tag
        case (.sequence(let xs), .sequence(let ys)):
            return xs.count == ys.count && zip(xs, ys).allSatisfy { same($0, $1) }
        case (.mapping(let xs), .mapping(let ys)):
            guard xs.count == ys.count else { return false }
            return xs.allSatisfy { pair in ys.contains { same($0.key, pair.key) && same($0.value, pair.value) } }
        default:
            return false
        }
    }
}

/// A file's lines, as Unicode scalars (libyaml counts columns in characters of the input).
struct SourceText {
    let lines: [[Unicode.Scalar]]

    init(_ text: String) {
        var lines: [[Unicode.Scalar]] = [[]]
        for scalar in text.unicodeScalars {
            if scalar == "\n" { lines.append([]) } else if scalar != "\r" { lines[lines.count - 1].append(scalar) }
        }
        self.lines = lines
    }

    /// 1-based.
    func line(_ number: Int) -> [Unicode.Scalar] { lines.indices.contains(number - 1) ? lines[number - 1] : [] }

    func indentation(_ number: Int) -> Int { line(number).prefix { $0 == " " }.count }

    func isBlank(_ number: Int) -> Bool { line(number).allSatisfy { $0 == " " || $0 == "\t" } }
}

/// Where a file's comments are: whole-line comments and blank lines above each entry, comments
/// at the end of an entry's line, and the rest by document.
struct CommentMap {
    /// Every comment's text (`# …`), for checking that none was lost.
    private(set) var all: [String] = []
    /// Whole-line comments (and blank lines, as "") above the line they stand over.
    private(set) var above: [Int: [String]] = [:]
    /// A comment at the end of a line with content.
    private(set) var endOfLine: [Int: String] = [:]
    /// Lines that hold nothing but a comment, by number.
    private var commentLines: [Int: String] = [:]
    private var blank = Set<Int>()
    /// Lines that are content: nodes, document markers, and the inside of multi-line scalars.
    private var content = Set<Int>()
    private let lineCount: Int

    init(source: SourceText, documents: [YAMLDocument]) {
        lineCount = source.lines.count
        // Lines inside scalars of several lines are content, never comments.
        var inside = Set<Int>()
        var starts = Set<Int>()
        func walk(_ node: YAMLNode) {
            starts.insert(node.line)
            switch node.content {
            case .scalar:
                let line = source.line(node.line)
                let at = node.column - 1
                if line.indices.contains(at), line[at] == "|" || line[at] == ">" {
                    // A block scalar: the lines after it that are blank or indented deeper than its line.
                    let base = source.indentation(node.line)
                    var next = node.line + 1
                    while next <= source.lines.count, source.isBlank(next) || source.indentation(next) > base {
                        inside.insert(next)
                        next += 1
                    }
                } else if line.indices.contains(at), line[at] == "\"" || line[at] == "'" {
                    for extra in Self.quotedLines(source, line: node.line, column: at) { inside.insert(extra) }
                }
            case .sequence(let items): items.forEach(walk)
            case .mapping(let pairs):
                for pair in pairs {
                    walk(pair.key)
                    walk(pair.value)
                }
            }
        }
        for document in documents {
            starts.insert(document.start.line)
            if let root = document.root { walk(root) }
        }
        for number in 1...max(source.lines.count, 1) {
            if inside.contains(number) {
                content.insert(number)
                continue
            }
            let line = source.line(number)
            if source.isBlank(number) {
                blank.insert(number)
                continue
            }
            let text = String(String.UnicodeScalarView(line.drop { $0 == " " || $0 == "\t" }))
            if text.hasPrefix("#") {
                commentLines[number] = text
                all.append(text)
                continue
            }
            content.insert(number)
            if let comment = Self.endComment(line) {
                endOfLine[number] = comment
                all.append(comment)
            }
        }
        // Each run of comment and blank lines belongs above the content line after it (a run
        // of blank lines counts as one).
        var pending: [String] = []
        for number in 1...max(source.lines.count, 1) {
            if let comment = commentLines[number] {
                pending.append(comment)
            } else if blank.contains(number) {
                if pending.last != "" { pending.append("") }
            } else if content.contains(number) {
                if !pending.isEmpty { above[number] = pending }
                pending = []
            }
        }
        if pending.contains(where: { !$0.isEmpty }) { above[lineCount + 1] = pending }
    }

    /// The comment at the end of a content line: a `#` after a space, outside quotes.
    static func endComment(_ line: [Unicode.Scalar]) -> String? {
        var quote: Unicode.Scalar?
        var previous: Unicode.Scalar = " "
        var lastSignificant: Unicode.Scalar?
        var i = 0
        while i < line.count {
            let c = line[i]
            if let open = quote {
                if open == "'" && c == "'" {
                    if i + 1 < line.count && line[i + 1] == "'" { i += 2; continue }
                    quote = nil
                } else if open == "\"" && c == "\\" {
                    i += 2
                    continue
                } else if open == "\"" && c == "\"" {
                    quote = nil
                }
            } else if c == "#" && (previous == " " || previous == "\t") {
                return String(String.UnicodeScalarView(line[i...]))
            } else if (c == "'" || c == "\"") && (lastSignificant == nil || ":-[{,?".unicodeScalars.contains(lastSignificant!)) {
                // A quote opens a quoted scalar only where a value may start.
                if previous == " " || previous == "\t" || lastSignificant == nil || "[{,".unicodeScalars.contains(previous) {
                    quote = c
                }
            }
            if c != " " && c != "\t" { lastSignificant = c }
            previous = c
            i += 1
        }
        return nil
    }

    /// The further lines a quoted scalar starting at `column` of `line` runs over.
    static func quotedLines(_ source: SourceText, line: Int, column: Int) -> [Int] {
        let open = source.line(line)[column]
        var number = line
        var i = column + 1
        var extra: [Int] = []
        while number <= source.lines.count {
            let text = source.line(number)
            while i < text.count {
                let c = text[i]
                if open == "\"" && c == "\\" { i += 2; continue }
                if c == open {
                    if open == "'" && i + 1 < text.count && text[i + 1] == "'" { i += 2; continue }
                    return extra
                }
                i += 1
            }
            number += 1
            i = 0
            extra.append(number)
        }
        return extra
    }

    /// Whether comments stand above `line` or end it.
    func hasComments(above line: Int, orEnding ending: Bool) -> Bool {
        above[line] != nil || (ending && endOfLine[line] != nil)
    }

    /// Takes the comments above `line` (once).
    mutating func takeAbove(_ line: Int) -> [String] { above.removeValue(forKey: line) ?? [] }

    /// Takes the comment at the end of `line` (once).
    mutating func takeEndOfLine(_ line: Int) -> String? { endOfLine.removeValue(forKey: line) }

    /// Takes every comment not yet placed, above or on lines up to `line` (the rest of a document).
    mutating func takeRemaining(through line: Int) -> [String] {
        var taken: [(Int, String)] = []
        for key in above.keys where key <= line {
            taken += above.removeValue(forKey: key)!.map { (key, $0) }
        }
        for key in endOfLine.keys where key <= line { taken.append((key, endOfLine.removeValue(forKey: key)!)) }
        return taken.enumerated().sorted { ($0.element.0, $0.offset) < ($1.element.0, $1.offset) }.map(\.element.1)
    }
}

/// Writes the canonical text, line by line.
private struct Writer {
    var comments: CommentMap
    var lines: [String] = []
    /// The shapes the entries being written follow, for their key order.
    private var documentKind: Kind?

    init(comments: CommentMap) {
        self.comments = comments
    }

    mutating func line(_ indent: Int, _ text: String) {
        lines.append(String(repeating: " ", count: indent) + text)
    }

    /// Comments above the first document's `---` stay on top, as the file's header.
    mutating func header(_ documents: [YAMLDocument]) {
        guard let first = documents.first, let root = first.root, first.start.line < root.line else { return }
        for comment in comments.takeAbove(first.start.line) where !comment.isEmpty { line(0, comment) }
    }

    mutating func document(_ root: YAMLNode) {
        documentKind = root["kind"]?.scalar.flatMap(Kind.init(rawValue:))
        switch root.content {
        case .mapping(let pairs):
            writePairs(pairs, indent: 0, shape: .object(ManifestSchema.envelope), path: [])
        case .sequence(let items):
            writeItems(items, indent: 0, shape: nil)
        case .scalar:
            placeAbove(root.line, indent: 0, first: true)
            var text = scalar(root, indent: 0)
            if let comment = comments.takeEndOfLine(root.line) { text[0] += "  " + comment }
            lines += text
        }
    }

    mutating func documentEnd(_ index: Int, of documents: [YAMLDocument]) {
        // Up to the next document's `---`: what stands above it ends this one.
        let end = index + 1 < documents.count ? documents[index + 1].start.line : Int.max
        for comment in comments.takeRemaining(through: end) where !comment.isEmpty { line(0, comment) }
    }

    /// The comments and blank lines above an entry; none of the blank lines at the start of a block.
    private mutating func placeAbove(_ sourceLine: Int, indent: Int, first: Bool) {
        var above = comments.takeAbove(sourceLine)
        if first || lines.isEmpty || lines.last == "---" { while above.first == "" { above.removeFirst() } }
        var previousBlank = false
        for text in above {
            if text.isEmpty {
                if !previousBlank { lines.append("") }
                previousBlank = true
            } else {
                line(indent, text)
                previousBlank = false
            }
        }
    }

    private func order(_ pairs: [YAMLNode.Pair], shape: Shape?) -> [YAMLNode.Pair] {
        guard case .object(let object)? = shape else { return pairs }
        let position: (YAMLNode.Pair) -> Int = { pair in pair.key.scalar.flatMap(object.fieldIndex) ?? Int.max }
        return pairs.enumerated().sorted { a, b in
            let (x, y) = (position(a.element), position(b.element))
            return x != y ? x < y : a.offset < b.offset
        }.map(\.element)
    }

    /// The shape of a mapping's value under `key`.
    private func childShape(_ shape: Shape?, key: String?, path: [String]) -> Shape? {
        guard let key, case .object(let object)? = shape else { return nil }
        if path.isEmpty && key == "spec", let kind = documentKind { return .object(ManifestSchema.spec(of: kind)) }
        return object.field(key)?.shape
    }

    private static func itemShape(_ shape: Shape?) -> Shape? {
        if case .list(let item, _, _, _)? = shape { return item }
        return nil
    }

    /// `key: value` entries at `indent`; `firstPrefix` replaces the indentation of the first
    /// line (a list item's `- `).
    mutating func writePairs(_ pairs: [YAMLNode.Pair], indent: Int, shape: Shape?, path: [String], firstPrefix: String? = nil) {
        for (i, pair) in order(pairs, shape: shape).enumerated() {
            let lead = i == 0 ? firstPrefix : nil
            if lead == nil { placeAbove(pair.key.line, indent: indent, first: i == 0) }
            let key = keyText(pair.key)
            let start = (lead.map { String(repeating: " ", count: indent - 2) + $0 } ?? String(repeating: " ", count: indent)) + key + ":"
            let child = childShape(shape, key: pair.key.scalar, path: path)
            write(pair.value, after: start, commentLine: pair.key.line, indent: indent, shape: child, path: path + [pair.key.scalar ?? "?"])
        }
    }

    /// A value after `start` (`key:` or `-`), on the same line when it is a scalar or empty,
    /// else below it at `indent + 2`.
    private mutating func write(_ value: YAMLNode, after start: String, commentLine: Int, indent: Int, shape: Shape?, path: [String]) {
        let endComment = comments.takeEndOfLine(commentLine)
        func withComment(_ text: String, _ comment: String?) -> String { comment.map { text + "  " + $0 } ?? text }
        switch value.content {
        case .scalar:
            var parts = scalar(value, indent: indent + 2)
            let valueComment = value.line != commentLine ? comments.takeEndOfLine(value.line) : nil
            let comment = [endComment, valueComment].compactMap { $0 }.joined(separator: " ")
            parts[0] = withComment(parts[0].isEmpty ? start : start + " " + parts[0], comment.isEmpty ? nil : comment)
            lines += parts
        case .mapping(let pairs) where pairs.isEmpty:
            lines.append(withComment(start + " {}", endComment))
        case .sequence(let items) where items.isEmpty:
            lines.append(withComment(start + " []", endComment))
        case .mapping(let pairs):
            lines.append(withComment(start, endComment))
            writePairs(pairs, indent: indent + 2, shape: shape, path: path)
        case .sequence(let items):
            if let flow = flowList(items, commentLine: commentLine, width: start.count) {
                lines.append(withComment(start + " " + flow, endComment))
            } else {
                lines.append(withComment(start, endComment))
                writeItems(items, indent: indent + 2, shape: shape)
            }
        }
    }

    /// A short list of plain words on one line, `[fe0, be0]`: when every item is a plain scalar
    /// that needs no quoting in flow style, no comment stands among them, and the line stays
    /// within 100 characters.
    private func flowList(_ items: [YAMLNode], commentLine: Int, width: Int) -> String? {
        var words: [String] = []
        for item in items {
            guard case .scalar(let value, true) = item.content, item.tag == nil, !value.isEmpty,
                !value.unicodeScalars.contains(where: { ",[]{}#\"'\n\t".unicodeScalars.contains($0) }), !value.contains(": "),
                !value.hasSuffix(":"), !value.hasPrefix(" "), !value.hasSuffix(" "),
                !comments.hasComments(above: item.line, orEnding: item.line != commentLine)
            else { return nil }
            words.append(value)
        }
        let text = "[" + words.joined(separator: ", ") + "]"
        return width + 1 + text.count <= 100 ? text : nil
    }

    /// `- item` entries at `indent`.
    mutating func writeItems(_ items: [YAMLNode], indent: Int, shape: Shape?) {
        let itemShape = Self.itemShape(shape)
        for (i, item) in items.enumerated() {
            placeAbove(item.line, indent: indent, first: i == 0)
            switch item.content {
            case .mapping(let pairs) where !pairs.isEmpty:
                // The first entry shares the item's line: `- key: value`.
                if item.line != pairs[0].key.line { placeAbove(pairs[0].key.line, indent: indent, first: true) }
                writePairs(pairs, indent: indent + 2, shape: itemShape, path: ["-"], firstPrefix: "- ")
            default:
                write(item, after: String(repeating: " ", count: indent) + "-", commentLine: item.line, indent: indent, shape: itemShape, path: ["-"])
            }
        }
    }

    private func keyText(_ key: YAMLNode) -> String {
        guard case .scalar(let value, let plain) = key.content else { return "?" }
        return Self.tagText(key.tag) + (plain && !value.contains("\n") ? value : Self.quoted(value))
    }

    /// A scalar's lines: its first goes after the key; a literal block's lines below, at `indent`.
    private func scalar(_ node: YAMLNode, indent: Int) -> [String] {
        guard case .scalar(let value, let plain) = node.content else { return [""] }
        let tag = Self.tagText(node.tag)
        if !value.contains("\n") {
            return [tag + (plain ? value : Self.quoted(value))]
        }
        if value.unicodeScalars.contains(where: { $0.value < 0x20 && $0 != "\n" && $0 != "\t" || $0.value == 0x7F })
            || value.hasPrefix("\n") || value.hasPrefix(" ") || value.hasPrefix("\t") {
            return [tag + Self.quoted(value)]
        }
        // A literal block, its chomping saying how its trailing line breaks are kept.
        var body = value
        var trailing = 0
        while body.hasSuffix("\n") {
            body.removeLast()
            trailing += 1
        }
        let indicator = trailing == 0 ? "|-" : trailing == 1 ? "|" : "|+"
        var result = [tag + indicator]
        let pad = String(repeating: " ", count: indent)
        for part in body.split(separator: "\n", omittingEmptySubsequences: false) {
            result.append(part.isEmpty ? "" : pad + part)
        }
        if trailing > 1 { result += Array(repeating: "", count: trailing - 1) }
        return result
    }

    private static func tagText(_ tag: String?) -> String {
        guard let tag else { return "" }
        let core = "tag:yaml.org,2002:"
        return (tag.hasPrefix(core) ? "!!" + tag.dropFirst(core.count) : tag.hasPrefix("!") ? tag : "!<\(tag)>") + " "
    }

    /// Double-quoted, with YAML's escapes.
    static func quoted(_ value: String) -> String {
        var text = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\t": text += "\\t"
            case "\r": text += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F || (0x80...0x9F).contains(scalar.value)
                    || scalar.value == 0x2028 || scalar.value == 0x2029 || scalar.value == 0xFEFF {
                    let hex = String(scalar.value, radix: 16, uppercase: true)
                    text += scalar.value <= 0xFF ? "\\x" + String(repeating: "0", count: 2 - hex.count) + hex
                        : "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    text.unicodeScalars.append(scalar)
                }
            }
        }
        return text + "\""
    }
}
