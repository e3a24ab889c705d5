
/// One domain as libvirt reported it.
public struct ObservedDomain: Hashable, Sendable, Codable {
    public enum State: String, Sendable, Codable {
        case running, paused, shutoff, crashed, other
    }

    public var host: String
    public var name: String
    public var uuid: String
    public var state: State
    public var persistent: Bool
    /// The managed fields, read from the persistent (inactive) definition.
    public var spec: DomainSpec
    /// virtform's mark; nil for domains virtform does not own.
    public var ownership: Ownership?
    /// For a running (or paused) persistent domain whose live definition differs from its
    /// persistent one: the managed fields of what runs now (nil when they are the same, or the
    /// domain does not run). A difference from `spec` waits for the guest's next start.
    public var live: DomainSpec?
    /// Whether devices can be attached to and detached from what runs: false for an `hvm`
    /// guest that started without ACPI (QEMU's `pc` machine then has no PCI hot-plug).
    public var hotplug: Bool

    public init(host: String, name: String, uuid: String, state: State, persistent: Bool, spec: DomainSpec,
                ownership: Ownership?, live: DomainSpec? = nil, hotplug: Bool = true) {
        self.live = live
        self.hotplug = hotplug
        self.host = host
        self.name = name
        self.uuid = uuid
        self.state = state
        self.persistent = persistent
        self.spec = spec
        self.ownership = ownership
    }

    /// What a saved plan remembers, so apply can tell whether the domain moved on since.
    public var fingerprint: String {
        "\(host)|\(uuid)|\(state.rawValue)|\(persistent)|\(spec.digest)|\(ownership?.digest ?? "-")|\(live?.digest ?? "-")"
    }
}

/// What observing one host gave: its domains, or why it could not be read. A host that could
/// not be read is never taken to have no domains.
public enum HostObservation: Sendable {
    case reachable([ObservedDomain])
    case unreachable(reason: String)
}

/// One of virtform's libvirt secrets on a host (usage `virtform:…`): which CHAP secret it
/// holds, as far as can be told without reading it back.
public struct ObservedSecret: Sendable, Hashable {
    public var usage: String
    public var uuid: String
    /// Whether it holds what the manifest's `secretRef` holds now (its description keeps a
    /// salted digest of the value); nil when that cannot be told (the source could not be read).
    public var current: Bool?

    public init(usage: String, uuid: String, current: Bool?) {
        self.usage = usage
        self.uuid = uuid
        self.current = current
    }
}

/// Everything observed on the hypervisors of a site.
public struct ObservedSite: Sendable {
    public var hosts: [String: HostObservation]
    /// virtform's libvirt secrets, by host: only hosts whose secrets were listed (one missing here:
    /// unknown, and nothing is planned for them).
    public var secrets: [String: [ObservedSecret]] = [:]

    public init(hosts: [String: HostObservation]) {
        self.hosts = hosts
    }

    public var unreachableHosts: [(host: String, reason: String)] {
        hosts.compactMap { name, observation in
            if case .unreachable(let reason) = observation { return (name, reason) }
            return nil
        }.sorted { $0.host < $1.host }
    }

    public var domains: [ObservedDomain] {
        hosts.keys.sorted().flatMap { name -> [ObservedDomain] in
            if case .reachable(let domains) = hosts[name]! { return domains.sorted { $0.name < $1.name } }
            return []
        }
    }
}
