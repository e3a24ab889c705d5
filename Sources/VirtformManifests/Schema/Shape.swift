import VirtformModel

/// What a value in a manifest may look like. The manifest checker and the JSON Schema are both
/// derived from these shapes, so editors and `virtform validate` agree on the language.
public indirect enum Shape: Sendable {
    case string(StringFormat)
    case integer(ClosedRange<Int>)
    case boolean
    /// Memory or disk size: `1024` (MiB), `512MiB`, `1GiB`.
    case byteSize
    case choice([String])
    case list(Shape, minItems: Int = 0, maxItems: Int? = nil, unique: Bool = false)
    /// A mapping of free-form keys to strings (labels, selectors).
    case stringMap(key: StringFormat, value: StringFormat)
    case object(ObjectShape)
}

/// A mapping with known fields. A class, so that walking the language tree copies nothing.
public final class ObjectShape: Sendable {
    public let fields: [Field]
    /// Groups of fields of which exactly one must be present.
    public let exactlyOne: [[String]]
    public let doc: String

    public init(_ doc: String = "", exactlyOne: [[String]] = [], _ fields: [Field]) {
        self.fields = fields
        self.exactlyOne = exactlyOne
        self.doc = doc
    }

    public func field(_ name: String) -> Field? { fields.first { $0.name == name } }
    func fieldIndex(_ name: String) -> Int? { fields.firstIndex { $0.name == name } }
}

public struct Field: Sendable {
    public var name: String
    public var shape: Shape
    public var required: Bool
    public var doc: String

    public init(_ name: String, _ shape: Shape, required: Bool = false, _ doc: String) {
        self.name = name
        self.shape = shape
        self.required = required
        self.doc = doc
    }

    public static func required(_ name: String, _ shape: Shape, _ doc: String) -> Field {
        Field(name, shape, required: true, doc)
    }
}

/// Kinds of string with a format of their own.
public enum StringFormat: Sendable {
    case any
    case name
    case hostname
    case ipv4
    case subnet
    case mac
    case hostPort
    case absolutePath
    case iqnPrefix
    case snapshotReference
    case vmReference
    case uri
    case labelKey
    case labelValue
    case stateBackend
    case filePath

    /// What the message says was expected.
    public var expectation: String {
        switch self {
        case .any: return "a string"
        case .name: return "a name of 1-63 lowercase letters, digits and '-', not starting or ending with '-'"
        case .hostname: return "a host name such as vm-host1 or web.example.com"
        case .ipv4: return "an IPv4 address such as 192.168.76.71"
        case .subnet: return "an IPv4 subnet in CIDR form such as 192.168.76.0/24 (the network address, not a host's)"
        case .mac: return "a MAC address such as 52:54:00:12:34:56"
        case .hostPort: return "an address and port such as 127.0.0.1:3260"
        case .absolutePath: return "an absolute path"
        case .iqnPrefix: return "an iSCSI name prefix such as iqn.2026-11.io.virtform"
        case .snapshotReference: return "an image snapshot as project/image@snapshot, e.g. masters/osol-0811@version-01"
        case .vmReference: return "a VM as project/name, e.g. appl-1/vm-1"
        case .uri: return "a URI such as qemu+ssh://root@vm-host1/system"
        case .labelKey: return "a label key (letters, digits, '-', '_', '.', optional prefix/)"
        case .labelValue: return "a label value of at most 63 letters, digits, '-', '_', '.'"
        case .stateBackend: return "file:DIR or postgres://user@host:port/database, with no password in it (PGPASSWORD gives it)"
        case .filePath: return "a file's path (absolute, or relative to the manifest's directory)"
        }
    }

    public func accepts(_ text: String) -> Bool {
        switch self {
        case .any: return true
        case .name: return Names.isName(text)
        case .hostname: return Names.isHostname(text)
        case .ipv4: return IPv4Address(parsing: text) != nil
        case .subnet: return IPv4Subnet(parsing: text) != nil
        case .mac: return MACAddress(parsing: text) != nil
        case .hostPort: return HostPort(parsing: text) != nil
        case .absolutePath: return text.hasPrefix("/") && !text.contains("\0")
        case .iqnPrefix: return Names.isIQNPrefix(text)
        case .snapshotReference: return SnapshotReference(parsing: text) != nil
        case .vmReference: return VMID(parsing: text) != nil
        case .uri:
            guard let colon = text.firstIndex(of: ":"), colon != text.startIndex else { return false }
            return text[..<colon].allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "+-.".contains($0)) }
                && !text.contains(" ")
        case .labelKey: return Names.isLabelKey(text)
        case .labelValue: return Names.isLabelValue(text)
        case .filePath: return !text.isEmpty && !text.contains("\0")
        case .stateBackend:
            if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
                guard let scheme = text.range(of: "://"), !text.contains(" ") else { return false }
                let rest = text[scheme.upperBound...]
                // No password: user[@host…] only.
                return rest.firstIndex(of: "@").map { !rest[..<$0].contains(":") } ?? true
            }
            let path = text.hasPrefix("file:") ? String(text.dropFirst(5)) : text
            return !path.isEmpty && !path.contains("://") && !path.contains("\0")
        }
    }

    /// An approximation for editors; the checker above is the authority.
    var pattern: String? {
        switch self {
        case .name: return "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
        case .ipv4: return "^([0-9]{1,3}\\.){3}[0-9]{1,3}$"
        case .subnet: return "^([0-9]{1,3}\\.){3}[0-9]{1,3}/[0-9]{1,2}$"
        case .mac: return "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"
        case .hostPort: return "^[^:\\s]+:[0-9]{1,5}$"
        case .absolutePath: return "^/"
        case .iqnPrefix: return "^iqn\\.[0-9]{4}-[0-9]{2}\\.[a-z0-9.:-]+$"
        case .snapshotReference: return "^[a-z0-9-]+/[a-z0-9-]+@[a-z0-9-]+$"
        case .vmReference: return "^[a-z0-9-]+[/:][a-z0-9-]+$"
        case .uri: return "^[A-Za-z][A-Za-z0-9+.-]*:"
        default: return nil
        }
    }
}

extension Shape {
    /// What the message says was expected.
    public var expectation: String {
        switch self {
        case .string(let format): return format.expectation
        case .integer(let range):
            return range.upperBound == Int.max ? "a whole number of at least \(range.lowerBound)" : "a whole number from \(range.lowerBound) to \(range.upperBound)"
        case .boolean: return "true or false"
        case .byteSize: return "a size such as 1024 (MiB), 512MiB or 1GiB"
        case .choice(let options): return "one of " + options.map { "\"\($0)\"" }.joined(separator: ", ")
        case .list(let item, _, _, _): return "a list of \(item.expectation)"
        case .stringMap: return "a mapping of labels to values"
        case .object: return "a mapping"
        }
    }
}
