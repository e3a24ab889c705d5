import Foundation
import VirtformModel
import VirtformSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Reservations in dnsmasq through its `--dhcp-hostsfile`: the file is rewritten atomically
/// (a new file renamed into place) and dnsmasq is told to re-read it with SIGHUP, sent to the
/// PID in the endpoint's `pidFile`. Needs to run on the machine that holds the file.
public struct DnsmasqDriver: DHCPDriver {
    public let server: DHCPServer

    public init(server: DHCPServer) {
        self.server = server
    }

    struct Paths {
        var hostsFile: String
        var pidFile: String
    }

    func paths(_ endpoint: DHCPServer.Endpoint) throws -> Paths {
        guard let hostsFile = endpoint.hostsFile, let pidFile = endpoint.pidFile else {
            throw DHCPError(.invalidRequest, "endpoint \(endpoint.name) of \(server.meta.name) needs hostsFile and pidFile for the dnsmasq driver", endpoint: endpoint.name)
        }
        return Paths(hostsFile: hostsFile, pidFile: pidFile)
    }

    /// The PID of the running dnsmasq, or an error saying why there is none.
    func daemon(_ endpoint: DHCPServer.Endpoint) throws -> Int32 {
        let pidFile = try paths(endpoint).pidFile
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8) else {
            throw DHCPError(.unreachable, "failed to find dnsmasq of \(endpoint.name): cannot read its PID file \(pidFile). Ensure dnsmasq runs with --pid-file=\(pidFile)", endpoint: endpoint.name)
        }
        guard let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), Processes.isRunning(pid) else {
            throw DHCPError(.unreachable, "failed to find dnsmasq of \(endpoint.name): the PID in \(pidFile) (\(text.trimmingCharacters(in: .whitespacesAndNewlines))) is not a running process", endpoint: endpoint.name)
        }
        return pid
    }

    /// The hosts file's text; a file that does not exist yet is empty.
    func read(_ endpoint: DHCPServer.Endpoint) throws -> String {
        let path = try paths(endpoint).hostsFile
        guard let data = FileManager.default.contents(atPath: path) else {
            if !FileSystem.exists(path) { return "" }
            throw DHCPError(.unreachable, "failed to read the hosts file \(path) of \(endpoint.name)", endpoint: endpoint.name)
        }
        return String(decoding: data, as: UTF8.self)
    }

    public func probe() async throws {
        for endpoint in server.endpoints {
            let paths = try paths(endpoint)
            let directory = (paths.hostsFile as NSString).deletingLastPathComponent
            guard access(directory, W_OK) == 0 else {
                throw DHCPError(.unreachable, "failed to use the hosts file \(paths.hostsFile) of \(endpoint.name): its directory is not writable (\(String(cString: strerror(errno))))", endpoint: endpoint.name)
            }
            _ = try daemon(endpoint)
        }
    }

    public func observe(subnets: [IPv4Subnet]) async throws -> DHCPObservation {
        var observations: [EndpointObservation] = []
        var versions: [String: DHCPVersionToken.Endpoint] = [:]
        for endpoint in server.endpoints {
            do {
                let text = try read(endpoint)
                let reservations = DnsmasqHostsFile(parsing: text).reservations(in: subnets, ownedElsewhere: true)
                // dnsmasq serves whatever subnets its ranges say; the file cannot tell.
                observations.append(EndpointObservation(name: endpoint.name, state: .observed(reservations: reservations, unservedSubnets: []),
                                                        unfinished: UnfinishedWrite.pending(try? paths(endpoint).hostsFile)))
                versions[endpoint.name] = .init(hash: StableHash.of(text).hex, reservations: reservations)
            } catch {
                observations.append(EndpointObservation(name: endpoint.name, state: .unreachable(reason: "\(error)")))
            }
        }
        return DHCPObservation(server: server.meta.name, subnets: subnets, endpoints: observations, token: DHCPVersionToken(endpoints: versions))
    }

    public func finishWrites(on endpoints: [String]) async throws {
        for endpoint in server.endpoints where endpoints.contains(endpoint.name) {
            let paths = try paths(endpoint)
            let pid = try daemon(endpoint)
            guard kill(pid, SIGHUP) == 0 else {
                throw DHCPError(.unreachable, "failed to signal dnsmasq (pid \(pid)) of \(endpoint.name) to re-read \(paths.hostsFile): \(String(cString: strerror(errno)))", endpoint: endpoint.name)
            }
            UnfinishedWrite.end(paths.hostsFile)
        }
    }

    public func apply(_ changes: [ReservationChange], basedOn token: DHCPVersionToken) async throws -> DHCPApplyReport {
        var reports: [EndpointApplyReport] = []
        for endpoint in server.endpoints {
            guard let version = token.endpoints[endpoint.name] else {
                throw DHCPError(.concurrentEdit, "failed to apply reservations on \(endpoint.name): it was not read when the changes were planned; observe again", endpoint: endpoint.name)
            }
            let paths = try paths(endpoint)
            let pid = try daemon(endpoint)
            let text = try read(endpoint)
            let file = DnsmasqHostsFile(parsing: text)
            var rebased = false
            if StableHash.of(text).hex != version.hash {
                let subnets = Array(Set(changes.flatMap { [$0.before?.subnet, $0.after?.subnet].compactMap { $0 } }))
                if let moved = conflictingEdits(changes, observed: version.reservations, current: file.reservations(in: subnets)) {
                    throw DHCPError(.concurrentEdit, "failed to apply reservations on \(endpoint.name): \(paths.hostsFile) changed since it was observed, and the reservations these changes touch moved: \(moved.joined(separator: "; ")). Observe and plan again", endpoint: endpoint.name)
                }
                rebased = true
            }
            let edited = try file.applying(changes, endpoint: endpoint.name).text
            guard edited != text else {
                reports.append(EndpointApplyReport(endpoint: endpoint.name, roundTrips: 1, rebased: rebased, modified: false))
                continue
            }
            // From the write to the SIGHUP dnsmasq serves what its file no longer says: marked, so
            // that an apply killed in between is finished by the next.
            try UnfinishedWrite.begin(paths.hostsFile)
            do {
                KillPoint.step("write the hosts file of \(endpoint.name)")
                try FileSystem.writeFile(paths.hostsFile, edited, mode: 0o644, owner: nil)
            } catch {
                UnfinishedWrite.end(paths.hostsFile)  // the file is as it was (written whole or not at all)
                throw DHCPError(.unreachable, "failed to write the hosts file of \(endpoint.name): \(error)", endpoint: endpoint.name)
            }
            KillPoint.step("signal dnsmasq of \(endpoint.name)")
            guard kill(pid, SIGHUP) == 0 else {
                throw DHCPError(.unreachable, "failed to signal dnsmasq (pid \(pid)) of \(endpoint.name) to re-read \(paths.hostsFile): \(String(cString: strerror(errno)))", endpoint: endpoint.name)
            }
            UnfinishedWrite.end(paths.hostsFile)
            reports.append(EndpointApplyReport(endpoint: endpoint.name, roundTrips: 3, rebased: rebased, modified: true))
        }
        return DHCPApplyReport(endpoints: reports)
    }
}
