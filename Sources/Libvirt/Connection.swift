import CLibvirt
import Foundation
import VirtformSystem
import Synchronization

/// An open connection to one libvirt driver (`virConnectPtr`), read-write.
///
/// All methods are `async` and run their libvirt call on the wrapper's own thread pool, never on
/// Swift's cooperative pool. libvirt connections are thread-safe, so any number of calls on one
/// connection may be in flight at once (the pool has 16 threads).
///
/// The connection closes when `close()` is called or when the last reference (including the
/// ones held by `Domain` values and open event streams) goes away.
public final class Connection: Sendable {
    /// The URI this connection was opened with.
    public let uri: String

    private let handle: Mutex<CPointer?>
    let events: EventHub

    private init(uri: String, pointer: OpaquePointer) {
        self.uri = uri
        self.handle = Mutex(CPointer(raw: pointer))
        self.events = EventHub()
    }

    /// Opens a read-write connection (`virConnectOpen`).
    ///
    /// Remote connections get a keepalive (5 s interval, 3 missed answers) so a dead daemon is
    /// noticed; when that happens, open event streams finish.
    public static func open(uri: String) async throws(LibvirtError) -> Connection {
        if LibvirtRuntime.needsOneCallAtATime(uri) { libvirtThreads.limit(key: uri, to: 1) }
        let connection = try await runBlocking(key: uri) {
            () throws(LibvirtError) -> Connection in
            // libvirt's one-time setup runs here, on a blocking thread: the first call can take
            // seconds (drivers, TLS), and every caller waits for it — never the cooperative pool.
            let eventLoop = LibvirtRuntime.eventLoopRunning
            let pointer = try check(virConnectOpen(uri), "open connection to '\(uri)'")
            if eventLoop {
                // Best effort: local drivers do not support keepalive and say so.
                if virConnectSetKeepAlive(pointer, 5, 3) < 0 { virResetLastError() }
            }
            let connection = Connection(uri: uri, pointer: pointer)
            connection.events.registerCloseCallback(on: pointer)
            return connection
        }
        return connection
    }

    deinit {
        if let pointer = handle.withLock({ $0 }) {
            // The final close of a remote connection is an RPC; keep it off this thread.
            let hub = events
            libvirtThreads.submit {
                hub.unregisterCloseCallback(on: pointer.raw)
                virConnectClose(pointer.raw)
            }
        }
    }

    /// Closes the connection. Later calls through it (or its domains) throw `invalidConnection`;
    /// open event streams finish. Calling it twice is harmless.
    public func close() async {
        guard let pointer = handle.withLock({ state -> CPointer? in
            defer { state = nil }
            return state
        }) else { return }
        let hub = events
        _ = try? await runBlocking(key: uri) { () throws(LibvirtError) in
            hub.deregisterAll(on: pointer.raw)
            hub.unregisterCloseCallback(on: pointer.raw)
            virConnectClose(pointer.raw)
        }
    }

    /// Runs `body` on the libvirt thread pool with this connection's pointer, holding an extra
    /// libvirt reference for the duration so a concurrent `close()` cannot free it mid-call.
    func withPointer<T: Sendable>(
        _ operation: @autoclosure () -> String,
        _ body: @escaping @Sendable (OpaquePointer) throws(LibvirtError) -> T
    ) async throws(LibvirtError) -> T {
        let pointer = try retainedPointer(operation())
        return try await runBlocking(key: uri) { () throws(LibvirtError) -> T in
            defer { virConnectClose(pointer.raw) }
            return try body(pointer.raw)
        }
    }

    /// This connection's pointer with one extra libvirt reference, which the caller must drop
    /// with `virConnectClose`; throws if the connection was closed.
    func retainedPointer(_ operation: @autoclosure () -> String) throws(LibvirtError) -> CPointer {
        let pointer = handle.withLock { state -> CPointer? in
            guard let state else { return nil }
            virConnectRef(state.raw)
            return state
        }
        guard let pointer else {
            throw LibvirtError(
                code: .invalidConnection, message: "the connection to '\(uri)' was closed", operation: operation())
        }
        return pointer
    }

    // MARK: Host

    /// The hypervisor host's name (`virConnectGetHostname`).
    public var hostname: String {
        get async throws(LibvirtError) {
            try await withPointer("get hostname of '\(uri)'") { conn throws(LibvirtError) in
                try check(takeString(virConnectGetHostname(conn)), "get hostname of '\(self.uri)'")
            }
        }
    }

    /// The libvirt version of the daemon (or in-process driver) behind this connection.
    public var libvirtVersion: LibvirtVersion {
        get async throws(LibvirtError) {
            try await withPointer("get libvirt version of '\(uri)'") { conn throws(LibvirtError) in
                var version: UInt = 0
                try check(virConnectGetLibVersion(conn, &version), "get libvirt version of '\(self.uri)'")
                return LibvirtVersion(encoded: UInt64(version))
            }
        }
    }

    /// The host capabilities document (`virConnectGetCapabilities`).
    public var capabilitiesXML: String {
        get async throws(LibvirtError) {
            try await withPointer("get capabilities of '\(uri)'") { conn throws(LibvirtError) in
                try check(takeString(virConnectGetCapabilities(conn)), "get capabilities of '\(self.uri)'")
            }
        }
    }

    /// Whether a guest CPU (`<cpu>` XML) can run on this host's hypervisor
    /// (`virConnectCompareHypervisorCPU`): `false` when libvirt says incompatible.
    public func hypervisorCPUCompatible(with cpuXML: String) async throws(LibvirtError) -> Bool {
        try await withPointer("compare a CPU with '\(uri)'") { conn throws(LibvirtError) -> Bool in
            let result = virConnectCompareHypervisorCPU(conn, nil, nil, nil, nil, cpuXML, 0)
            if result == Int32(VIR_CPU_COMPARE_ERROR.rawValue) { throw LibvirtError.last(operation: "compare a CPU with '\(self.uri)'") }
            return result != Int32(VIR_CPU_COMPARE_INCOMPATIBLE.rawValue)
        }
    }

    /// The host's UUID as reported in `<capabilities><host><uuid>` (for a libvirtd, its
    /// `host_uuid` setting). Throws `internalError` if the document has none.
    public var hostUUID: UUID {
        get async throws(LibvirtError) {
            let xml = try await capabilitiesXML
            guard let text = Self.hostUUIDText(inCapabilities: xml), let uuid = UUID(uuidString: text) else {
                throw LibvirtError(
                    code: .internalError, message: "the capabilities document has no <host><uuid>",
                    operation: "get host UUID of '\(uri)'")
            }
            return uuid
        }
    }

    static func hostUUIDText(inCapabilities xml: String) -> String? {
        // Only a <uuid> that is a direct part of <host>, not one of a later section.
        guard let host = xml.range(of: "<host>"),
            let hostEnd = xml.range(of: "</host>", range: host.upperBound..<xml.endIndex),
            let open = xml.range(of: "<uuid>", range: host.upperBound..<hostEnd.lowerBound),
            let close = xml.range(of: "</uuid>", range: open.upperBound..<hostEnd.lowerBound)
        else { return nil }
        return xml[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Whether the connection is open and, for remote drivers, the link to the daemon is up
    /// (`virConnectIsAlive`; a local check, no RPC).
    public var isAlive: Bool {
        guard let pointer = try? retainedPointer("check connection") else { return false }
        defer { virConnectClose(pointer.raw) }
        let alive = virConnectIsAlive(pointer.raw)
        if alive < 0 { virResetLastError() }
        return alive == 1
    }

    // MARK: Domains

    /// Every domain, persistent and transient, running or not.
    ///
    /// Costs two RPCs however many domains there are (all states via
    /// `virConnectGetAllDomainStats`, transient ones via `virConnectListAllDomains`); drivers
    /// without bulk stats fall back to per-domain calls.
    public func listAllDomains() async throws(LibvirtError) -> [DomainSummary] {
        try await withPointer("list domains on '\(uri)'") { conn throws(LibvirtError) -> [DomainSummary] in
            let operation = "list domains on '\(self.uri)'"
            var transient = Set<UUID>()
            for pointer in try Self.listAll(conn, flags: VIR_CONNECT_LIST_DOMAINS_TRANSIENT.rawValue, operation) {
                transient.insert(Domain.uuid(of: pointer))
                virDomainFree(pointer)
            }
            if let states = try Self.allDomainStates(conn, operation) {
                return states.map { pointer, state in
                    let domain = Domain(pointer: pointer, connection: self)
                    return DomainSummary(
                        domain: domain, state: state, isPersistent: !transient.contains(domain.uuid))
                }
            }
            // Fallback: one list plus one state call per domain.
            var result: [DomainSummary] = []
            var pending = try Self.listAll(conn, flags: 0, operation)
            defer { pending.forEach { virDomainFree($0) } }
            while let pointer = pending.popLast() {
                let domain = Domain(pointer: pointer, connection: self)
                var state: Int32 = 0
                var reason: Int32 = 0
                if virDomainGetState(pointer, &state, &reason, 0) < 0 {
                    let error = LibvirtError.last(operation: operation)
                    // Vanished between listing and asking: it is no longer there to list.
                    if error.code == .noDomain { continue }
                    throw error
                }
                result.append(
                    DomainSummary(
                        domain: domain, state: DomainState(rawValue: state),
                        isPersistent: !transient.contains(domain.uuid)))
            }
            return result.reversed()
        }
    }

    private static func listAll(
        _ conn: OpaquePointer, flags: UInt32, _ operation: String
    ) throws(LibvirtError) -> [OpaquePointer] {
        var list: UnsafeMutablePointer<virDomainPtr?>? = nil
        let count = try check(virConnectListAllDomains(conn, &list, flags), operation)
        defer { free(list) }
        guard let list else { return [] }
        return (0..<Int(count)).compactMap { list[$0] }
    }

    /// `(domain, state)` for every domain, each pointer with its own reference; nil when the
    /// driver does not implement bulk stats.
    private static func allDomainStates(
        _ conn: OpaquePointer, _ operation: String
    ) throws(LibvirtError) -> [(OpaquePointer, DomainState)]? {
        var records: UnsafeMutablePointer<virDomainStatsRecordPtr?>? = nil
        let count = virConnectGetAllDomainStats(conn, VIR_DOMAIN_STATS_STATE.rawValue, &records, 0)
        if count < 0 {
            let error = LibvirtError.last(operation: operation)
            if error.code == .noSupport { return nil }
            throw error
        }
        defer { virDomainStatsRecordListFree(records) }
        guard let records else { return [] }
        var result: [(OpaquePointer, DomainState)] = []
        for index in 0..<Int(count) {
            guard let record = records[index], let domain = record.pointee.dom else { continue }
            var state: Int32 = 0
            if virTypedParamsGetInt(record.pointee.params, record.pointee.nparams, "state.state", &state) != 1 {
                virResetLastError()
                state = Int32(VIR_DOMAIN_NOSTATE.rawValue)
            }
            // The record list owns its pointers; keep our own reference past its free.
            virDomainRef(domain)
            result.append((domain, DomainState(rawValue: state)))
        }
        return result
    }

    /// The domain with this name, or nil when libvirt says there is none (`VIR_ERR_NO_DOMAIN`).
    /// Any other failure throws: an unreachable host never makes a domain look absent.
    public func domain(named name: String) async throws(LibvirtError) -> Domain? {
        try await withPointer("look up domain '\(name)'") { conn throws(LibvirtError) -> Domain? in
            guard let pointer = virDomainLookupByName(conn, name) else {
                let error = LibvirtError.last(operation: "look up domain '\(name)' on '\(self.uri)'")
                if error.code == .noDomain { return nil }
                throw error
            }
            return Domain(pointer: pointer, connection: self)
        }
    }

    /// The domain with this UUID, or nil when there is none; other failures throw.
    public func domain(uuid: UUID) async throws(LibvirtError) -> Domain? {
        let text = uuid.uuidString.lowercased()
        return try await withPointer("look up domain \(text)") { conn throws(LibvirtError) -> Domain? in
            guard let pointer = virDomainLookupByUUIDString(conn, text) else {
                let error = LibvirtError.last(operation: "look up domain \(text) on '\(self.uri)'")
                if error.code == .noDomain { return nil }
                throw error
            }
            return Domain(pointer: pointer, connection: self)
        }
    }

    /// Defines (or redefines) a persistent domain from XML (`virDomainDefineXMLFlags`).
    /// With `validate`, libvirt also checks the XML against its schema.
    @discardableResult
    public func define(xml: String, validate: Bool = false) async throws(LibvirtError) -> Domain {
        KillPoint.step("libvirt define")
        let flags = validate ? VIR_DOMAIN_DEFINE_VALIDATE.rawValue : 0
        return try await withPointer("define domain") { conn throws(LibvirtError) -> Domain in
            let pointer = try check(virDomainDefineXMLFlags(conn, xml, flags), "define domain on '\(self.uri)'")
            return Domain(pointer: pointer, connection: self)
        }
    }

    /// Creates and starts a transient domain from XML (`virDomainCreateXML`).
    @discardableResult
    public func createTransient(xml: String) async throws(LibvirtError) -> Domain {
        KillPoint.step("libvirt create transient")
        return try await withPointer("create transient domain") { conn throws(LibvirtError) -> Domain in
            let pointer = try check(virDomainCreateXML(conn, xml, 0), "create transient domain on '\(self.uri)'")
            return Domain(pointer: pointer, connection: self)
        }
    }
}

/// Runs a throwing body on the libvirt thread pool, keeping the typed error.
/// The threads every libvirt call of the process runs on.
/// libvirt's blocking calls run on the process-wide pool, counted against their connection's URI.
let libvirtThreads = BlockingThreadPool.shared

func runBlocking<T: Sendable>(
    key: String? = nil, _ body: @escaping @Sendable () throws(LibvirtError) -> T
) async throws(LibvirtError) -> T {
    let result: Result<T, LibvirtError> = await withCheckedContinuation { continuation in
        libvirtThreads.submit(key: key) {
            continuation.resume(returning: Result { () throws(LibvirtError) -> T in try body() })
        }
    }
    return try result.get()
}
