import CLibvirt
import Foundation

/// A domain's run state (`virDomainState`).
public enum DomainState: Sendable, Hashable, CustomStringConvertible {
    case noState
    case running
    case blocked
    case paused
    /// Being shut down.
    case shuttingDown
    case shutOff
    case crashed
    /// Suspended by guest power management.
    case pmSuspended
    /// A state this wrapper does not know, with libvirt's number.
    case unknown(Int32)

    init(rawValue: Int32) {
        switch UInt32(bitPattern: rawValue) {
        case VIR_DOMAIN_NOSTATE.rawValue: self = .noState
        case VIR_DOMAIN_RUNNING.rawValue: self = .running
        case VIR_DOMAIN_BLOCKED.rawValue: self = .blocked
        case VIR_DOMAIN_PAUSED.rawValue: self = .paused
        case VIR_DOMAIN_SHUTDOWN.rawValue: self = .shuttingDown
        case VIR_DOMAIN_SHUTOFF.rawValue: self = .shutOff
        case VIR_DOMAIN_CRASHED.rawValue: self = .crashed
        case VIR_DOMAIN_PMSUSPENDED.rawValue: self = .pmSuspended
        default: self = .unknown(rawValue)
        }
    }

    /// Whether a hypervisor process exists for the domain (anything but shut off / crashed /
    /// no state).
    public var isActive: Bool {
        switch self {
        case .running, .blocked, .paused, .shuttingDown, .pmSuspended: true
        case .noState, .shutOff, .crashed, .unknown: false
        }
    }

    public var description: String {
        switch self {
        case .noState: "no state"
        case .running: "running"
        case .blocked: "blocked"
        case .paused: "paused"
        case .shuttingDown: "shutting down"
        case .shutOff: "shut off"
        case .crashed: "crashed"
        case .pmSuspended: "pm-suspended"
        case .unknown(let value): "unknown (\(value))"
        }
    }
}

/// One entry of `Connection.listAllDomains()`.
public struct DomainSummary: Sendable {
    /// A handle for further calls; no lookup by name needed.
    public let domain: Domain
    public let state: DomainState
    /// Defined (has a persistent configuration) rather than transient.
    public let isPersistent: Bool

    public var name: String { domain.name }
    public var uuid: UUID { domain.uuid }
}

/// `virDomainGetInfo`.
public struct DomainInfo: Sendable, Hashable {
    public let state: DomainState
    /// Maximum memory in KiB.
    public let maxMemoryKiB: UInt64
    /// Current memory in KiB.
    public let memoryKiB: UInt64
    public let virtualCPUs: Int
    /// CPU time used, in nanoseconds.
    public let cpuTimeNanoseconds: UInt64
}

/// Which definition a change applies to (`virDomainModificationImpact`). Empty means "current":
/// the live domain if it runs, else the persistent configuration.
public struct DomainModification: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let current: DomainModification = []
    /// The running domain.
    public static let live = DomainModification(rawValue: VIR_DOMAIN_AFFECT_LIVE.rawValue)
    /// The persistent configuration (takes effect on next start).
    public static let config = DomainModification(rawValue: VIR_DOMAIN_AFFECT_CONFIG.rawValue)
}

/// `virDomainXMLFlags`.
public struct DomainXMLFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Include security-sensitive information (passwords).
    public static let secure = DomainXMLFlags(rawValue: VIR_DOMAIN_XML_SECURE.rawValue)
    /// The persistent definition rather than the live one.
    public static let inactive = DomainXMLFlags(rawValue: VIR_DOMAIN_XML_INACTIVE.rawValue)
    /// Update guest CPU requirements from the host CPU.
    public static let updateCPU = DomainXMLFlags(rawValue: VIR_DOMAIN_XML_UPDATE_CPU.rawValue)
    /// XML suitable for migration (no run-time-only details).
    public static let migratable = DomainXMLFlags(rawValue: VIR_DOMAIN_XML_MIGRATABLE.rawValue)
}

/// `virDomainUndefineFlagsValues`.
public struct UndefineFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Also remove a managed-save image.
    public static let managedSave = UndefineFlags(rawValue: VIR_DOMAIN_UNDEFINE_MANAGED_SAVE.rawValue)
    /// Also remove snapshot metadata.
    public static let snapshotsMetadata = UndefineFlags(rawValue: VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA.rawValue)
    /// Also remove checkpoint metadata.
    public static let checkpointsMetadata = UndefineFlags(
        rawValue: VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA.rawValue)
    /// Also remove the NVRAM file.
    public static let nvram = UndefineFlags(rawValue: VIR_DOMAIN_UNDEFINE_NVRAM.rawValue)
    /// Keep the NVRAM file.
    public static let keepNVRAM = UndefineFlags(rawValue: VIR_DOMAIN_UNDEFINE_KEEP_NVRAM.rawValue)
}

/// Which metadata slot (`virDomainMetadataType`).
public enum MetadataType: Sendable, Hashable {
    /// `<description>`.
    case description
    /// `<title>`.
    case title
    /// An element of your own under `<metadata>`, identified by namespace URI.
    case element

    var rawValue: Int32 {
        switch self {
        case .description: Int32(VIR_DOMAIN_METADATA_DESCRIPTION.rawValue)
        case .title: Int32(VIR_DOMAIN_METADATA_TITLE.rawValue)
        case .element: Int32(VIR_DOMAIN_METADATA_ELEMENT.rawValue)
        }
    }
}

/// `virDomainMigrateFlags`.
public struct MigrationFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Keep the guest running during migration.
    public static let live = MigrationFlags(rawValue: VIR_MIGRATE_LIVE.rawValue)
    /// The source daemon talks to the destination daemon directly.
    public static let peerToPeer = MigrationFlags(rawValue: VIR_MIGRATE_PEER2PEER.rawValue)
    /// Tunnel migration data over libvirt's RPC connection (needs `peerToPeer`).
    public static let tunnelled = MigrationFlags(rawValue: VIR_MIGRATE_TUNNELLED.rawValue)
    /// Define the domain persistently on the destination.
    public static let persistDestination = MigrationFlags(rawValue: VIR_MIGRATE_PERSIST_DEST.rawValue)
    /// Undefine the domain on the source once migration succeeded.
    public static let undefineSource = MigrationFlags(rawValue: VIR_MIGRATE_UNDEFINE_SOURCE.rawValue)
    /// Leave the guest paused on the destination.
    public static let paused = MigrationFlags(rawValue: VIR_MIGRATE_PAUSED.rawValue)
    /// Copy all disks (non-shared storage).
    public static let nonSharedDisk = MigrationFlags(rawValue: VIR_MIGRATE_NON_SHARED_DISK.rawValue)
    /// Copy disks incrementally (non-shared storage with a shared backing image).
    public static let nonSharedIncremental = MigrationFlags(rawValue: VIR_MIGRATE_NON_SHARED_INC.rawValue)
    /// Protect against domain configuration changes during migration.
    public static let changeProtection = MigrationFlags(rawValue: VIR_MIGRATE_CHANGE_PROTECTION.rawValue)
    /// Skip libvirt's safety checks (e.g. disk cache mode).
    public static let unsafe = MigrationFlags(rawValue: VIR_MIGRATE_UNSAFE.rawValue)
    /// Migrate only the definition of an inactive domain.
    public static let offline = MigrationFlags(rawValue: VIR_MIGRATE_OFFLINE.rawValue)
    public static let compressed = MigrationFlags(rawValue: VIR_MIGRATE_COMPRESSED.rawValue)
    /// Cancel on an I/O error during migration.
    public static let abortOnError = MigrationFlags(rawValue: VIR_MIGRATE_ABORT_ON_ERROR.rawValue)
    /// Throttle the guest's CPUs if migration does not converge.
    public static let autoConverge = MigrationFlags(rawValue: VIR_MIGRATE_AUTO_CONVERGE.rawValue)
}
