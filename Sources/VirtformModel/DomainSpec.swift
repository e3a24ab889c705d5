
/// The part of a libvirt domain that virtform manages, in a normalized form.
///
/// Desired domains are rendered into this form from the manifests and observed domains are
/// read back into it from their XML; comparing these two values, and nothing else, is what
/// keeps a freshly applied site free of false drift (libvirt's own defaults, controllers,
/// addresses and labels never enter it).
public struct DomainSpec: Hashable, Sendable, Codable {
    public var name: String
    /// libvirt's domain type: kvm, qemu or xen.
    public var domainType: String
    /// `hvm`, or `linux` for a paravirtualized guest.
    public var osType: String
    /// The most memory the guest may have (`<memory>`).
    public var memoryKiB: UInt64
    /// What the guest has now (`<currentMemory>`, the balloon's target); virtform asks for all
    /// of `memoryKiB`.
    public var currentMemoryKiB: UInt64
    /// vCPUs online (`<vcpu current=…>`).
    public var vcpus: Int
    /// The most vCPUs the guest can have while it runs (`<vcpu>`); at least `vcpus`.
    public var maxVCPUs: Int
    public var interfaces: [InterfaceSpec]
    public var disks: [DiskSpec]

    public init(name: String, domainType: String, osType: String, memoryKiB: UInt64, currentMemoryKiB: UInt64? = nil, vcpus: Int,
                maxVCPUs: Int? = nil, interfaces: [InterfaceSpec], disks: [DiskSpec]) {
        self.name = name
        self.domainType = domainType
        self.osType = osType
        self.memoryKiB = memoryKiB
        self.currentMemoryKiB = currentMemoryKiB ?? memoryKiB
        self.vcpus = vcpus
        self.maxVCPUs = max(maxVCPUs ?? vcpus, vcpus)
        self.interfaces = interfaces
        self.disks = disks
    }

    enum CodingKeys: String, CodingKey {
        case name, domainType, osType, vcpus, interfaces, disks
        case maxVCPUs = "maxVcpus"
        case memoryKiB = "memoryKib"
        case currentMemoryKiB = "currentMemoryKib"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(name: try container.decode(String.self, forKey: .name), domainType: try container.decode(String.self, forKey: .domainType),
                  osType: try container.decode(String.self, forKey: .osType), memoryKiB: try container.decode(UInt64.self, forKey: .memoryKiB),
                  currentMemoryKiB: try container.decodeIfPresent(UInt64.self, forKey: .currentMemoryKiB),
                  vcpus: try container.decode(Int.self, forKey: .vcpus), maxVCPUs: try container.decodeIfPresent(Int.self, forKey: .maxVCPUs),
                  interfaces: try container.decode([InterfaceSpec].self, forKey: .interfaces), disks: try container.decode([DiskSpec].self, forKey: .disks))
    }

    /// `maxVcpus` only when it is more than `vcpus`: plans of guests without vCPU hot-plug stay
    /// as they were.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(domainType, forKey: .domainType)
        try container.encode(osType, forKey: .osType)
        try container.encode(memoryKiB, forKey: .memoryKiB)
        try container.encode(currentMemoryKiB, forKey: .currentMemoryKiB)
        try container.encode(vcpus, forKey: .vcpus)
        if maxVCPUs != vcpus { try container.encode(maxVCPUs, forKey: .maxVCPUs) }
        try container.encode(interfaces, forKey: .interfaces)
        try container.encode(disks, forKey: .disks)
    }

    public struct InterfaceSpec: Hashable, Sendable, Codable {
        /// What the user-mode attachment is called in `bridge`.
        public static let userMode = "user"

        public var mac: String
        /// The bridge it is attached to; `network:NAME` for a libvirt network, `user` for QEMU's
        /// user-mode networking.
        public var bridge: String

        public init(mac: String, bridge: String) {
            self.mac = mac
            self.bridge = bridge
        }
    }

    /// A LUN attached over iSCSI, as QEMU opens it.
    public struct DiskSpec: Hashable, Sendable, Codable {
        public var target: String
        public var lun: Int
        public var portalHost: String
        public var portalPort: Int
        /// CHAP: the account QEMU logs in with, and the usage of the host's libvirt secret that
        /// holds its secret (`<auth username=…><secret type='iscsi' usage=…/></auth>`).
        public var chapUsername: String?
        public var secretUsage: String?
        /// The initiator name QEMU logs in as (`<initiator><iqn name=…/></initiator>`).
        public var initiator: String?

        public init(target: String, lun: Int, portalHost: String, portalPort: Int, chapUsername: String? = nil, secretUsage: String? = nil,
                    initiator: String? = nil) {
            self.target = target
            self.lun = lun
            self.portalHost = portalHost
            self.portalPort = portalPort
            self.chapUsername = chapUsername
            self.secretUsage = secretUsage
            self.initiator = initiator
        }
    }

    /// A short digest of the managed fields, stored in the ownership mark: a domain whose
    /// digest no longer matches its fields was changed outside virtform.
    public var digest: String {
        var hash = StableHash()
        func feed(_ text: String) { hash.feed(text) }
        feed(name)
        feed(domainType)
        feed(osType)
        feed(String(memoryKiB))
        if currentMemoryKiB != memoryKiB { feed("current " + String(currentMemoryKiB)) }
        feed(String(vcpus))
        if maxVCPUs != vcpus { feed("max " + String(maxVCPUs)) }
        for interface in interfaces { feed(interface.mac + "@" + interface.bridge) }
        for disk in disks {
            feed("\(disk.target)/\(disk.lun)@\(disk.portalHost):\(disk.portalPort)")
            if let username = disk.chapUsername { feed("chap \(username) \(disk.secretUsage ?? "")") }
            if let initiator = disk.initiator { feed("initiator \(initiator)") }
        }
        return hash.hex
    }
}

/// virtform's mark in a domain's `<metadata>`: which VM it is and what virtform last wrote.
public struct Ownership: Hashable, Sendable, Codable {
    public static let namespace = "https://virtform.io/xmlns/domain/v1"
    public static let prefix = "virtform"

    public var vm: VMID
    public var digest: String
    /// Deletion protection at the time of the last apply; kept so a VM that leaves the
    /// manifests stays protected until someone turns protection off.
    public var deletionProtection: Bool
    /// The site that owns the domain; nil in marks written before sites existed.
    public var site: String?
    /// The power state virtform last gave the domain (written when it defines, starts or stops
    /// it): a guest found otherwise was started or stopped outside virtform. nil in older marks.
    public var power: VirtualMachine.PowerState?
    /// The host virtform defined the domain on: a domain found on another host was moved
    /// outside virtform. nil in older marks.
    public var host: String?
    /// For a guest HA restarted: the hosts it may still be defined on, fenced or confirmed
    /// down when it was restarted; a stopped copy found there later is removed.
    public var replaces: [String]?
    /// When virtform last moved the domain to another host (Unix seconds): rebalancing leaves
    /// it alone for its cooldown.
    public var movedAt: Int?
    /// The run that last wrote the mark (`virtform history RUN`). Not part of the mark's
    /// meaning: two marks that differ only in it are equal.
    public var run: String?

    public static func == (a: Ownership, b: Ownership) -> Bool {
        (a.vm, a.digest, a.deletionProtection, a.site) == (b.vm, b.digest, b.deletionProtection, b.site)
            && (a.power, a.host, a.replaces, a.movedAt) == (b.power, b.host, b.replaces, b.movedAt)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(vm)
        hasher.combine(digest)
        hasher.combine(site)
        hasher.combine(host)
    }

    public init(vm: VMID, digest: String, deletionProtection: Bool, site: String? = nil,
                power: VirtualMachine.PowerState? = nil, host: String? = nil, replaces: [String]? = nil, movedAt: Int? = nil) {
        self.replaces = replaces
        self.movedAt = movedAt
        self.vm = vm
        self.digest = digest
        self.deletionProtection = deletionProtection
        self.site = site
        self.power = power
        self.host = host
    }
}
