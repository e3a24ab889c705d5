import VirtformModel
import VirtformSystem

/// What an apply did on one endpoint.
public struct EndpointApplyReport: Hashable, Sendable, Codable {
    public var endpoint: String
    /// Control-socket commands sent (Kea) or files written plus signals sent (dnsmasq).
    public var roundTrips: Int
    /// The server had changed since the observation, and the changes were re-checked against
    /// its new state and applied to it.
    public var rebased: Bool
    /// False when the endpoint already held the result (nothing written).
    public var modified: Bool
    /// How long each step took, in order (Kea: one per control command).
    public var steps: [Step] = []

    public struct Step: Hashable, Sendable, Codable {
        /// `config-get`, `config-set`, `write`, `SIGHUP` …
        public var name: String
        public var duration: Duration
    }
}

public struct DHCPApplyReport: Hashable, Sendable, Codable {
    public var endpoints: [EndpointApplyReport]
    public var roundTrips: Int { endpoints.reduce(0) { $0 + $1.roundTrips } }
}

/// A DHCP server's reservations, for one `DHCPServer` (one endpoint, or both peers of an HA
/// pair). Drivers are found by name in `DHCPDrivers`.
public protocol DHCPDriver: Sendable {
    /// The server this driver talks to.
    var server: DHCPServer { get }

    /// Checks that every endpoint can be used now (socket answers, file writable, daemon
    /// running); throws a `DHCPError` saying which endpoint and what to do otherwise.
    func probe() async throws

    /// Reads the reservations of `subnets` on every endpoint, and virtform's own reservations in
    /// any other subnet (what a site left where it no longer declares a network). An endpoint
    /// that cannot be read is reported as `.unreachable`, never as empty.
    func observe(subnets: [IPv4Subnet]) async throws -> DHCPObservation

    /// Applies `changes` to every endpoint, in one write per endpoint. If an endpoint changed
    /// since `token` was observed, the changes are re-checked against its current state and
    /// applied only if none of the reservations they touch (or collide with) moved; otherwise it
    /// throws `.concurrentEdit`. Idempotent: an add already present, or a remove already
    /// gone, is no change.
    func apply(_ changes: [ReservationChange], basedOn token: DHCPVersionToken) async throws -> DHCPApplyReport

    /// Finishes what an interrupted apply left half-done on `endpoints`
    /// (`EndpointObservation.unfinished`): Kea saves its running configuration, dnsmasq
    /// re-reads its hosts file.
    func finishWrites(on endpoints: [String]) async throws
}

/// The file that says a write to an endpoint is under way: made before the server is changed,
/// removed once the change is lasting (saved, re-read). One left behind means an apply stopped
/// in between; the next observation reports the endpoint as unfinished.
enum UnfinishedWrite {
    static func marker(next path: String) -> String { path + ".virtform-unfinished" }

    static func begin(_ path: String?) throws {
        guard let path else { return }
        do {
            try FileSystem.writeFile(marker(next: path), "an apply of virtform is writing here\n", mode: 0o600, owner: nil)
        } catch {
            throw DHCPError(.unreachable, "failed to write \(marker(next: path)): \(error)")
        }
    }

    static func end(_ path: String?) {
        guard let path else { return }
        try? FileSystem.remove(marker(next: path))
    }

    static func pending(_ path: String?) -> Bool { path.map { FileSystem.exists(marker(next: $0)) } ?? false }
}

/// The DHCP drivers by the name a manifest's `DHCPServer.spec.driver` uses.
public enum DHCPDrivers {
    public static let names = DHCPServer.Driver.allCases.map(\.rawValue)

    /// The driver for `server`.
    public static func driver(for server: DHCPServer) throws -> any DHCPDriver {
        try driver(named: server.driver.rawValue, server: server)
    }

    /// The driver called `name`; fails with the list of known names.
    public static func driver(named name: String, server: DHCPServer) throws -> any DHCPDriver {
        switch name {
        case "kea": return KeaDriver(server: server)
        case "dnsmasq": return DnsmasqDriver(server: server)
        default:
            throw DHCPError(.invalidRequest, "unknown DHCP driver '\(name)' for \(server.meta.name); known drivers: \(names.joined(separator: ", "))")
        }
    }
}
