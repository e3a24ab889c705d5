/// An amount of memory or disk, in bytes.
///
/// Manifests write it as a bare number of MiB (`1024`) or with a unit: binary `KiB MiB GiB TiB`
/// (also `K M G T`), or decimal `KB MB GB TB`. Fractions are allowed when they come to whole bytes
/// (`1.5GiB`).
public struct ByteSize: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var bytes: UInt64

    public init(bytes: UInt64) { self.bytes = bytes }
    public static func mebibytes(_ n: UInt64) -> ByteSize { ByteSize(bytes: n << 20) }
    public static func gibibytes(_ n: UInt64) -> ByteSize { ByteSize(bytes: n << 30) }

    public var kibibytes: UInt64 { bytes >> 10 }
    public var mebibytes: UInt64 { bytes >> 20 }

    public static func < (a: ByteSize, b: ByteSize) -> Bool { a.bytes < b.bytes }
    public static func + (a: ByteSize, b: ByteSize) -> ByteSize {
        let (sum, overflow) = a.bytes.addingReportingOverflow(b.bytes)
        return ByteSize(bytes: overflow ? .max : sum)
    }

    static let units: [(String, UInt64)] = [
        ("B", 1),
        ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
        ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40),
        ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000),
    ]

    /// Parses `1024`, `512MiB`, `1GiB`, `1.5 GiB`, `2G`; nil for anything else.
    public init?(parsing text: String) {
        let trimmed = text.trimmingSpaces
        guard !trimmed.isEmpty else { return nil }
        let numberEnd = trimmed.firstIndex { !($0.isASCII && ($0.isNumber || $0 == ".")) } ?? trimmed.endIndex
        let number = trimmed[..<numberEnd]
        let unit = trimmed[numberEnd...].trimmingSpaces
        let multiplier: UInt64
        if unit.isEmpty {
            multiplier = 1 << 20  // a bare number is MiB, as in `domu-init … 1024 …`
        } else if let match = Self.units.first(where: { $0.0 == unit }) {
            multiplier = match.1
        } else {
            return nil
        }
        guard let value = Self.scaled(number, by: multiplier) else { return nil }
        self.bytes = value
    }

    /// Exact decimal scaling without floating point: `1.5` × 2^30 must be exact.
    private static func scaled(_ number: Substring, by multiplier: UInt64) -> UInt64? {
        let parts = number.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, let whole = UInt64(parts[0].isEmpty ? "0" : parts[0]),
            !(parts[0].isEmpty && parts.count == 1)
        else { return nil }
        var (result, overflow) = whole.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { return nil }
        if parts.count == 2 {
            let fraction = parts[1]
            guard !fraction.isEmpty, fraction.count <= 12, let digits = UInt64(fraction) else { return nil }
            var scale: UInt64 = 1
            for _ in 0..<fraction.count { scale *= 10 }
            let (product, overflow2) = digits.multipliedReportingOverflow(by: multiplier)
            guard !overflow2, product % scale == 0 else { return nil }
            (result, overflow) = result.addingReportingOverflow(product / scale)
            guard !overflow else { return nil }
        }
        return result
    }

    /// The largest binary unit that expresses the size exactly: `1GiB`, `1536MiB`, `100B`.
    public var description: String {
        for (unit, size) in [("TiB", UInt64(1) << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        where bytes >= size && bytes % size == 0 {
            return "\(bytes / size)\(unit)"
        }
        return "\(bytes)B"
    }
}

extension StringProtocol {
    var trimmingSpaces: Substring {
        let text = Substring(self)
        let start = text.firstIndex { $0 != " " && $0 != "\t" } ?? text.endIndex
        let end = text.lastIndex { $0 != " " && $0 != "\t" }.map { text.index(after: $0) } ?? text.endIndex
        return start < end ? text[start..<end] : ""
    }
}
