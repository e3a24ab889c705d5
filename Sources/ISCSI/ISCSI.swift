import CISCSI
import Foundation
import VirtformSystem

/// The threads libiscsi's blocking calls run on.
/// libiscsi's blocking calls run on the process-wide pool, counted against their portal.
let iscsiThreads = BlockingThreadPool.shared

/// A target a portal offers: its name and the portals (`address:port,tpgt`) it can be reached at.
public struct DiscoveredTarget: Sendable, Hashable {
    public let name: String
    public let portals: [String]

    public init(name: String, portals: [String]) {
        self.name = name
        self.portals = portals
    }
}

/// What READ CAPACITY(16) says about a LUN.
public struct LUNCapacity: Sendable, Hashable {
    /// Bytes per logical block.
    public let blockSize: UInt32
    /// Number of logical blocks (last LBA + 1).
    public let blockCount: UInt64
    /// `blockSize × blockCount`.
    public var bytes: UInt64 { UInt64(blockSize) * blockCount }

    public init(blockSize: UInt32, blockCount: UInt64) {
        self.blockSize = blockSize
        self.blockCount = blockCount
    }
}

/// An iSCSI initiator: the name it presents to targets and how long one call may take.
///
/// Every call opens its own libiscsi context on a thread of its own and destroys it before
/// returning, so an `Initiator` holds nothing and is freely shared.
public struct Initiator: Sendable, Hashable {
    public static let defaultName = "iqn.2026-11.io.virtform:observer"

    /// CHAP credentials for the login: the initiator's account, and with `target` the one the
    /// target must answer with (mutual CHAP). Never printed.
    public struct CHAP: Sendable, Hashable, CustomStringConvertible {
        public var username: String
        public var password: String
        public var target: (username: String, password: String)? {
            get { targetUsername.map { ($0, targetPassword ?? "") } }
            set { targetUsername = newValue?.username; targetPassword = newValue?.password }
        }
        private var targetUsername: String?
        private var targetPassword: String?

        public init(username: String, password: String, target: (username: String, password: String)? = nil) {
            self.username = username
            self.password = password
            self.target = target
        }

        public var description: String { "CHAP as \(username) (sensitive)" }
    }

    /// The initiator IQN targets see (and check against their ACLs).
    public var name: String
    /// Limit for each blocking libiscsi call, in whole seconds (libiscsi's own timeout).
    public var timeoutSeconds: Int
    public var chap: CHAP?

    public init(name: String = Initiator.defaultName, timeoutSeconds: Int = 10, chap: CHAP? = nil) {
        self.name = name
        self.timeoutSeconds = timeoutSeconds
        self.chap = chap
    }

    /// The targets `portal` (`host:port`) offers, through a discovery session (SendTargets).
    public func discoverTargets(portal: String) async throws -> [DiscoveredTarget] {
        let name = name, timeout = timeoutSeconds
        return try await iscsiThreads.run(key: "iscsi \(portal)") {
            let operation = "discover targets at \(portal)"
            let context = try Context(initiator: name, timeoutSeconds: timeout, operation: operation)
            try context.check(iscsi_set_session_type(context.pointer, ISCSI_SESSION_DISCOVERY), operation)
            try context.check(iscsi_connect_sync(context.pointer, portal), operation)
            try context.check(iscsi_login_sync(context.pointer), operation)
            defer { _ = iscsi_logout_sync(context.pointer) }
            guard let list = iscsi_discovery_sync(context.pointer) else {
                // An empty portal answers with no data; libiscsi reports that as NULL without an error text.
                let text = String(cString: iscsi_get_error(context.pointer))
                if text.isEmpty { return [] }
                throw ISCSIError(operation: operation, reason: text)
            }
            defer { iscsi_free_discovery_data(context.pointer, list) }
            var targets: [DiscoveredTarget] = []
            var entry: UnsafeMutablePointer<iscsi_discovery_address>? = list
            while let current = entry {
                var portals: [String] = []
                var portal = current.pointee.portals
                while let p = portal {
                    if let text = p.pointee.portal { portals.append(String(cString: text)) }
                    portal = p.pointee.next
                }
                if let targetName = current.pointee.target_name {
                    targets.append(DiscoveredTarget(name: String(cString: targetName), portals: portals))
                }
                entry = current.pointee.next
            }
            return targets
        }
    }

    /// Logs in to `target` at `portal` and checks that `lun` answers (libiscsi's full connect).
    /// The session is closed when the returned value is released or `logout()` is called.
    public func login(portal: String, target: String, lun: Int = 0) async throws -> Session {
        let name = name, timeout = timeoutSeconds, chap = chap
        return try await iscsiThreads.run(key: "iscsi \(portal)") {
            let operation = "log in to \(target) at \(portal)" + (chap.map { " as \($0.username) (CHAP)" } ?? "")
            let context = try Context(initiator: name, timeoutSeconds: timeout, operation: operation)
            if let chap {
                try context.check(iscsi_set_initiator_username_pwd(context.pointer, chap.username, chap.password), operation)
                if let mutual = chap.target {
                    try context.check(iscsi_set_target_username_pwd(context.pointer, mutual.username, mutual.password), operation)
                }
            }
            try context.check(iscsi_set_targetname(context.pointer, target), operation)
            try context.check(iscsi_set_session_type(context.pointer, ISCSI_SESSION_NORMAL), operation)
            try context.check(iscsi_full_connect_sync(context.pointer, portal, Int32(lun)), operation)
            return Session(context: context, portal: portal, target: target)
        }
    }

    /// Logs in, reads the capacity of `lun` and logs out: the size the target exports.
    public func capacity(portal: String, target: String, lun: Int) async throws -> LUNCapacity {
        let session = try await login(portal: portal, target: target, lun: lun)
        do {
            let capacity = try await session.readCapacity(lun: lun)
            await session.logout()
            return capacity
        } catch {
            await session.logout()
            throw error
        }
    }
}

/// A logged-in session to one target. Calls are serialized: a libiscsi context is not
/// thread-safe.
public final class Session: Sendable {
    public let portal: String
    public let target: String
    private let context: Context

    fileprivate init(context: Context, portal: String, target: String) {
        self.context = context
        self.portal = portal
        self.target = target
    }

    /// The LUNs the target reports (REPORT LUNS, all LUNs), in the target's order.
    public func reportLUNs() async throws -> [Int] {
        let context = context, target = target, key = "iscsi \(portal)"
        return try await iscsiThreads.run(key: key) {
            try context.locked {
                let operation = "report the LUNs of \(target)"
                let task = try context.command(iscsi_reportluns_sync(context.pointer, 0, 16384), operation)
                defer { scsi_free_scsi_task(task) }
                guard let raw = scsi_datain_unmarshall(task) else {
                    throw ISCSIError(operation: operation, reason: "could not decode the REPORT LUNS data")
                }
                let list = raw.assumingMemoryBound(to: scsi_reportluns_list.self)
                let count = Int(list.pointee.num)
                // `luns` is a flexible array member: read it just past the fixed fields.
                let base = UnsafeRawPointer(raw) + MemoryLayout<scsi_reportluns_list>.offset(of: \.luns)!
                return (0..<count).map { Int(base.load(fromByteOffset: $0 * 2, as: UInt16.self)) }
            }
        }
    }

    /// READ CAPACITY(16) of `lun`.
    public func readCapacity(lun: Int) async throws -> LUNCapacity {
        let context = context, target = target, key = "iscsi \(portal)"
        return try await iscsiThreads.run(key: key) {
            try context.locked {
                let operation = "read the capacity of LUN \(lun) of \(target)"
                let task = try context.command(iscsi_readcapacity16_sync(context.pointer, Int32(lun)), operation)
                defer { scsi_free_scsi_task(task) }
                guard let raw = scsi_datain_unmarshall(task) else {
                    throw ISCSIError(operation: operation, reason: "could not decode the READ CAPACITY(16) data")
                }
                let data = raw.assumingMemoryBound(to: scsi_readcapacity16.self).pointee
                return LUNCapacity(blockSize: data.block_length, blockCount: data.returned_lba + 1)
            }
        }
    }

    /// Logs out now (otherwise when the session is released). Errors are ignored: the context
    /// is destroyed either way.
    public func logout() async {
        let context = context
        _ = try? await iscsiThreads.run { context.close() }
    }
}

/// Owns one `iscsi_context`: destroyed exactly once, in `close()` or `deinit`.
private final class Context: @unchecked Sendable {
    // Guarded by `lock`; nil once closed.
    private var handle: OpaquePointer?
    private let lock = NSLock()

    init(initiator: String, timeoutSeconds: Int, operation: String) throws {
        guard let created = iscsi_create_context(initiator) else {
            throw ISCSIError(operation: operation, reason: "could not create an iSCSI context for initiator \(initiator)")
        }
        handle = created
        _ = iscsi_set_timeout(created, Int32(timeoutSeconds))
        // A failed connection must fail the call, not be retried for ever in the background.
        iscsi_set_noautoreconnect(created, 1)
    }

    /// The live context. Only used on the blocking threads while the caller holds the object.
    var pointer: OpaquePointer {
        guard let handle else { preconditionFailure("iSCSI context used after logout") }
        return handle
    }

    func locked<T>(_ body: () throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        guard handle != nil else { throw ISCSIError(operation: "use the session", reason: "the session was logged out") }
        return try body()
    }

    func check(_ code: Int32, _ operation: String) throws {
        if code != 0 { throw ISCSIError(operation: operation, reason: errorText) }
    }

    /// A SCSI command's task, or an error with libiscsi's text or the task's sense data.
    func command(_ task: UnsafeMutablePointer<scsi_task>?, _ operation: String) throws -> UnsafeMutablePointer<scsi_task> {
        guard let task else { throw ISCSIError(operation: operation, reason: errorText) }
        guard task.pointee.status == SCSI_STATUS_GOOD.rawValue else {
            let sense = task.pointee.sense
            let reason =
                "SCSI status \(task.pointee.status): \(String(cString: scsi_sense_key_str(Int32(sense.key.rawValue)))) "
                + "(\(String(cString: scsi_sense_ascq_str(Int32(sense.ascq)))))"
            scsi_free_scsi_task(task)
            throw ISCSIError(operation: operation, reason: reason)
        }
        return task
    }

    private var errorText: String {
        guard let handle, let text = iscsi_get_error(handle) else { return "unknown error" }
        let message = String(cString: text)
        return message.isEmpty ? "unknown error" : message
    }

    func close() {
        lock.lock()
        defer { lock.unlock() }
        guard let handle else { return }
        _ = iscsi_logout_sync(handle)
        _ = iscsi_disconnect(handle)
        iscsi_destroy_context(handle)
        self.handle = nil
    }

    deinit {
        // Logging out blocks for a round trip; a context dropped on the cooperative pool is only
        // destroyed (libiscsi closes the socket; the target drops the session).
        if let handle { iscsi_destroy_context(handle) }
    }
}
