/// The rules for names in manifests.
public enum Names {
    /// A DNS label: 1–63 of `a-z 0-9 -`, starting and ending with a letter or digit. Object names,
    /// projects, bridges and snapshots all follow it, so that `project:name` and IQNs stay valid.
    public static func isName(_ text: some StringProtocol) -> Bool {
        let bytes = Array(text.utf8)
        guard (1...63).contains(bytes.count), bytes.first != UInt8(ascii: "-"), bytes.last != UInt8(ascii: "-")
        else { return false }
        return bytes.allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: "-") }
    }

    /// A host name: dot-separated labels (letters of either case), 253 characters at most.
    public static func isHostname(_ text: some StringProtocol) -> Bool {
        let all = Array(text.utf8)
        guard (1...253).contains(all.count) else { return false }
        return all.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).allSatisfy { bytes in
            guard (1...63).contains(bytes.count), bytes.first != UInt8(ascii: "-"), bytes.last != UInt8(ascii: "-")
            else { return false }
            return bytes.allSatisfy { isLowerAlnum($0 | 0x20) || $0 == UInt8(ascii: "-") }
        }
    }

    /// A label key or value: up to 63 of letters, digits, `-_.`, optionally `prefix/` for keys.
    public static func isLabelValue(_ text: some StringProtocol) -> Bool {
        text.utf8.count <= 63
            && text.utf8.allSatisfy { isLowerAlnum($0 | 0x20) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") }
    }

    public static func isLabelKey(_ text: some StringProtocol) -> Bool {
        let string = String(text)
        if let slash = string.firstIndex(of: "/") {
            let prefix = string[..<slash], rest = string[string.index(after: slash)...]
            return isHostname(prefix) && !rest.isEmpty && isLabelValue(rest)
        }
        return !text.isEmpty && isLabelValue(text)
    }

    /// An iSCSI qualified name prefix: `iqn.YYYY-MM.reversed.domain[:…]`.
    public static func isIQNPrefix(_ text: some StringProtocol) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count >= 12, bytes.count <= 200, text.hasPrefix("iqn.") else { return false }
        let date = bytes[4..<11]
        guard date.enumerated().allSatisfy({ $0.offset == 4 ? $0.element == UInt8(ascii: "-") : isDigit($0.element) }),
            bytes[11] == UInt8(ascii: ".")
        else { return false }
        return bytes[12...].allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: ":") }
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }
    private static func isLowerAlnum(_ byte: UInt8) -> Bool { isDigit(byte) || (byte >= 0x61 && byte <= 0x7a) }
}
