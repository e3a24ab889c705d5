import Foundation
import VirtformModel
import VirtformStorage

/// One request to `virtform agent`, sent as JSON on its standard input: which driver to run
/// there, with what configuration, and which of its operations. The remote command line is
/// always the same words (`virtform agent`); nothing of a manifest is ever part of it.
public enum AgentRequest: Codable, Sendable {
    case storage(StoragePoolSpec, StorageCall, run: String?)
    case export(ExportSpec, ExportCall)
    case dhcp(DnsmasqSpec, DHCPCall)
    /// A program of the allowed ones (`Agent.programs`), as an argument vector, no shell: the
    /// zfs driver's commands.
    case exec([String])
}

/// A storage pool as its driver is built from it.
public struct StoragePoolSpec: Codable, Sendable, Hashable {
    public var driver: String
    public var pool: String
    public var path: String?
    public var dataset: String?
    public var site: String?

    public init(driver: String, pool: String, path: String?, dataset: String?, site: String?) {
        self.driver = driver
        self.pool = pool
        self.path = path
        self.dataset = dataset
        self.site = site
    }
}

/// `StorageDriver`'s operations.
public enum StorageCall: Codable, Sendable {
    case probe
    case observe
    case createProject(name: String)
    case deleteProject(name: String)
    case createImage(project: String, name: String, size: UInt64)
    case importImage(project: String, name: String, source: String, size: UInt64?)
    case createSnapshot(SnapshotReference)
    case deleteSnapshot(SnapshotReference)
    case sealSnapshot(SnapshotReference)
    case clone(from: SnapshotReference, project: String, name: String, size: UInt64?)
    case grow(project: String, name: String, size: UInt64)
    case deleteVolume(project: String, name: String)
    case adopt(marks: [OwnershipMark], unmarked: Bool)
    case removeHalfMade(paths: [String])
}

/// A pool's iSCSI export as its driver is built from it.
public struct ExportSpec: Codable, Sendable, Hashable {
    public var driver: String
    public var portal: String
    public var iqnPrefix: String
    public var initiators: [String]
    public var controlPort: Int
    /// The CHAP secrets the driver sets up there (the request goes over the ssh link only).
    public var credentials: ExportCredentials?

    public init(_ export: ISCSIExport, credentials: ExportCredentials? = nil) {
        driver = export.driver.rawValue
        portal = export.portal.description
        iqnPrefix = export.iqnPrefix
        initiators = export.initiators
        controlPort = export.controlPort
        self.credentials = credentials
    }

    public var export: ISCSIExport? {
        guard let driver = ISCSIExport.Driver(rawValue: driver), let portal = HostPort(parsing: portal) else { return nil }
        return ISCSIExport(driver: driver, portal: portal, iqnPrefix: iqnPrefix, initiators: initiators, controlPort: controlPort)
    }
}

/// `ExportDriver`'s operations.
public enum ExportCall: Codable, Sendable {
    case probe
    case observe
    case export([ExportRequest])
    case unexport(iqn: String, force: Bool)
    case secure([String], rotate: Bool)
    case admit(iqn: String, add: [String], remove: [String])
}

/// A dnsmasq server: its name and endpoints (hosts file and PID file each).
public struct DnsmasqSpec: Codable, Sendable, Hashable {
    public struct Endpoint: Codable, Sendable, Hashable {
        public var name: String
        public var hostsFile: String?
        public var pidFile: String?
    }
    public var server: String
    public var endpoints: [Endpoint]

    public init(_ server: DHCPServer) {
        self.server = server.meta.name
        endpoints = server.endpoints.map { Endpoint(name: $0.name, hostsFile: $0.hostsFile, pidFile: $0.pidFile) }
    }

    public var dhcpServer: DHCPServer {
        DHCPServer(meta: ObjectMeta(name: server), driver: .dnsmasq,
                   endpoints: endpoints.map { DHCPServer.Endpoint(name: $0.name, hostsFile: $0.hostsFile, pidFile: $0.pidFile) },
                   provenance: .synthetic("agent"))
    }
}

/// `DHCPDriver`'s operations.
public enum DHCPCall: Codable, Sendable {
    case probe
    case observe(subnets: [IPv4Subnet])
    case apply(changes: [ReservationChange], token: DHCPVersionToken)
    case finishWrites(endpoints: [String])
}

/// The agent's answer: the operation's result, or how it failed (the driver's own error, its
/// code kept so that the caller acts on it as on a local failure).
public struct AgentReply<Result: Codable & Sendable>: Codable, Sendable {
    public var result: Result?
    public var failure: AgentFailure?

    public init(result: Result) {
        self.result = result
        failure = nil
    }

    public init(failure: AgentFailure) {
        result = nil
        self.failure = failure
    }
}

public struct AgentFailure: Codable, Sendable, Error, CustomStringConvertible {
    /// `storage`, `dhcp` or `agent` (the request itself: refused, unreadable).
    public var domain: String
    public var code: String
    public var message: String
    public var endpoint: String?

    public init(domain: String, code: String, message: String, endpoint: String? = nil) {
        self.domain = domain
        self.code = code
        self.message = message
        self.endpoint = endpoint
    }

    public var description: String { message }
}

/// A result with nothing in it.
public struct Done: Codable, Sendable {
    public init() {}
}
