/// One descriptor per driver a manifest can name: which system it drives, what of the object's
/// `spec` it needs and cannot use, what it can do, and whether it is a stand-in. The validator
/// checks manifests against these, the schema lists their names, the planner and the plan read
/// their capabilities and stand-in status; each driver module's factory makes the driver for a
/// name listed here.
public struct DriverDescriptor: Sendable, Hashable {
    public enum System: String, Sendable, Hashable, CaseIterable {
        /// `Host.spec.domainType`: libvirt's driver for the host's guests.
        case hypervisor
        /// `StoragePool.spec.driver`.
        case storagePool
        /// `StoragePool.spec.export.driver`.
        case export
        /// `DHCPServer.spec.driver`.
        case dhcpServer
    }

    public var system: System
    public var name: String
    /// What it is, in a few words (for people and the schema).
    public var summary: String
    /// `spec` fields the driver needs, with what each is for.
    public var requires: [String: String]
    /// `spec` fields it cannot use, with what to use instead.
    public var rejects: [String: String]
    /// For hypervisor drivers: what they change on a running guest.
    public var hypervisor: HypervisorCapabilities?
    /// For storage drivers: what they can do before anything is probed (a `dir` pool learns
    /// its clone method from its probe).
    public var storage: StorageCapabilities?
    /// For export drivers.
    public var export: ExportCapabilities?
    /// For DHCP drivers.
    public var dhcp: DHCPCapabilities?
    /// Why it is a stand-in — checked only by the command lines it would run, since the real
    /// thing cannot run on the machines virtform is tested on — or nil.
    public var standIn: String?

    public init(system: System, name: String, summary: String, requires: [String: String] = [:], rejects: [String: String] = [:],
                hypervisor: HypervisorCapabilities? = nil, storage: StorageCapabilities? = nil, export: ExportCapabilities? = nil,
                dhcp: DHCPCapabilities? = nil, standIn: String? = nil) {
        self.system = system
        self.name = name
        self.summary = summary
        self.requires = requires
        self.rejects = rejects
        self.hypervisor = hypervisor
        self.storage = storage
        self.export = export
        self.dhcp = dhcp
        self.standIn = standIn
    }
}

/// What a hypervisor driver changes on a running guest without restarting it.
public struct HypervisorCapabilities: Sendable, Hashable {
    /// The balloon's target, up to the guest's maximum memory.
    public var liveMemory: Bool
    /// vCPUs raised up to the guest's maximum (`maxVcpus`); never lowered live (QEMU's `pc`
    /// machine cannot unplug a CPU).
    public var liveVCPUs: Bool
    /// Interfaces attached and detached on the running guest (an `hvm` guest needs ACPI, which
    /// virtform's definitions turn on, from its last start).
    public var interfaceHotplug: Bool
    /// Live migration between hosts of the same driver.
    public var migration: Bool

    public init(liveMemory: Bool, liveVCPUs: Bool, interfaceHotplug: Bool, migration: Bool) {
        self.liveMemory = liveMemory
        self.liveVCPUs = liveVCPUs
        self.interfaceHotplug = interfaceHotplug
        self.migration = migration
    }

    /// Nothing live: every change waits for a restart.
    public static let none = HypervisorCapabilities(liveMemory: false, liveVCPUs: false, interfaceHotplug: false, migration: false)
}

/// What an iSCSI export driver can do.
public struct ExportCapabilities: Sendable, Hashable {
    /// Targets admit only the initiator names a pool lists (`export.initiators`).
    public var restrictInitiators: Bool

    public init(restrictInitiators: Bool) {
        self.restrictInitiators = restrictInitiators
    }
}

/// What a DHCP driver can do.
public struct DHCPCapabilities: Sendable, Hashable {
    /// Two endpoints kept in step as an HA pair (for dnsmasq: the same reservations written to
    /// both servers' hosts files).
    public var highAvailability: Bool
    /// Reservations changed without restarting the server (control socket or reload signal).
    public var liveReload: Bool

    public init(highAvailability: Bool, liveReload: Bool) {
        self.highAvailability = highAvailability
        self.liveReload = liveReload
    }
}

/// Every driver virtform has.
public enum Drivers {
    public static let all: [DriverDescriptor] = [
        DriverDescriptor(system: .hypervisor, name: "kvm", summary: "libvirt's QEMU driver with KVM acceleration",
                         hypervisor: HypervisorCapabilities(liveMemory: true, liveVCPUs: true, interfaceHotplug: true, migration: true)),
        DriverDescriptor(system: .hypervisor, name: "qemu", summary: "libvirt's QEMU driver, emulated (TCG)",
                         hypervisor: HypervisorCapabilities(liveMemory: true, liveVCPUs: true, interfaceHotplug: true, migration: true)),
        DriverDescriptor(system: .hypervisor, name: "xen", summary: "libvirt's libxl driver for Xen",
                         hypervisor: HypervisorCapabilities(liveMemory: true, liveVCPUs: true, interfaceHotplug: true, migration: true),
                         standIn: "Xen cannot run on the test machines; its domains are checked only as libvirt XML"),
        DriverDescriptor(system: .hypervisor, name: "test", summary: "libvirt's test driver: domains without guests, for benchmarks and tests",
                         hypervisor: HypervisorCapabilities(liveMemory: true, liveVCPUs: true, interfaceHotplug: false, migration: false)),
        DriverDescriptor(system: .storagePool, name: "btrfs", summary: "a btrfs filesystem: projects are subvolumes, clones reflinks",
                         requires: ["path": "the pool's mount point or folder"],
                         rejects: ["dataset": "spec.path"],
                         storage: StorageCapabilities(cloneMethod: .reflink, canImport: true, reportsExclusiveBytes: true)),
        DriverDescriptor(system: .storagePool, name: "dir", summary: "any filesystem: projects are folders, clones reflinks where it has them",
                         requires: ["path": "the pool's folder"],
                         rejects: ["dataset": "spec.path"],
                         storage: StorageCapabilities(cloneMethod: nil, canImport: true, reportsExclusiveBytes: false)),
        DriverDescriptor(system: .storagePool, name: "zfs", summary: "a zfs dataset: projects are datasets, LUNs zvols, clones zfs clones",
                         requires: ["dataset": "the parent dataset such as tank/virtform"],
                         rejects: ["path": "spec.dataset"],
                         storage: StorageCapabilities(cloneMethod: .zfsClone, canImport: false, reportsExclusiveBytes: true),
                         standIn: "ZFS cannot run on the test machines; the driver is checked only by the zfs command lines it runs"),
        DriverDescriptor(system: .export, name: "tgt", summary: "Linux's user-space iSCSI target (tgtd, tgtadm)",
                         export: ExportCapabilities(restrictInitiators: true)),
        DriverDescriptor(system: .export, name: "lio", summary: "the kernel's iSCSI target (LIO, targetcli)",
                         export: ExportCapabilities(restrictInitiators: true),
                         standIn: "LIO needs kernel modules the test machines lack; the driver is checked only by the targetcli command lines it runs"),
        DriverDescriptor(system: .dhcpServer, name: "kea", summary: "kea-dhcp4 2.2 or newer, over its control socket",
                         dhcp: DHCPCapabilities(highAvailability: true, liveReload: true)),
        DriverDescriptor(system: .dhcpServer, name: "dnsmasq", summary: "dnsmasq, through its --dhcp-hostsfile",
                         dhcp: DHCPCapabilities(highAvailability: true, liveReload: true)),
    ]

    public static func descriptor(_ system: DriverDescriptor.System, _ name: String) -> DriverDescriptor? {
        all.first { $0.system == system && $0.name == name }
    }

    public static func names(_ system: DriverDescriptor.System) -> [String] {
        all.filter { $0.system == system }.map(\.name)
    }

    /// `btrfs: …; dir: …; zfs: … (a stand-in).`, for the schema.
    public static func describe(_ system: DriverDescriptor.System) -> String {
        all.filter { $0.system == system }.map { "\($0.name): \($0.summary)\($0.standIn == nil ? "" : " (a stand-in)")" }
            .joined(separator: "; ") + "."
    }
}
