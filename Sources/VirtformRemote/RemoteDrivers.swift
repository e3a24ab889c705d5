import Foundation
import VirtformDHCP
import VirtformModel
import VirtformStorage
import VirtformSystem

/// Drivers whose work happens on another machine: each operation is sent to `virtform agent`
/// there, which runs the same local driver (FileTreeDriver, TgtExportDriver, DnsmasqDriver) and
/// answers with its result or its error. What needs no machine (a LUN's backing path, the
/// capabilities) is answered here by a local copy of the driver that is never asked to act.
public enum RemoteDrivers {
    /// The pool's driver on its `ssh` machine.
    public static func storage(for pool: StoragePool, access: SSHAccess, site: String?) throws -> any StorageDriver {
        let spec = StoragePoolSpec(driver: pool.driver.rawValue, pool: pool.meta.name, path: pool.path, dataset: pool.dataset, site: site)
        let client = SSHAgentClient(access: access)
        // zfs drives its pool with commands only: they run there, one argument vector each.
        let shape = try StorageDrivers.driver(named: spec.driver, poolName: spec.pool, path: spec.path, dataset: spec.dataset, site: site,
                                              runner: AgentCommandRunner(client: client))
        if pool.driver == .zfs { return shape }
        return RemoteStorageDriver(spec: spec, shape: shape, client: client)
    }

    /// `credentials` (CHAP secrets) travel in the request, over the ssh link, to the agent.
    public static func export(for export: ISCSIExport, credentials: ExportCredentials? = nil, access: SSHAccess) -> any ExportDriver {
        RemoteExportDriver(spec: ExportSpec(export, credentials: credentials), iqnPrefix: export.iqnPrefix, client: SSHAgentClient(access: access))
    }

    public static func dhcp(for server: DHCPServer, access: SSHAccess) -> any DHCPDriver {
        RemoteDnsmasqDriver(server: server, spec: DnsmasqSpec(server), client: SSHAgentClient(access: access))
    }
}

extension SSHAgentClient {
    /// `request`'s result; the agent's failure as the driver error a local driver would have
    /// thrown, and one of the link itself (`domain` agent) as `unreachable` makes it.
    func ask<R: Codable & Sendable>(_ request: AgentRequest, _ type: R.Type, unreachable: (AgentFailure) -> any Error) async throws -> R {
        do {
            return try await call(request, R.self)
        } catch let failure as AgentFailure where failure.domain == "agent" {
            throw unreachable(failure)
        } catch {
            throw translated(error)
        }
    }
}

/// The agent's failure as the driver error a local driver would have thrown.
func translated(_ error: any Error) -> any Error {
    guard let failure = error as? AgentFailure else { return error }
    switch failure.domain {
    case "storage": return StorageError(StorageError.Code(rawValue: failure.code) ?? .failed, failure.message)
    case "dhcp": return DHCPError(DHCPError.Code(rawValue: failure.code) ?? .unreachable, failure.message, endpoint: failure.endpoint)
    default: return failure
    }
}

struct RemoteStorageDriver: StorageDriver {
    let spec: StoragePoolSpec
    let shape: any StorageDriver
    let client: SSHAgentClient

    var poolName: String { spec.pool }
    var capabilities: StorageCapabilities { shape.capabilities }
    func backingPath(project: String, volume: String) -> String { shape.backingPath(project: project, volume: volume) }

    private func call<R: Codable & Sendable>(_ call: StorageCall, _ type: R.Type = Done.self) async throws -> R {
        // The machine could not be asked: the pool is unusable now (never empty).
        try await client.ask(.storage(spec, call, run: OwnershipMark.writingRun), R.self) { [spec, client] failure in
            StorageError(.unusable, "pool \(spec.pool) on \(client.access.target): \(failure.message)")
        }
    }

    func probe() async throws { _ = try await call(.probe) }
    func observe() async throws -> PoolObservation { try await call(.observe, PoolObservation.self) }
    func createProject(_ name: String) async throws { _ = try await call(.createProject(name: name)) }
    func deleteProject(_ name: String) async throws { _ = try await call(.deleteProject(name: name)) }
    func createImage(project: String, name: String, size: UInt64) async throws {
        _ = try await call(.createImage(project: project, name: name, size: size))
    }
    func importImage(project: String, name: String, source: String, size: UInt64?) async throws {
        _ = try await call(.importImage(project: project, name: name, source: source, size: size))
    }
    func createSnapshot(_ reference: SnapshotReference) async throws { _ = try await call(.createSnapshot(reference)) }
    func deleteSnapshot(_ reference: SnapshotReference) async throws { _ = try await call(.deleteSnapshot(reference)) }
    func sealSnapshot(_ reference: SnapshotReference) async throws { _ = try await call(.sealSnapshot(reference)) }
    @discardableResult
    func clone(from source: SnapshotReference, project: String, name: String, size: UInt64?) async throws -> CloneMethod {
        try await call(.clone(from: source, project: project, name: name, size: size), CloneMethod.self)
    }
    func grow(project: String, name: String, to size: UInt64) async throws { _ = try await call(.grow(project: project, name: name, size: size)) }
    func deleteVolume(project: String, name: String) async throws { _ = try await call(.deleteVolume(project: project, name: name)) }
    func adopt(_ marks: [OwnershipMark], unmarked: Bool) async throws { _ = try await call(.adopt(marks: marks, unmarked: unmarked)) }
    func removeHalfMade(_ paths: [String]) async throws { _ = try await call(.removeHalfMade(paths: paths)) }
}

struct RemoteExportDriver: ExportDriver {
    let spec: ExportSpec
    let iqnPrefix: String
    let client: SSHAgentClient

    private func call<R: Codable & Sendable>(_ call: ExportCall, _ type: R.Type = Done.self) async throws -> R {
        try await client.ask(.export(spec, call), R.self) { [client] failure in
            StorageError(.unusable, "the iSCSI export on \(client.access.target): \(failure.message)")
        }
    }

    func probe() async throws { _ = try await call(.probe) }
    func observe() async throws -> [ObservedTarget] { try await call(.observe, [ObservedTarget].self) }
    func export(_ requests: [ExportRequest]) async throws { _ = try await call(.export(requests)) }
    func unexport(iqn: String, force: Bool) async throws { _ = try await call(.unexport(iqn: iqn, force: force)) }
    func secure(_ iqns: [String], rotate: Bool) async throws { _ = try await call(.secure(iqns, rotate: rotate)) }
    func admit(iqn: String, add: [String], remove: [String]) async throws { _ = try await call(.admit(iqn: iqn, add: add, remove: remove)) }
}

struct RemoteDnsmasqDriver: DHCPDriver {
    let server: DHCPServer
    let spec: DnsmasqSpec
    let client: SSHAgentClient

    private func call<R: Codable & Sendable>(_ call: DHCPCall, _ type: R.Type = Done.self) async throws -> R {
        try await client.ask(.dhcp(spec, call), R.self) { [spec, client] failure in
            DHCPError(.unreachable, "dnsmasq of \(spec.server) on \(client.access.target): \(failure.message)")
        }
    }

    func probe() async throws { _ = try await call(.probe) }
    func observe(subnets: [IPv4Subnet]) async throws -> DHCPObservation {
        do {
            return try await call(.observe(subnets: subnets), DHCPObservation.self)
        } catch {
            // Every endpoint unreachable, as a local driver reports an unreadable file.
            return DHCPObservation(server: spec.server, subnets: subnets,
                                   endpoints: spec.endpoints.map { EndpointObservation(name: $0.name, state: .unreachable(reason: "\(error)")) },
                                   token: DHCPVersionToken(endpoints: [:]))
        }
    }
    func apply(_ changes: [ReservationChange], basedOn token: DHCPVersionToken) async throws -> DHCPApplyReport {
        try await call(.apply(changes: changes, token: token), DHCPApplyReport.self)
    }
    func finishWrites(on endpoints: [String]) async throws { _ = try await call(.finishWrites(endpoints: endpoints)) }
}

/// Runs commands on the agent's machine: `exec` requests, one argument vector each.
public struct AgentCommandRunner: CommandRunner {
    let client: SSHAgentClient

    public func run(_ arguments: [String]) async throws -> CommandResult {
        try await client.call(.exec(arguments), CommandResult.self)
    }
}
