import Foundation
import VirtformModel
import VirtformSystem

/// Reservations in kea-dhcp4 (2.2+) through its unix control socket, with the standard
/// commands only (Debian's Kea has no host_cmds hook): `config-get`, edit
/// `subnet4[].reservations`, `config-test`, `config-set`, `config-write`. Four commands per
/// endpoint per apply, however many reservations change.
public struct KeaDriver: DHCPDriver {
    public let server: DHCPServer
    /// Limit for one control command (connect, send, whole answer).
    public var commandTimeout: Duration

    public init(server: DHCPServer, commandTimeout: Duration = .seconds(60)) {
        self.server = server
        self.commandTimeout = commandTimeout
    }

    func channel(_ endpoint: DHCPServer.Endpoint) throws -> KeaControlChannel {
        guard let path = endpoint.controlSocket else {
            if endpoint.url != nil {
                throw DHCPError(.unsupported, "endpoint \(endpoint.name) of \(server.meta.name) gives a control-agent url; the kea driver talks to kea-dhcp4's unix control socket only: set controlSocket", endpoint: endpoint.name)
            }
            throw DHCPError(.invalidRequest, "endpoint \(endpoint.name) of \(server.meta.name) has no controlSocket", endpoint: endpoint.name)
        }
        return KeaControlChannel(endpoint: endpoint.name, path: path, timeout: commandTimeout)
    }

    public func probe() async throws {
        for endpoint in server.endpoints {
            let channel = try channel(endpoint)
            if let reason = UnixSocket.probe(channel.path) {
                throw DHCPError(.unreachable, "failed to reach Kea at \(endpoint.name): nothing accepts connections on \(channel.path) (\(reason)). Ensure kea-dhcp4 runs with \"control-socket\": {\"socket-type\": \"unix\", \"socket-name\": \"\(channel.path)\"}", endpoint: endpoint.name)
            }
            let answer = try await channel.send("version-get")
            if let text = answer.text, text.hasPrefix("1.") || text.hasPrefix("2.0") || text.hasPrefix("2.1") {
                throw DHCPError(.unsupported, "Kea at \(endpoint.name) is version \(text); the kea driver needs 2.2 or newer", endpoint: endpoint.name)
            }
        }
    }

    public func observe(subnets: [IPv4Subnet]) async throws -> DHCPObservation {
        struct Read: Sendable { var index: Int; var observation: EndpointObservation; var version: DHCPVersionToken.Endpoint? }
        let reads = await withTaskGroup(of: Read.self) { group in
            for (index, endpoint) in server.endpoints.enumerated() {
                group.addTask {
                    do {
                        let (config, hash) = try await readConfiguration(endpoint)
                        let found = KeaConfiguration.reservations(in: config, subnets: subnets, ownedElsewhere: true)
                        return Read(index: index,
                                    observation: EndpointObservation(name: endpoint.name, state: .observed(reservations: found.reservations, unservedSubnets: found.unserved),
                                                                     unfinished: UnfinishedWrite.pending(endpoint.controlSocket)),
                                    version: .init(hash: hash, reservations: found.reservations))
                    } catch {
                        return Read(index: index, observation: EndpointObservation(name: endpoint.name, state: .unreachable(reason: "\(error)")), version: nil)
                    }
                }
            }
            var all: [Read] = []
            for await read in group { all.append(read) }
            return all.sorted { $0.index < $1.index }
        }
        var versions: [String: DHCPVersionToken.Endpoint] = [:]
        for read in reads { versions[read.observation.name] = read.version }
        return DHCPObservation(server: server.meta.name, subnets: subnets, endpoints: reads.map(\.observation),
                               token: DHCPVersionToken(endpoints: versions))
    }

    /// `config-get`'s arguments and their hash (Kea 2.2 has no `config-hash-get` and puts no
    /// hash in the answer, so the hash is FNV-1a of the canonical JSON).
    private func readConfiguration(_ endpoint: DHCPServer.Endpoint) async throws -> (JSONValue, String) {
        let answer = try await channel(endpoint).send("config-get")
        guard let config = answer.arguments, config["Dhcp4"] != nil else {
            throw DHCPError(.serverError, "Kea at \(endpoint.name) answered `config-get` without a Dhcp4 configuration", endpoint: endpoint.name)
        }
        return (config, Self.hash(config))
    }

    static func hash(_ config: JSONValue) -> String { StableHash.of(config.canonicalText).hex }

    public func finishWrites(on endpoints: [String]) async throws {
        for endpoint in server.endpoints where endpoints.contains(endpoint.name) {
            _ = try await channel(endpoint).send("config-write")
            UnfinishedWrite.end(endpoint.controlSocket)
        }
    }

    public func apply(_ changes: [ReservationChange], basedOn token: DHCPVersionToken) async throws -> DHCPApplyReport {
        var reports: [EndpointApplyReport] = []
        // HA peers are updated one after the other, with the same changes; a failure on the
        // second leaves the first updated, which the next observation shows as disagreement.
        for endpoint in server.endpoints {
            do {
                reports.append(try await apply(changes, to: endpoint, version: token.endpoints[endpoint.name]))
            } catch let error as DHCPError where !reports.isEmpty {
                throw DHCPError(error.code, "\(error.message) (already updated: \(reports.map(\.endpoint).joined(separator: ", ")))", endpoint: error.endpoint)
            }
        }
        return DHCPApplyReport(endpoints: reports)
    }

    private func apply(_ changes: [ReservationChange], to endpoint: DHCPServer.Endpoint, version: DHCPVersionToken.Endpoint?) async throws -> EndpointApplyReport {
        guard let version else {
            throw DHCPError(.concurrentEdit, "failed to apply reservations on \(endpoint.name): it was not read when the changes were planned; observe again", endpoint: endpoint.name)
        }
        let channel = try channel(endpoint)
        var steps: [EndpointApplyReport.Step] = []
        func timed<T>(_ name: String, _ body: () async throws -> T) async rethrows -> T {
            let start = ContinuousClock.now
            defer { steps.append(.init(name: name, duration: start.duration(to: .now))) }
            return try await body()
        }
        let (config, hash) = try await timed("config-get") { try await readConfiguration(endpoint) }
        var roundTrips = 1
        var rebased = false
        if hash != version.hash {
            // Changed since observation: carry on with the new configuration only if nothing our
            // changes touch has moved.
            let subnets = Array(Set(changes.flatMap { [$0.before?.subnet, $0.after?.subnet].compactMap { $0 } }))
            let current = KeaConfiguration.reservations(in: config, subnets: subnets).reservations
            if let moved = conflictingEdits(changes, observed: version.reservations, current: current) {
                throw DHCPError(.concurrentEdit, "failed to apply reservations on \(endpoint.name): its configuration changed since it was observed, and the reservations these changes touch moved: \(moved.joined(separator: "; ")). Observe and plan again", endpoint: endpoint.name)
            }
            rebased = true
        }
        let edited = try await timed("edit") { try KeaConfiguration.applying(changes, to: config, endpoint: endpoint.name) }
        guard edited != config else {
            return EndpointApplyReport(endpoint: endpoint.name, roundTrips: roundTrips, rebased: rebased, modified: false, steps: steps)
        }
        _ = try await timed("config-test") { try await channel.send("config-test", arguments: edited) }
        // From config-set to config-write Kea runs what its file does not hold: marked, so that
        // an apply killed in between is finished by the next (a URL endpoint cannot be marked).
        try UnfinishedWrite.begin(endpoint.controlSocket)
        do {
            _ = try await timed("config-set") { try await channel.send("config-set", arguments: edited) }
        } catch let error as DHCPError where error.code == .serverError {
            UnfinishedWrite.end(endpoint.controlSocket)  // refused: Kea runs what it ran
            throw error
        }
        _ = try await timed("config-write") { try await channel.send("config-write") }
        UnfinishedWrite.end(endpoint.controlSocket)
        roundTrips += 3
        return EndpointApplyReport(endpoint: endpoint.name, roundTrips: roundTrips, rebased: rebased, modified: true, steps: steps)
    }
}
