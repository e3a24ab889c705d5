/// FNV-1a, 64 bits: a hash that is the same on every run and machine (Swift's `Hasher` is
/// seeded per process). For derived MACs, change digests and lock names; not for security.
public struct StableHash: Sendable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    /// Adds the text's bytes and then a separator, so `("ab","c")` and `("a","bc")` differ.
    public mutating func feed(_ text: String) {
        for byte in text.utf8 { mix(byte) }
        mix(0xff)
    }

    /// Adds raw bytes, without a separator.
    public mutating func feed(bytes: [UInt8]) {
        var value = value
        for byte in bytes {
            value ^= UInt64(byte)
            value &*= 0x0000_0100_0000_01b3
        }
        self.value = value
    }

    private mutating func mix(_ byte: UInt8) {
        value ^= UInt64(byte)
        value &*= 0x0000_0100_0000_01b3
    }

    /// 16 lower-case hex digits.
    public var hex: String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    public static func of(_ parts: String...) -> StableHash {
        var hash = StableHash()
        for part in parts { hash.feed(part) }
        return hash
    }
}
