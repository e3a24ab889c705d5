/// Text for XML content and attribute values (domain XML, JUnit reports).
public enum XMLText {
    /// `&`, `<`, `>`, `'` and `"` as entities. Names, MACs, IQNs and digests never need it: no
    /// copy is made for them.
    public static func escaped(_ text: String) -> String {
        guard text.utf8.contains(where: { $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: "<") || $0 == UInt8(ascii: ">")
            || $0 == UInt8(ascii: "'") || $0 == UInt8(ascii: "\"") }) else { return text }
        var result = ""
        for character in text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "'": result += "&apos;"
            case "\"": result += "&quot;"
            default: result.append(character)
            }
        }
        return result
    }
}
