/// What a storage pool and its iSCSI export server hold, as observed: pure data, shared by the
/// storage drivers that read it and the planner that compares it with the manifests.

/// How a pool makes a clone from a snapshot.
public enum CloneMethod: String, Sendable, Hashable, Codable {
    /// Shares every block with the snapshot (FICLONE, `cp --reflink=always`): constant time, no space.
    case reflink
    /// Copies the data, skipping holes: time and space grow with the written data.
    case sparseCopy = "sparse-copy"
    /// `zfs clone`: constant time, no space.
    case zfsClone = "zfs-clone"
}

/// What a storage driver can do, as data: the planner blocks what the pool's driver cannot do
/// (an import on zfs) instead of letting apply fail.
public struct StorageCapabilities: Sendable, Hashable {
    /// How clones are made on this pool; for `dir`, known only after `probe()`.
    public var cloneMethod: CloneMethod?
    /// Whether `importImage` works.
    public var canImport: Bool
    /// Whether observation reports exclusive bytes.
    public var reportsExclusiveBytes: Bool

    public init(cloneMethod: CloneMethod?, canImport: Bool, reportsExclusiveBytes: Bool) {
        self.cloneMethod = cloneMethod
        self.canImport = canImport
        self.reportsExclusiveBytes = reportsExclusiveBytes
    }
}

/// The mark virtform puts on everything it creates: which kind of object, its name and, for a
/// clone, the snapshot it came from. Stored as the xattr `user.virtform.owner` (btrfs, dir), the
/// user property `io.virtform:owner` (zfs). The text form is `key=value` pairs joined by commas,
/// e.g. `kind=lun,name=appl-1/vm-1,origin=masters/osol-0811@version-01`: names never contain
/// `,` or `=`, and the text passes through a remote shell unharmed.
public struct OwnershipMark: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        case project, image, snapshot, lun
    }

    public var kind: Kind
    /// `project`, `project/volume` or `project/image@snapshot`.
    public var name: String
    /// The snapshot a LUN was cloned from.
    public var origin: SnapshotReference?
    /// The site that owns the object; nil in marks written before sites existed.
    public var site: String?
    /// The run that made the object (`virtform history RUN`); nil in marks written before runs
    /// were recorded.
    public var run: String?

    /// The run an apply is carrying out, for the marks of what it makes (`PlanExecution`
    /// sets it around each action; read it before leaving the task for a thread of its own).
    @TaskLocal public static var writingRun: String?

    public init(kind: Kind, name: String, origin: SnapshotReference? = nil, site: String? = nil, run: String? = nil) {
        self.kind = kind
        self.name = name
        self.origin = origin
        self.site = site
        self.run = run
    }

    public var description: String {
        var text = "kind=\(kind.rawValue),name=\(name)"
        if let origin { text += ",origin=\(origin)" }
        if let site { text += ",site=\(site)" }
        if let run { text += ",run=\(run)" }
        return text
    }

    /// Parses the text form; nil for anything else (which then counts as no mark at all).
    public init?(parsing text: String) {
        var fields: [String: String] = [:]
        for pair in text.split(whereSeparator: { $0 == "," || $0.isWhitespace }) {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { return nil }
            fields[String(parts[0])] = String(parts[1])
        }
        guard let kind = fields["kind"].flatMap(Kind.init(rawValue:)), let name = fields["name"], !name.isEmpty else { return nil }
        self.kind = kind
        self.name = name
        if let origin = fields["origin"] {
            guard let reference = SnapshotReference(parsing: origin) else { return nil }
            self.origin = reference
        }
        if let site = fields["site"] {
            guard Names.isName(site) else { return nil }
            self.site = site
        }
        if let run = fields["run"] {
            guard !run.isEmpty, run.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else { return nil }
            self.run = run
        }
    }

    /// The extended attribute holding the mark on btrfs and dir pools.
    public static let attributeName = "user.virtform.owner"
    /// The zfs user property holding the mark.
    public static let zfsProperty = "io.virtform:owner"
}

/// Whether an observed object was made by virtform.
public enum StorageOwnership: Sendable, Hashable, Codable {
    case owned(OwnershipMark)
    /// No mark: virtform reports it and never modifies or deletes it.
    case unowned

    public var mark: OwnershipMark? {
        if case .owned(let mark) = self { return mark }
        return nil
    }

    public var isOwned: Bool { mark != nil }

    public init(_ mark: OwnershipMark?) {
        self = mark.map(StorageOwnership.owned) ?? .unowned
    }
}

/// A block volume in a project: a master image or a LUN cloned from a snapshot.
public struct ObservedVolume: Sendable, Hashable, Codable {
    public var project: String
    public var name: String
    /// Apparent size in bytes (what an initiator sees).
    public var size: UInt64
    /// Bytes only this volume holds (not shared with a snapshot or another clone); nil when the
    /// pool cannot tell cheaply (`dir`).
    public var exclusiveBytes: UInt64?
    /// The mark, with the kind (`image` or `lun`) and the snapshot a LUN was cloned from.
    public var ownership: StorageOwnership
    /// The file or device an export serves.
    public var backingPath: String

    public init(project: String, name: String, size: UInt64, exclusiveBytes: UInt64?, ownership: StorageOwnership, backingPath: String) {
        self.project = project
        self.name = name
        self.size = size
        self.exclusiveBytes = exclusiveBytes
        self.ownership = ownership
        self.backingPath = backingPath
    }

    /// The snapshot this volume was cloned from, per its mark.
    public var origin: SnapshotReference? { ownership.mark?.origin }
}

/// A read-only snapshot of an image.
public struct ObservedSnapshot: Sendable, Hashable, Codable {
    public var reference: SnapshotReference
    public var size: UInt64
    public var ownership: StorageOwnership
    /// Whether nothing can write it (btrfs/dir: the immutable attribute, or mode 0400 where the
    /// filesystem has no such attribute; zfs snapshots always). False for one an apply put in
    /// place and was killed before it sealed it.
    public var sealed: Bool

    public init(reference: SnapshotReference, size: UInt64, ownership: StorageOwnership, sealed: Bool = true) {
        self.reference = reference
        self.size = size
        self.ownership = ownership
        self.sealed = sealed
    }
}

public struct ObservedProject: Sendable, Hashable, Codable {
    public var name: String
    public var ownership: StorageOwnership
    /// Sorted by name.
    public var volumes: [ObservedVolume]
    /// Sorted by image, then snapshot name.
    public var snapshots: [ObservedSnapshot]

    public init(name: String, ownership: StorageOwnership, volumes: [ObservedVolume], snapshots: [ObservedSnapshot]) {
        self.name = name
        self.ownership = ownership
        self.volumes = volumes
        self.snapshots = snapshots
    }

    public func volume(_ name: String) -> ObservedVolume? { volumes.first { $0.name == name } }
}

/// Everything a pool holds, as observed now. A pool that cannot be read throws instead: it is
/// never reported as empty.
public struct PoolObservation: Sendable, Hashable, Codable {
    public var pool: String
    /// Sorted by name.
    public var projects: [ObservedProject]
    public var cloneMethod: CloneMethod?
    /// Objects being made under a temporary name, or left half-made by an apply that was
    /// killed: never objects, never shown as anybody's, removed by the next apply of their site.
    public var halfMade: [HalfMadeObject]

    public init(pool: String, projects: [ObservedProject], cloneMethod: CloneMethod?, halfMade: [HalfMadeObject] = []) {
        self.pool = pool
        self.projects = projects
        self.cloneMethod = cloneMethod
        self.halfMade = halfMade
    }

    public func project(_ name: String) -> ObservedProject? { projects.first { $0.name == name } }
    public func volume(project: String, name: String) -> ObservedVolume? { self.project(project)?.volume(name) }
    public func snapshot(_ reference: SnapshotReference) -> ObservedSnapshot? {
        project(reference.project)?.snapshots.first { $0.reference == reference }
    }
}


/// Something a storage driver was building under a temporary name when its apply stopped (or
/// is building now).
public struct HalfMadeObject: Sendable, Hashable, Codable {
    /// Relative to the pool: `.virtform-tmp-@lab@appl-1-k3j2`, `appl-1/.virtform-tmp-@lab@vm-1.img-9zq`.
    public var path: String
    /// The site whose apply made it; nil for temporaries of a virtform before sites.
    public var site: String?

    public init(path: String, site: String?) {
        self.path = path
        self.site = site
    }
}

/// One volume to export: it becomes the target `<iqnPrefix>:<project>.<volume>` with the volume
/// as LUN 1.
public struct ExportRequest: Sendable, Hashable, Codable {
    public var project: String
    public var volume: String
    /// The file or device to serve (`StorageDriver.backingPath`).
    public var backingPath: String
    /// The initiator names this target admits, when the pool admits hosts by name
    /// (`ISCSIExport.admitHosts`); nil: the pool's own list (or every initiator).
    public var initiators: [String]?

    public init(project: String, volume: String, backingPath: String, initiators: [String]? = nil) {
        self.project = project
        self.volume = volume
        self.backingPath = backingPath
        self.initiators = initiators
    }
}

/// A LUN of an observed target.
public struct ObservedTargetLUN: Sendable, Hashable, Codable {
    public var lun: Int
    public var backingPath: String
    /// The size the target serves, as the target reports it. tgt reports decimal megabytes,
    /// rounded to the nearest, so this is `MB × 1,000,000`; the exact size is what READ CAPACITY(16)
    /// returns through the `ISCSI` module.
    public var reportedSize: UInt64
    /// Whether the backing file is still there: a LUN deleted under a target stays served from
    /// the open file until the target goes.
    public var backingExists: Bool

    public init(lun: Int, backingPath: String, reportedSize: UInt64, backingExists: Bool) {
        self.lun = lun
        self.backingPath = backingPath
        self.reportedSize = reportedSize
        self.backingExists = backingExists
    }
}

/// An iSCSI target as observed on the export server.
public struct ObservedTarget: Sendable, Hashable, Codable {
    /// tgt's target id (lio: 0).
    public var tid: Int
    public var iqn: String
    /// Data LUNs (tgt's controller LUN 0 is left out).
    public var luns: [ObservedTargetLUN]
    /// Initiators allowed to log in (`ALL` for everyone).
    public var boundInitiators: [String]
    /// Initiators logged in now.
    public var connectedInitiators: [String]
    /// Whether virtform made it (see `TgtExportDriver` for the rule).
    public var isOwned: Bool
    /// The site named by the mark of the LUN it serves; nil when the LUN is gone or its mark
    /// names no site.
    public var site: String?
    /// A target named as virtform names one (`<iqnPrefix>:<project>.<volume>`) that serves no
    /// LUN: an export interrupted between making the target and adding its LUN (or one still
    /// being made). It is the work of whichever site owns the project its name gives.
    public var halfMade: Bool
    /// Whether an entry of `boundInitiators` is an initiator name (`iqn.…`, `eui.…`, `naa.…`)
    /// rather than an address (`ALL`, an IP address).
    public static func isInitiatorName(_ entry: String) -> Bool {
        entry.hasPrefix("iqn.") || entry.hasPrefix("eui.") || entry.hasPrefix("naa.")
    }

    /// CHAP accounts bound to the target: those initiators log in with, and the one it answers
    /// with (tgt's "outgoing", mutual CHAP).
    public var accounts: [String] = []
    public var outgoingAccount: String?

    public init(tid: Int, iqn: String, luns: [ObservedTargetLUN], boundInitiators: [String], connectedInitiators: [String], isOwned: Bool,
                site: String? = nil, halfMade: Bool = false) {
        self.site = site
        self.halfMade = halfMade
        self.tid = tid
        self.iqn = iqn
        self.luns = luns
        self.boundInitiators = boundInitiators
        self.connectedInitiators = connectedInitiators
        self.isOwned = isOwned
    }

    /// `project.volume` parsed from `<prefix>:<project>.<volume>`, when the IQN has that form.
    public func volume(prefix: String) -> (project: String, volume: String)? {
        guard iqn.hasPrefix(prefix + ":") else { return nil }
        let parts = iqn.dropFirst(prefix.count + 1).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, Names.isName(parts[0]), Names.isName(parts[1]) else { return nil }
        return (String(parts[0]), String(parts[1]))
    }
}

/// What a portal serves for one of virtform's targets, as an initiator sees it.
public enum ServedLUN: Sendable, Hashable {
    /// READ CAPACITY's answer, in bytes.
    case size(UInt64)
    /// The login or the read failed, and why.
    case unreadable(String)
}

extension StoragePool {
    /// The file or device an export serves for `project/volume`: the rule the pool's driver
    /// follows (a test holds the drivers to it).
    public func backingPath(project: String, volume: String) -> String {
        switch driver {
        case .btrfs, .dir: "\(path ?? "")/\(project)/\(volume).img"
        case .zfs: "/dev/zvol/\(dataset ?? "")/\(project)/\(volume)"
        }
    }
}

extension ISCSIExport {
    /// The target that exports `project/volume`: `<iqnPrefix>:<project>.<volume>`.
    public func iqn(project: String, volume: String) -> String { "\(iqnPrefix):\(project).\(volume)" }
}
