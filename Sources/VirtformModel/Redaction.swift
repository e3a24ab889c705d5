/// What virtform never writes out: passwords in the user part of URIs (`qemu+tcp://user:pw@h/…`,
/// a Kea control agent's `http://user:pw@h:8000`). Every output — text, JSON, saved plans,
/// errors, libvirt's own messages — goes through `redacted`, so a secret in a manifest is
/// shown as `(sensitive)` wherever it would appear; control characters are escaped so no value
/// can forge a line of output (`escapingControls`).
public enum Redaction {
    public static let placeholder = "(sensitive)"

    /// `text` with the password of every `scheme://user:password@` replaced by `(sensitive)`.
    public static func redacted(_ text: String) -> String {
        // The common case, a line of progress or a plan without URIs: one scan, no copy.
        guard text.utf8.contains(UInt8(ascii: "@")) else { return text }
        let bytes = Array(text.utf8)
        var result: [UInt8] = []
        var changed = false
        var i = 0
        while i < bytes.count {
            // After "://": the user part runs to '@'; '/', '?', '#', a space or a quote first means none.
            if i + 3 <= bytes.count, bytes[i] == UInt8(ascii: ":"), bytes[i + 1] == UInt8(ascii: "/"), bytes[i + 2] == UInt8(ascii: "/") {
                result += bytes[i..<(i + 3)]
                i += 3
                var end = i
                while end < bytes.count, !Self.endsUserPart(bytes[end]) { end += 1 }
                if end < bytes.count, bytes[end] == UInt8(ascii: "@"), let colon = bytes[i..<end].firstIndex(of: UInt8(ascii: ":")) {
                    result += bytes[i...colon]
                    result += Array(placeholder.utf8)
                    changed = true
                    i = end
                }
                continue
            }
            result.append(bytes[i])
            i += 1
        }
        return changed ? String(decoding: result, as: UTF8.self) : text
    }

    private static func endsUserPart(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "@"), UInt8(ascii: "/"), UInt8(ascii: "?"), UInt8(ascii: "#"), UInt8(ascii: " "), UInt8(ascii: "\t"),
             UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\""), UInt8(ascii: "'"): true
        default: false
        }
    }

    /// `text` with every control character (newlines too, unless `keepingNewlines`) written as
    /// `\u{…}`: a value quoted into a line of output cannot start a line of its own or move the
    /// cursor.
    public static func escapingControls(_ text: String, keepingNewlines: Bool = false) -> String {
        func escapes(_ scalar: Unicode.Scalar) -> Bool { isControl(scalar) || (!keepingNewlines && (scalar == "\n" || scalar == "\t")) }
        guard text.unicodeScalars.contains(where: escapes) else { return text }
        var result = ""
        for scalar in text.unicodeScalars {
            if escapes(scalar) {
                result += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        (scalar.value < 0x20 && scalar != "\n" && scalar != "\t") || scalar.value == 0x7f || (0x80...0x9f).contains(scalar.value)
            || scalar == "\u{2028}" || scalar == "\u{2029}"
    }
}
