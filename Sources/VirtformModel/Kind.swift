/// The kinds of object a manifest can declare, in the order a site is usually read.
public enum Kind: String, CaseIterable, Sendable, Hashable, Codable, Comparable {
    case site = "Site"
    case host = "Host"
    case cluster = "Cluster"
    case storagePool = "StoragePool"
    case storageProject = "StorageProject"
    case image = "Image"
    case network = "Network"
    case dhcpServer = "DHCPServer"
    case virtualMachine = "VirtualMachine"
    case networkBinding = "NetworkBinding"

    public static func < (a: Kind, b: Kind) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// The one API version of the manifest language so far.
public let manifestAPIVersion = "virtform.io/v1alpha1"

/// `metadata` of every object.
public struct ObjectMeta: Hashable, Sendable {
    public var name: String
    public var labels: [String: String]
    public var annotations: [String: String]

    public init(name: String, labels: [String: String] = [:], annotations: [String: String] = [:]) {
        self.name = name
        self.labels = labels
        self.annotations = annotations
    }
}

/// Every declared object: its kind, its metadata and where it came from.
public protocol SiteObject: Sendable {
    static var kind: Kind { get }
    var meta: ObjectMeta { get }
    var provenance: Provenance { get }
    /// The name that must be unique among objects of this kind.
    var uniqueName: String { get }
}

extension SiteObject {
    public var name: String { meta.name }
    public var uniqueName: String { meta.name }
    /// `Kind/name` as it appears in messages.
    public var reference: String { "\(Self.kind.rawValue)/\(uniqueName)" }
}

/// `virtform import`: the annotation it writes on the VMs and bindings it generates, naming the
/// host their domain was found on. Such a VM (binding) takes the objects virtform does not own
/// that carry exactly its names — its domain on that host, its LUN and target, its reservations
/// — as its own: the plan marks them (an update of the mark alone when they match the manifest),
/// never recreates them.
public enum Import {
    public static let annotation = "virtform.io/imported-from"
}

extension ObjectMeta {
    /// The host named by `Import.annotation`, for objects `virtform import` wrote.
    public var importedFrom: String? { annotations[Import.annotation].flatMap { $0.isEmpty ? nil : $0 } }
}
