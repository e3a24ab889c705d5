import VirtformDHCP
import VirtformModel
import VirtformPlanning
import VirtformSystem

/// The one shape of every system virtform drives.
///
/// A kind of system (hypervisors; storage pools with their export servers; DHCP servers) is a
/// `SystemKind`, registered in `SystemKinds.all`. From a site's manifests it makes one
/// `SystemDriver` per declared system, through the factory of the driver the manifest names
/// (whose descriptor, capabilities and stand-in status are in `Drivers`). `SiteReader` reads
/// every system of every kind at once, each within a deadline: a driver probes its system
/// (connects; checks daemon, mount, programs) and observes it, giving a `SystemReading` — or
/// the system is unreachable, with the reason, and never empty. A reading comes with the
/// `SystemSession` that carries out the plan's operations on that system, against what was read.
///
/// Adding a kind of system: its driver module, its planner file in `VirtformPlanning` (and its
/// reading in `SiteObservation`), one `SystemKind` here and its line in `SystemKinds.all`.
/// Adding a driver to a kind: its type in the kind's module, its case in that module's factory
/// and its descriptor in `Drivers`.
protocol SystemKind {
    /// One driver for each system of this kind the site declares; `context` holds what a
    /// long-running process keeps between readings.
    static func drivers(for site: Site, context: ReadContext) -> [any SystemDriver]
}

extension SystemKind {
    static func drivers(for site: Site) -> [any SystemDriver] { drivers(for: site, context: ReadContext()) }
}

/// What the drivers of a long-running process keep from one reading to the next: the
/// hypervisors' connections (and their event streams), so that `virtform reconcile` holds one
/// connection per host for months instead of opening one per pass. Commands that run once
/// pass none.
struct ReadContext: Sendable {
    var hostConnections: Hypervisors.Connections?
}

/// Every kind of system virtform drives.
enum SystemKinds {
    static var all: [any SystemKind.Type] { [Hypervisors.self, StoragePools.self, DHCPServers.self] }
}

/// One declared system, not yet read.
protocol SystemDriver: Sendable {
    /// The system as the plan names it.
    var address: SystemAddress { get }
    /// Probes the system and observes it. Throws what is wrong when it cannot be used; `timeout`
    /// bounds each connection it makes (the whole reading has a deadline of its own).
    func read(timeout: Duration) async throws -> SystemRead
}

/// What reading one system gave.
struct SystemRead: Sendable {
    var reading: SystemReading
    /// Carries out the plan's operations on the system that was read.
    var session: any SystemSession
}

/// What a system holds, as the planner is given it.
enum SystemReading: Sendable {
    /// `secrets`: virtform's libvirt secrets there; nil when none are wanted or they could not be listed.
    case host([ObservedDomain], secrets: [ObservedSecret]?)
    case pool(PoolContents)
    case dhcp(DHCPObservation)
}

/// One system, connected for one run.
protocol SystemSession: Sendable {
    /// The addresses whose changes it carries out (a pool answers for its export server too).
    var addresses: [SystemAddress] { get }
    /// Carries out `changes`, all addressed to `address`: one change, or — for a system that
    /// writes a run's changes in one go (`PlanExecution.writesInOneGo`) — all of them. Throws
    /// what the driver threw.
    func execute(_ changes: [Change], on address: SystemAddress, settings: PlanExecution.Settings) async throws
    /// Lets go of what the session holds open (a libvirt connection); the commands call it when
    /// they are done, so a long-running process opens nothing it does not close.
    func close() async
}

extension SystemSession {
    func close() async {}
}

extension SiteObservation {
    /// Records what reading the system at `address` gave.
    mutating func record(_ result: Result<SystemReading, SystemReadFailure>, for address: SystemAddress) {
        switch (result, address.kind) {
        case (.success(.host(let domains, let secrets)), _):
            hosts.hosts[address.name] = .reachable(domains)
            if let secrets { hosts.secrets[address.name] = secrets }
        case (.success(.pool(let contents)), _): pools[address.name] = .read(contents)
        case (.success(.dhcp(let observation)), _): dhcpServers[address.name] = .read(observation)
        case (.failure(let failure), .host): hosts.hosts[address.name] = .unreachable(reason: failure.reason)
        case (.failure(let failure), .storagePool), (.failure(let failure), .exportServer): pools[address.name] = .unreachable(reason: failure.reason)
        case (.failure(let failure), .dhcpServer): dhcpServers[address.name] = .unreachable(reason: failure.reason)
        }
    }
}

/// Why a system could not be read.
struct SystemReadFailure: Error {
    var reason: String
}

/// The connected systems of one run, by address.
struct ConnectedSystems: Sendable {
    private(set) var sessions: [SystemAddress: any SystemSession] = [:]

    mutating func add(_ session: any SystemSession) {
        for address in session.addresses { sessions[address] = session }
    }

    subscript(address: SystemAddress) -> (any SystemSession)? { sessions[address] }

    /// Closes every session once (a pool's answers for its export server too: it is closed
    /// under its first address only).
    func closeAll() async {
        let unique = sessions.filter { address, session in session.addresses.first == address }.map(\.value)
        // A daemon that stopped answering cannot hold the command up: each close has a deadline.
        await withTaskGroup(of: Void.self) { group in
            for session in unique {
                group.addTask { _ = try? await withDeadline(.seconds(5), "closing \(session.addresses.first.map(\.description) ?? "a session")") { await session.close() } }
            }
        }
    }
}

extension CommandFailure {
    /// An operation sent to a system of the wrong kind: a plan edited by hand, or a bug.
    static func notFor(_ change: Change, _ address: SystemAddress) -> CommandFailure {
        CommandFailure(change.operation == .manual
            ? "\(change.id) cannot be carried out by virtform: \(change.blocked ?? change.reason)"
            : "\(change.id) is not an operation for \(address)")
    }
}
