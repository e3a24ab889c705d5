import CLibvirt
import VirtformSystem
import Foundation

/// One libvirt domain (`virDomainPtr`) on a `Connection`.
///
/// A handle, not a snapshot: `name` and `uuid` are fixed, every other property asks libvirt.
/// It keeps its connection alive; after `Connection.close()` its calls throw `invalidConnection`.
public final class Domain: Sendable, CustomStringConvertible {
    public let name: String
    public let uuid: UUID
    public let connection: Connection
    private let pointer: CPointer

    /// Takes ownership of one reference to `pointer`.
    init(pointer: OpaquePointer, connection: Connection) {
        self.pointer = CPointer(raw: pointer)
        self.connection = connection
        // Both are cached inside the virDomainPtr: no RPC.
        self.name = virDomainGetName(pointer).map { String(cString: $0) } ?? ""
        self.uuid = Domain.uuid(of: pointer)
    }

    deinit {
        // Drops our reference only; local, never an RPC.
        virDomainFree(pointer.raw)
    }

    public var description: String { "domain '\(name)' (\(uuid.uuidString.lowercased()))" }

    static func uuid(of pointer: OpaquePointer) -> UUID {
        var bytes = [UInt8](repeating: 0, count: 16)
        _ = virDomainGetUUID(pointer, &bytes)
        return UUID(
            uuid: (
                bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
            ))
    }

    /// Runs `body` on the libvirt pool with this domain's pointer; errors name `operation` and
    /// the domain.
    private func call<T: Sendable>(
        _ operation: String,
        _ body: @escaping @Sendable (OpaquePointer, _ operation: String) throws(LibvirtError) -> T
    ) async throws(LibvirtError) -> T {
        let pointer = self.pointer
        let described = "\(operation) domain '\(name)' on '\(connection.uri)'"
        return try await connection.withPointer(described) { _ throws(LibvirtError) -> T in
            try body(pointer.raw, described)
        }
    }

    // MARK: State

    /// The domain's XML description (`virDomainGetXMLDesc`).
    public func xml(flags: DomainXMLFlags = []) async throws(LibvirtError) -> String {
        try await call("get XML of") { dom, op throws(LibvirtError) in
            try check(takeString(virDomainGetXMLDesc(dom, flags.rawValue)), op)
        }
    }

    /// `virDomainGetState`.
    public var state: DomainState {
        get async throws(LibvirtError) {
            try await call("get state of") { dom, op throws(LibvirtError) in
                var state: Int32 = 0
                var reason: Int32 = 0
                try check(virDomainGetState(dom, &state, &reason, 0), op)
                return DomainState(rawValue: state)
            }
        }
    }

    /// `virDomainGetInfo`.
    public var info: DomainInfo {
        get async throws(LibvirtError) {
            try await call("get info of") { dom, op throws(LibvirtError) in
                var info = virDomainInfo()
                try check(virDomainGetInfo(dom, &info), op)
                return DomainInfo(
                    state: DomainState(rawValue: Int32(info.state)), maxMemoryKiB: UInt64(info.maxMem),
                    memoryKiB: UInt64(info.memory), virtualCPUs: Int(info.nrVirtCpu),
                    cpuTimeNanoseconds: UInt64(info.cpuTime))
            }
        }
    }

    /// Whether the domain runs (`virDomainIsActive`).
    public var isActive: Bool {
        get async throws(LibvirtError) {
            try await call("check activity of") { dom, op throws(LibvirtError) in
                try check(virDomainIsActive(dom), op) == 1
            }
        }
    }

    /// Whether the domain has a persistent definition (`virDomainIsPersistent`).
    public var isPersistent: Bool {
        get async throws(LibvirtError) {
            try await call("check persistence of") { dom, op throws(LibvirtError) in
                try check(virDomainIsPersistent(dom), op) == 1
            }
        }
    }

    // MARK: Lifecycle

    /// Starts a defined domain (`virDomainCreate`).
    public func create() async throws(LibvirtError) {
        KillPoint.step("libvirt start \(name)")
        try await call("start") { dom, op throws(LibvirtError) in _ = try check(virDomainCreate(dom), op) }
    }

    /// Asks the guest to shut down (`virDomainShutdown`); returns before it has.
    public func shutdown() async throws(LibvirtError) {
        KillPoint.step("libvirt shutdown \(name)")
        try await call("shut down") { dom, op throws(LibvirtError) in _ = try check(virDomainShutdown(dom), op) }
    }

    /// Stops the domain immediately (`virDomainDestroy`), like pulling the plug.
    public func destroy() async throws(LibvirtError) {
        KillPoint.step("libvirt destroy \(name)")
        try await call("destroy") { dom, op throws(LibvirtError) in _ = try check(virDomainDestroy(dom), op) }
    }

    /// Pauses the domain's CPUs (`virDomainSuspend`).
    public func suspend() async throws(LibvirtError) {
        try await call("suspend") { dom, op throws(LibvirtError) in _ = try check(virDomainSuspend(dom), op) }
    }

    /// Resumes a paused domain (`virDomainResume`).
    public func resume() async throws(LibvirtError) {
        try await call("resume") { dom, op throws(LibvirtError) in _ = try check(virDomainResume(dom), op) }
    }

    /// Removes the persistent definition (`virDomainUndefineFlags`). A running domain keeps
    /// running as a transient one.
    public func undefine(flags: UndefineFlags = []) async throws(LibvirtError) {
        KillPoint.step("libvirt undefine \(name)")
        try await call("undefine") { dom, op throws(LibvirtError) in
            _ = try check(virDomainUndefineFlags(dom, flags.rawValue), op)
        }
    }

    // MARK: Resources

    /// Sets the current memory (balloon target) in KiB (`virDomainSetMemoryFlags`).
    public func setMemory(kib: UInt64, flags: DomainModification = []) async throws(LibvirtError) {
        KillPoint.step("libvirt set memory \(name)")
        try await call("set memory of") { dom, op throws(LibvirtError) in
            _ = try check(virDomainSetMemoryFlags(dom, UInt(kib), flags.rawValue), op)
        }
    }

    /// Sets the maximum memory in KiB (`virDomainSetMemoryFlags` with `VIR_DOMAIN_MEM_MAXIMUM`).
    /// Most hypervisors only allow this on the persistent configuration (`.config`).
    public func setMaxMemory(kib: UInt64, flags: DomainModification = .config) async throws(LibvirtError) {
        try await call("set maximum memory of") { dom, op throws(LibvirtError) in
            let all = flags.rawValue | VIR_DOMAIN_MEM_MAXIMUM.rawValue
            _ = try check(virDomainSetMemoryFlags(dom, UInt(kib), all), op)
        }
    }

    /// Sets the number of virtual CPUs (`virDomainSetVcpusFlags`); with `maximum`, the upper
    /// limit instead (configuration only).
    public func setVcpus(count: Int, flags: DomainModification = [], maximum: Bool = false) async throws(LibvirtError) {
        KillPoint.step("libvirt set vcpus \(name)")
        try await call("set vCPUs of") { dom, op throws(LibvirtError) in
            let all = flags.rawValue | (maximum ? VIR_DOMAIN_VCPU_MAXIMUM.rawValue : 0)
            _ = try check(virDomainSetVcpusFlags(dom, UInt32(count), all), op)
        }
    }

    // MARK: Metadata

    /// Reads metadata (`virDomainGetMetadata`). For `.element`, `uri` names the namespace and the
    /// result is the element's XML. Returns nil when the domain has no such metadata
    /// (`VIR_ERR_NO_DOMAIN_METADATA`); other failures throw.
    public func getMetadata(
        type: MetadataType, uri: String? = nil, flags: DomainModification = []
    ) async throws(LibvirtError) -> String? {
        try await call("get metadata of") { dom, op throws(LibvirtError) -> String? in
            if let value = takeString(virDomainGetMetadata(dom, type.rawValue, uri, flags.rawValue)) {
                return value
            }
            let error = LibvirtError.last(operation: op)
            if error.code == .noDomainMetadata { return nil }
            throw error
        }
    }

    /// Writes metadata (`virDomainSetMetadata`); nil removes it. For `.element`, `metadata` is
    /// one XML element, `key` the namespace prefix libvirt writes it with and `uri` the namespace
    /// that identifies it (elements of other namespaces are left alone).
    public func setMetadata(
        _ metadata: String?, type: MetadataType, key: String? = nil, uri: String? = nil,
        flags: DomainModification = []
    ) async throws(LibvirtError) {
        KillPoint.step("libvirt set metadata \(name)")
        try await call("set metadata of") { dom, op throws(LibvirtError) in
            _ = try check(virDomainSetMetadata(dom, type.rawValue, metadata, key, uri, flags.rawValue), op)
        }
    }

    // MARK: Devices

    /// Attaches a device described by XML, e.g. an `<interface>` (`virDomainAttachDeviceFlags`).
    public func attachDevice(xml: String, flags: DomainModification = []) async throws(LibvirtError) {
        KillPoint.step("libvirt attach device \(name)")
        try await call("attach device to") { dom, op throws(LibvirtError) in
            _ = try check(virDomainAttachDeviceFlags(dom, xml, flags.rawValue), op)
        }
    }

    /// Detaches a device described by XML (`virDomainDetachDeviceFlags`). For a live detach the
    /// guest may finish removing it after this returns.
    public func detachDevice(xml: String, flags: DomainModification = []) async throws(LibvirtError) {
        KillPoint.step("libvirt detach device \(name)")
        try await call("detach device from") { dom, op throws(LibvirtError) in
            _ = try check(virDomainDetachDeviceFlags(dom, xml, flags.rawValue), op)
        }
    }

    /// Changes a device in place, e.g. an interface's link state (`virDomainUpdateDeviceFlags`).
    public func updateDevice(xml: String, flags: DomainModification = []) async throws(LibvirtError) {
        try await call("update device of") { dom, op throws(LibvirtError) in
            _ = try check(virDomainUpdateDeviceFlags(dom, xml, flags.rawValue), op)
        }
    }

    // MARK: Migration

    /// Migrates the domain to the host behind `destination` (`virDomainMigrate3`) and returns it
    /// as seen there.
    ///
    /// - Parameters:
    ///   - uri: where the hypervisors send migration data (`VIR_MIGRATE_PARAM_URI`), e.g.
    ///     `tcp://127.0.0.1`; nil lets the destination choose (its hostname).
    ///   - destinationName: a new name on the destination.
    ///   - destinationXML: a replacement definition for the destination (must be ABI-compatible).
    ///   - persistentXML: the persistent definition on the destination (with `persistDestination`),
    ///     which may differ from what runs (`VIR_MIGRATE_PARAM_PERSIST_XML`).
    ///   - bandwidthMiBps: a bandwidth cap in MiB/s.
    @discardableResult
    public func migrate(
        to destination: Connection, uri: String?, flags: MigrationFlags,
        destinationName: String? = nil, destinationXML: String? = nil, persistentXML: String? = nil, bandwidthMiBps: UInt64? = nil
    ) async throws(LibvirtError) -> Domain {
        let destinationPointer = try destination.retainedPointer("migrate domain '\(name)'")
        defer { virConnectClose(destinationPointer.raw) }
        let target = destination.uri
        return try await call("migrate") { dom, op throws(LibvirtError) -> Domain in
            let op = "\(op) to '\(target)'"
            var params = TypedParameters()
            if let uri { try params.add(VIR_MIGRATE_PARAM_URI, uri, op) }
            if let destinationName { try params.add(VIR_MIGRATE_PARAM_DEST_NAME, destinationName, op) }
            if let destinationXML { try params.add(VIR_MIGRATE_PARAM_DEST_XML, destinationXML, op) }
            if let persistentXML { try params.add(VIR_MIGRATE_PARAM_PERSIST_XML, persistentXML, op) }
            if let bandwidthMiBps { try params.add(VIR_MIGRATE_PARAM_BANDWIDTH, bandwidthMiBps, op) }
            let migrated = try check(
                virDomainMigrate3(dom, destinationPointer.raw, params.pointer, UInt32(params.count), flags.rawValue),
                op)
            return Domain(pointer: migrated, connection: destination)
        }
    }
}

extension Domain {
    /// The domain's current job (`virDomainGetJobInfo`): none, or a migration's progress.
    public func jobInfo() async throws(LibvirtError) -> JobInfo {
        try await call("get job of") { dom, op throws(LibvirtError) -> JobInfo in
            var info = virDomainJobInfo()
            _ = try check(virDomainGetJobInfo(dom, &info), op)
            return JobInfo(active: info.type != Int32(VIR_DOMAIN_JOB_NONE.rawValue), elapsedMilliseconds: info.timeElapsed,
                           dataTotal: info.dataTotal, dataRemaining: info.dataRemaining)
        }
    }

    /// Aborts the domain's current job (`virDomainAbortJob`): a migration ends with the guest
    /// running where it was.
    public func abortJob() async throws(LibvirtError) {
        try await call("abort job of") { dom, op throws(LibvirtError) in
            _ = try check(virDomainAbortJob(dom), op)
        }
    }
}

/// What a domain's job has done so far.
public struct JobInfo: Sendable, Hashable {
    public var active: Bool
    public var elapsedMilliseconds: UInt64
    public var dataTotal: UInt64
    public var dataRemaining: UInt64
}

/// An owned `virTypedParameter` list built with `virTypedParamsAdd*`, freed with
/// `virTypedParamsFree` when the value goes away.
private struct TypedParameters: ~Copyable {
    var pointer: virTypedParameterPtr? = nil
    var count: Int32 = 0
    var capacity: Int32 = 0

    mutating func add(_ name: String, _ value: String, _ operation: String) throws(LibvirtError) {
        try check(virTypedParamsAddString(&pointer, &count, &capacity, name, value), operation)
    }

    mutating func add(_ name: String, _ value: UInt64, _ operation: String) throws(LibvirtError) {
        try check(virTypedParamsAddULLong(&pointer, &count, &capacity, name, value), operation)
    }

    deinit {
        virTypedParamsFree(pointer, count)
    }
}
