import Foundation
import Libvirt
import Synchronization
import VirtformModel
import VirtformSystem

/// One hypervisor reached through libvirt: what it runs, and the operations apply needs.
///
/// Read-only callers use `observe()`; everything else changes only domains that carry
/// virtform's ownership mark, which the caller has checked through the plan.
public final class LibvirtHost: Sendable {
    public let name: String
    public let connection: Connection
    /// Domains this session defined, so that starting one right after costs no lookup.
    private let defined = Mutex<[String: Domain]>([:])

    init(name: String, connection: Connection) {
        self.name = name
        self.connection = connection
    }

    /// Opens the host's libvirt URI, giving up after `timeout` (the call itself cannot be
    /// interrupted; it is left to finish on its own thread).
    public static func connect(name: String, uri: String, timeout: Duration = .seconds(10)) async throws -> LibvirtHost {
        let connection = try await withThrowingTaskGroup(of: Connection?.self) { group in
            group.addTask { try await Connection.open(uri: uri) }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let connection = first else {
                throw HypervisorError("no answer from \(uri) within \(timeout)")
            }
            return connection
        }
        return LibvirtHost(name: name, connection: connection)
    }

    /// Every domain with its managed fields read from its persistent definition, and for a
    /// running persistent domain also from its live definition (what runs until the next
    /// start), fetched with up to `parallelism` domains in flight.
    public func observe(parallelism: Int = 8) async throws -> [ObservedDomain] {
        let summaries = try await connection.listAllDomains()
        return try await withThrowingTaskGroup(of: ObservedDomain?.self) { group in
            var results: [ObservedDomain] = []
            var next = summaries.makeIterator()
            func schedule(_ summary: DomainSummary?) {
                guard let summary else { return }
                group.addTask { [name] in
                    let xml: String
                    do {
                        xml = try await summary.domain.xml(flags: summary.isPersistent ? [.inactive] : [])
                    } catch let error as LibvirtError where error.code == .noDomain {
                        return nil  // undefined between listing and reading
                    }
                    let reading = try DomainXML.read(xml)
                    let state = Self.state(summary.state)
                    var live: DomainSpec?  // nil: what runs is the persistent definition
                    var hotplug = reading.hotplug
                    if summary.isPersistent, state == .running || state == .paused {
                        do {
                            let running = try DomainXML.read(try await summary.domain.xml())
                            // Kept only when it differs: most guests run what they are defined as.
                            live = running.spec == reading.spec ? nil : running.spec
                            hotplug = running.hotplug  // what it started with, not what it will start with
                        } catch let error as LibvirtError where error.code == .noDomain || error.code == .operationInvalid {
                            live = nil  // stopped or undefined after the listing: nothing runs
                        }
                    }
                    return ObservedDomain(host: name, name: summary.name, uuid: summary.uuid.uuidString.lowercased(),
                                          state: state, persistent: summary.isPersistent,
                                          spec: reading.spec, ownership: reading.ownership, live: live, hotplug: hotplug)
                }
            }
            for _ in 0..<parallelism { schedule(next.next()) }
            while let result = try await group.next() {
                if let result { results.append(result) }
                schedule(next.next())
            }
            return results.sorted { $0.name < $1.name }
        }
    }

    /// Defines a new domain (`replacing: false`; libvirt refuses if the name is taken), or
    /// redefines an existing one in place, keeping its UUID. A domain without virtform's mark
    /// is never replaced — but for `overUnmarked` (`virtform import`), which replaces only a
    /// domain without a mark.
    public func define(_ spec: DomainSpec, ownership: Ownership, replacing: Bool = true, overUnmarked: Bool = false) async throws {
        var uuid: String?
        if replacing, let existing = try await connection.domain(named: spec.name) {
            let (_, mark) = try DomainXML.parse(try await existing.xml(flags: [.inactive]))
            if overUnmarked, let mark {
                throw HypervisorError("domain \(spec.name) on host \(name) carries a mark now (site \(mark.site ?? "none")); it is not imported")
            }
            guard mark != nil || overUnmarked else {
                throw HypervisorError("domain \(spec.name) on host \(name) is not managed by virtform; it is left as it is")
            }
            uuid = existing.uuid.uuidString.lowercased()
        }
        let domain = try await connection.define(xml: DomainXML.render(spec, ownership: ownership, uuid: uuid))
        defined.withLock { $0[spec.name] = domain }
    }

    public func start(_ domainName: String) async throws {
        let domain = try await require(domainName)
        do {
            try await domain.create()
        } catch let error where error.code == .operationInvalid {
            // Already running (started by someone, or by an apply that was interrupted).
            guard try await domain.state.isActive else { throw error }
        }
    }

    /// Rewrites virtform's mark on a domain (its definition, and the running guest's when it
    /// runs), leaving the rest of its metadata alone.
    public func writeMark(_ domainName: String, _ ownership: Ownership) async throws {
        let domain = try await require(domainName)
        let flags: DomainModification = try await domain.state.isActive ? [.live, .config] : [.config]
        try await domain.setMetadata(DomainXML.ownerElement(ownership), type: .element, key: Ownership.prefix,
                                     uri: Ownership.namespace, flags: flags)
    }

    /// Asks the guest to shut down, waits up to `timeout`, then forces it off.
    public func stop(_ domainName: String, timeout: Duration = .seconds(60)) async throws {
        let domain = try await require(domainName)
        guard try await domain.state.isActive else { return }
        do {
            try await domain.shutdown()
        } catch {
            // A guest without ACPI cannot be asked; fall through to the forced stop.
        }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await !domain.state.isActive { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        if try await domain.state.isActive { try await domain.destroy() }
    }

    /// Stops a guest if it runs and removes its definition.
    public func delete(_ domainName: String) async throws {
        defined.withLock { _ = $0.removeValue(forKey: domainName) }
        guard let domain = try await connection.domain(named: domainName) else { return }
        if try await domain.state.isActive { try await domain.destroy() }
        try await domain.undefine(flags: [.managedSave, .snapshotsMetadata])
    }

    /// Sets the running guest's memory (the balloon's target, within its live maximum); a guest
    /// that is not running has nothing to change.
    public func setLiveMemory(_ domainName: String, kib: UInt64) async throws {
        guard let domain = try await connection.domain(named: domainName), try await domain.state.isActive else { return }
        try await domain.setMemory(kib: kib, flags: [.live])
    }

    /// Brings the running guest's vCPUs up to `count` (within its maximum); a guest that is not
    /// running has nothing to change.
    public func setLiveVCPUs(_ domainName: String, count: Int) async throws {
        guard let domain = try await connection.domain(named: domainName), try await domain.state.isActive else { return }
        try await domain.setVcpus(count: count, flags: [.live])
    }

    /// Attaches `attach` to the running guest and asks it to give up `detach` (found by MAC).
    /// libvirt waits a few seconds for the guest to let go of a detached device; one that has
    /// not by then goes when the guest lets go of it, and the next plan shows it as pending.
    public func hotplug(_ domainName: String, attach: [DomainSpec.InterfaceSpec], detach: [DomainSpec.InterfaceSpec]) async throws {
        guard let domain = try await connection.domain(named: domainName), try await domain.state.isActive else { return }
        // Only what is (still) there, or missing: an interrupted apply is taken up where it stopped.
        let running = try DomainXML.parse(try await domain.xml()).spec.interfaces
        for interface in detach where running.contains(interface) {
            try await domain.detachDevice(xml: DomainXML.render(interface), flags: [.live])
        }
        for interface in attach where !running.contains(interface) {
            try await domain.attachDevice(xml: DomainXML.render(interface), flags: [.live])
        }
    }

    /// Closes the session's connection (and forgets the domains it defined); later calls fail.
    public func close() async {
        defined.withLock { $0.removeAll() }
        await connection.close()
    }

    /// Forgets the domains this session defined, keeping the connection: a connection kept for
    /// later readings looks each domain up again, so one undefined and defined anew meanwhile is
    /// found as it is now.
    public func forgetDefined() {
        defined.withLock { $0.removeAll() }
    }

    /// The domain handle, or a failure naming the host.
    func liveDomain(_ domainName: String) async throws -> Domain { try await require(domainName) }

    /// Forgets a domain this session defined (it moved away).
    func forget(_ domainName: String) { defined.withLock { _ = $0.removeValue(forKey: domainName) } }

    /// Defines a domain that is not on this host yet, with the UUID it has elsewhere.
    func defineNew(_ spec: DomainSpec, ownership: Ownership, uuid: String) async throws {
        let domain = try await connection.define(xml: DomainXML.render(spec, ownership: ownership, uuid: uuid))
        defined.withLock { $0[spec.name] = domain }
    }

    private func require(_ domainName: String) async throws -> Domain {
        if let known = defined.withLock({ $0[domainName] }) { return known }
        guard let domain = try await connection.domain(named: domainName) else {
            throw HypervisorError("domain \(domainName) is not defined on host \(name)")
        }
        return domain
    }

    static func state(_ state: DomainState) -> ObservedDomain.State {
        switch state {
        case .running, .blocked, .shuttingDown: return .running
        case .paused, .pmSuspended: return .paused
        case .shutOff, .noState: return .shutoff
        case .crashed: return .crashed
        case .unknown: return .other
        }
    }
}

/// A failure of the hypervisor driver itself (libvirt's own failures are `LibvirtError`).
public struct HypervisorError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Observes every host of a site at once.
public enum SiteObserver {
    public struct Result: Sendable {
        public var observed: ObservedSite
        /// Open sessions to the hosts that answered, for apply.
        public var sessions: [String: LibvirtHost]
    }

    /// Connects to every host concurrently; a host that cannot be reached or read is
    /// reported as unreachable with the reason, never as empty.
    public static func observe(_ hosts: [(name: String, uri: String)], timeout: Duration = .seconds(10)) async -> Result {
        // A struct, not a tuple: Swift 6.3 miscompiles (-O) tuples returned from task-group
        // children when part of the tuple is known before a suspension (swiftlang/swift#91911).
        struct Reading: Sendable {
            var name: String
            var observation: HostObservation
            var session: LibvirtHost?
        }
        return await withTaskGroup(of: Reading.self) { group in
            for host in hosts {
                group.addTask {
                    do {
                        let session = try await LibvirtHost.connect(name: host.name, uri: host.uri, timeout: timeout)
                        // The whole reading has a deadline too: a daemon that stops answering
                        // makes its host unreachable, not the plan hang.
                        let domains = try await withDeadline(timeout * 3, "reading the domains of host \(host.name)") {
                            try await session.observe()
                        }
                        return Reading(name: host.name, observation: .reachable(domains), session: session)
                    } catch {
                        return Reading(name: host.name, observation: .unreachable(reason: "\(error)"), session: nil)
                    }
                }
            }
            var result = Result(observed: ObservedSite(hosts: [:]), sessions: [:])
            for await reading in group {
                result.observed.hosts[reading.name] = reading.observation
                result.sessions[reading.name] = reading.session
            }
            return result
        }
    }
}
