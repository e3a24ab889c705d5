/// A small, strict scanner for the XML libvirt writes, several times cheaper than Foundation's
/// `XMLParser` (which builds strings and dictionaries for every event); a plan reads ten
/// thousand domains.
///
/// It handles elements, attributes in either quote, namespaces (prefixes and defaults, as
/// declared in scope), text with the five named and the numeric character references, comments,
/// CDATA, processing instructions and a DOCTYPE without an internal subset. Anything else, or
/// anything malformed, returns nil and the caller falls back to Foundation's parser.
///
/// Only the elements `keep` asks for become part of the tree (it is asked with the local names
/// of the kept ancestors and the element's own name); the rest is checked and skipped without
/// building anything, which is most of the saving.
enum XMLScanner {
    typealias Filter = (_ ancestors: [String], _ name: String) -> Bool

    static func scan(_ xml: String, keep: @escaping Filter = { _, _ in true }) -> XMLTree? {
        var copy = xml
        return copy.withUTF8 { bytes in
            var scanner = Scanner(bytes: bytes, keep: keep)
            return scanner.document()
        }
    }

    private struct Open {
        /// nil for a skipped element.
        var element: XMLTree?
        var nameStart: Int
        var nameEnd: Int
        /// Prefix ("" for the default) → namespace name, innermost declaration last.
        var namespaces: [(prefix: String, uri: String)]
    }

    private struct Scanner {
        let bytes: UnsafeBufferPointer<UInt8>
        let keep: Filter
        var i = 0
        var stack: [Open] = []
        /// Local names of the kept elements that are open.
        var path: [String] = []
        var root: XMLTree?

        init(bytes: UnsafeBufferPointer<UInt8>, keep: @escaping Filter) {
            self.bytes = bytes
            self.keep = keep
        }

        mutating func document() -> XMLTree? {
            while i < bytes.count {
                if bytes[i] == UInt8(ascii: "<") {
                    guard markup() else { return nil }
                    continue
                }
                let start = i
                while i < bytes.count && bytes[i] != UInt8(ascii: "<") { i += 1 }
                let blank = (start..<i).allSatisfy { Self.isSpace(bytes[$0]) }
                if let top = stack.last {
                    // Whitespace between elements is layout, not content: not kept.
                    if let element = top.element, !blank {
                        guard let text = decode(start, i) else { return nil }
                        element.text += text
                    }
                } else if !blank {
                    return nil  // text outside the root element
                }
            }
            return stack.isEmpty ? root : nil
        }

        private static func isSpace(_ byte: UInt8) -> Bool {
            byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
        }

        private func startsWith(_ text: StaticString) -> Bool {
            let count = text.utf8CodeUnitCount
            guard i + count <= bytes.count else { return false }
            let pointer = text.utf8Start
            for k in 0..<count where bytes[i + k] != pointer[k] { return false }
            return true
        }

        /// Moves past the next `terminator`; false when there is none.
        private mutating func skip(past terminator: StaticString) -> Bool {
            while i < bytes.count {
                if startsWith(terminator) {
                    i += terminator.utf8CodeUnitCount
                    return true
                }
                i += 1
            }
            return false
        }

        private mutating func markup() -> Bool {
            if startsWith("<?") { return skip(past: "?>") }
            if startsWith("<!--") { return skip(past: "-->") }
            if startsWith("<![CDATA[") {
                i += 9
                let start = i
                guard skip(past: "]]>"), let top = stack.last else { return false }
                top.element?.text += text(start, i - 3)
                return true
            }
            if startsWith("<!") {
                // A DOCTYPE without an internal subset.
                while i < bytes.count && bytes[i] != UInt8(ascii: ">") {
                    if bytes[i] == UInt8(ascii: "[") { return false }
                    i += 1
                }
                guard i < bytes.count else { return false }
                i += 1
                return true
            }
            if startsWith("</") { return endTag() }
            return startTag()
        }

        private mutating func endTag() -> Bool {
            i += 2
            let start = i
            guard skipName(), let open = stack.popLast(), sameBytes(start, i, open.nameStart, open.nameEnd) else { return false }
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ">") else { return false }
            i += 1
            if let element = open.element {
                path.removeLast()
                attach(element)
            }
            return true
        }

        private mutating func startTag() -> Bool {
            if stack.isEmpty && root != nil { return false }  // a second root element
            i += 1
            let nameStart = i
            guard skipName() else { return false }
            let nameEnd = i
            // Kept when its parent is (or it is the root) and the filter wants it.
            let parentKept = stack.last.map { $0.element != nil } ?? true
            var prefix: String?
            var local = ""
            if parentKept {
                if let colon = (nameStart..<nameEnd).first(where: { bytes[$0] == UInt8(ascii: ":") }) {
                    prefix = text(nameStart, colon)
                    local = text(colon + 1, nameEnd)
                } else {
                    local = text(nameStart, nameEnd)
                }
            }
            let kept = parentKept && (stack.isEmpty || keep(path, local))
            var attributes: [XMLTree.Attribute] = []
            var namespaces = kept ? (stack.last?.namespaces ?? []) : []
            let inherited = namespaces.count
            var empty = false
            while true {
                skipSpace()
                guard i < bytes.count else { return false }
                if bytes[i] == UInt8(ascii: ">") {
                    i += 1
                    break
                }
                if bytes[i] == UInt8(ascii: "/") {
                    guard i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: ">") else { return false }
                    i += 2
                    empty = true
                    break
                }
                let keyStart = i
                guard skipName() else { return false }
                let keyEnd = i
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "=") else { return false }
                i += 1
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "'") || bytes[i] == UInt8(ascii: "\"") else { return false }
                let quote = bytes[i]
                i += 1
                let valueStart = i
                while i < bytes.count && bytes[i] != quote {
                    if bytes[i] == UInt8(ascii: "<") { return false }
                    i += 1
                }
                guard i < bytes.count else { return false }
                let valueEnd = i
                i += 1
                guard kept else { continue }
                guard let value = decode(valueStart, valueEnd) else { return false }
                let key = text(keyStart, keyEnd)
                if key == "xmlns" || key.hasPrefix("xmlns:") {
                    let prefix = key == "xmlns" ? "" : String(key.dropFirst(6))
                    // Declared twice on one element: not well-formed.
                    if namespaces.dropFirst(inherited).contains(where: { $0.prefix == prefix }) { return false }
                    namespaces.append((prefix, value))
                } else if attributes.contains(where: { $0.name == key }) {
                    return false  // a duplicate attribute
                } else {
                    attributes.append((key, value))
                }
            }
            guard kept else {
                if !empty { stack.append(Open(element: nil, nameStart: nameStart, nameEnd: nameEnd, namespaces: [])) }
                return true
            }
            let namespace: String?
            if let prefix {
                guard let declared = namespaces.last(where: { $0.prefix == prefix }) else { return false }  // an undeclared prefix
                namespace = declared.uri
            } else {
                namespace = namespaces.last { $0.prefix == "" }?.uri
            }
            let element = XMLTree(name: local, namespace: namespace?.isEmpty == true ? nil : namespace, attributes: attributes)
            if empty {
                attach(element)
            } else {
                stack.append(Open(element: element, nameStart: nameStart, nameEnd: nameEnd, namespaces: namespaces))
                path.append(local)
            }
            return true
        }

        private mutating func attach(_ element: XMLTree) {
            if let parent = stack.last {
                parent.element?.children.append(element)
            } else {
                root = element
            }
        }

        private mutating func skipSpace() {
            while i < bytes.count, Self.isSpace(bytes[i]) { i += 1 }
        }

        /// Moves past a name; false when there is none here.
        private mutating func skipName() -> Bool {
            let start = i
            while i < bytes.count {
                let byte = bytes[i]
                let isNameByte = byte >= 0x80 || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                    || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                    || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: ":")
                guard isNameByte else { break }
                i += 1
            }
            return i > start
        }

        private func sameBytes(_ a: Int, _ aEnd: Int, _ b: Int, _ bEnd: Int) -> Bool {
            guard aEnd - a == bEnd - b else { return false }
            for k in 0..<(aEnd - a) where bytes[a + k] != bytes[b + k] { return false }
            return true
        }

        private func text(_ from: Int, _ to: Int) -> String {
            String(decoding: UnsafeBufferPointer(rebasing: bytes[from..<to]), as: UTF8.self)
        }

        /// The text between `from` and `to` with its character references replaced; nil for a
        /// reference it does not know.
        private func decode(_ from: Int, _ to: Int) -> String? {
            let slice = UnsafeBufferPointer(rebasing: bytes[from..<to])
            guard slice.contains(UInt8(ascii: "&")) else { return String(decoding: slice, as: UTF8.self) }
            var out: [UInt8] = []
            out.reserveCapacity(slice.count)
            var k = from
            while k < to {
                guard bytes[k] == UInt8(ascii: "&") else {
                    out.append(bytes[k])
                    k += 1
                    continue
                }
                var end = k
                while end < to && bytes[end] != UInt8(ascii: ";") { end += 1 }
                guard end < to else { return nil }
                let entity = text(k + 1, end)
                switch entity {
                case "lt": out.append(UInt8(ascii: "<"))
                case "gt": out.append(UInt8(ascii: ">"))
                case "amp": out.append(UInt8(ascii: "&"))
                case "apos": out.append(UInt8(ascii: "'"))
                case "quot": out.append(UInt8(ascii: "\""))
                default:
                    let number: UInt32?
                    if entity.hasPrefix("#x") {
                        number = UInt32(entity.dropFirst(2), radix: 16)
                    } else if entity.hasPrefix("#") {
                        number = UInt32(entity.dropFirst())
                    } else {
                        number = nil
                    }
                    guard let number, let scalar = Unicode.Scalar(number) else { return nil }
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                }
                k = end + 1
            }
            return String(decoding: out, as: UTF8.self)
        }
    }
}
