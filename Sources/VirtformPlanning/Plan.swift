import VirtformModel

/// What virtform would do, as data: rendered as text for people and as JSON for CI, saved to
/// a file by `plan --out` and carried out by `apply`.
public struct Plan: Codable, Sendable {
    public static let formatVersion = "1"

    public var formatVersion = Plan.formatVersion
    public var changes: [Change] = []
    /// Problems that stop the plan from being applied (a VM that fits nowhere, a name taken).
    public var errors: [Problem] = []
    public var unreachableHosts: [UnreachableHost] = []
    /// VMs whose state cannot be told because a host they may be on could not be read.
    public var unknown: [UnknownVM] = []
    /// Domains virtform does not own; listed only when asked for.
    public var unmanaged: [UnmanagedDomain] = []
    /// Resource → fingerprint of what it was observed as (`absent` for what is to be created),
    /// for apply to check that a saved plan still matches what is there.
    public var observed: [String: String] = [:]
    /// Host name → libvirt URI.
    public var hosts: [String: String] = [:]
    /// For a saved plan: the manifest paths (absolute) it was made from, and whether deletions
    /// were allowed. `apply PLAN` plans again from them and carries the plan out only if the
    /// result is the same.
    public var sources: [String]?
    public var allowDestroy: Bool?

    public static let absent = "absent"

    public init() {}

    public var isEmpty: Bool { changes.isEmpty }

    /// Whether `host` of a change names a system other than a hypervisor.
    public static func isSystem(_ host: String) -> Bool { host.contains("/") }

    public func count(_ action: Change.Action) -> Int { changes.filter { $0.action == action }.count }

    public struct Problem: Codable, Sendable, Hashable {
        public var resource: String
        public var message: String
        public init(resource: String, message: String) { self.resource = resource; self.message = message }
    }

    public struct UnreachableHost: Codable, Sendable, Hashable {
        public var host: String
        public var reason: String
        public init(host: String, reason: String) { self.host = host; self.reason = reason }
    }

    public struct UnknownVM: Codable, Sendable, Hashable {
        public var resource: String
        public var reason: String
        public init(resource: String, reason: String) { self.resource = resource; self.reason = reason }
    }

    public struct UnmanagedDomain: Codable, Sendable, Hashable {
        public var host: String
        public var name: String
        public var state: String
        public init(host: String, name: String, state: String) { self.host = host; self.name = name; self.state = state }
    }
}

/// One change to one resource.
public struct Change: Codable, Sendable, Hashable {
    public enum Action: String, Codable, Sendable, CaseIterable {
        case create, update, start, stop, delete, migrate
    }

    public var action: Action
    /// `VirtualMachine/appl-1/vm-1`, `StorageVolume/appl-1/vm-1`, `NetworkBinding/vm-1-public`.
    public var resource: String
    /// Where the change happens: a hypervisor's name, or the system that holds the resource
    /// (`StoragePool/lab-pool`, `DHCPServer/lab-dhcp`; always with a slash).
    public var host: String
    /// For resources other than domains: what is created or removed, in one line.
    public var summary: String?
    /// For a migration: where the guest goes.
    public var destination: String?
    public var before: DomainSpec?
    public var after: DomainSpec?
    /// The mark a create or update writes on the domain.
    public var ownership: Ownership?
    /// For updates: each field that differs and whether it can change on a running guest.
    public var fields: [FieldChange] = []
    /// Why, for people.
    public var reason: String
    /// Set when apply will not carry the change out as things stand, and why.
    public var blocked: String?

    public init(action: Action, resource: String, host: String, destination: String? = nil, before: DomainSpec? = nil,
                after: DomainSpec? = nil, ownership: Ownership? = nil, fields: [FieldChange] = [], reason: String,
                blocked: String? = nil, summary: String? = nil) {
        self.summary = summary
        self.ownership = ownership
        self.action = action
        self.resource = resource
        self.host = host
        self.destination = destination
        self.before = before
        self.after = after
        self.fields = fields
        self.reason = reason
        self.blocked = blocked
    }
}

public struct FieldChange: Codable, Sendable, Hashable {
    public var field: String
    public var before: String
    public var after: String
    /// True when it applies to the running guest; false when it takes effect at the next start.
    public var live: Bool

    public init(field: String, before: String, after: String, live: Bool) {
        self.field = field
        self.before = before
        self.after = after
        self.live = live
    }
}

extension DomainSpec {
    /// The fields that differ from `other` (the desired spec), each marked live or needs-restart.
    public func changes(to desired: DomainSpec) -> [FieldChange] {
        var result: [FieldChange] = []
        if domainType != desired.domainType {
            result.append(FieldChange(field: "domainType", before: domainType, after: desired.domainType, live: false))
        }
        if osType != desired.osType {
            result.append(FieldChange(field: "type", before: osType, after: desired.osType, live: false))
        }
        if memoryKiB != desired.memoryKiB {
            // Lowering works through the balloon; raising needs a larger maximum, set at the next start.
            result.append(FieldChange(field: "memory", before: ByteSize(bytes: memoryKiB << 10).description,
                                      after: ByteSize(bytes: desired.memoryKiB << 10).description,
                                      live: desired.memoryKiB < memoryKiB))
        }
        if vcpus != desired.vcpus {
            result.append(FieldChange(field: "vcpus", before: String(vcpus), after: String(desired.vcpus), live: false))
        }
        if interfaces != desired.interfaces {
            // Added and removed interfaces are hot-plugged; a changed MAC on the same bridge is too.
            result.append(FieldChange(field: "interfaces", before: Self.describe(interfaces), after: Self.describe(desired.interfaces),
                                      live: true))
        }
        if disks != desired.disks {
            result.append(FieldChange(field: "disks", before: Self.describe(disks), after: Self.describe(desired.disks), live: false))
        }
        return result
    }

    public static func describe(_ interfaces: [InterfaceSpec]) -> String {
        interfaces.isEmpty ? "none" : interfaces.map { "\($0.bridge)/\($0.mac)" }.joined(separator: ", ")
    }

    public static func describe(_ disks: [DiskSpec]) -> String {
        disks.isEmpty ? "none" : disks.map { "\($0.target)/\($0.lun)@\($0.portalHost):\($0.portalPort)" }.joined(separator: ", ")
    }
}
