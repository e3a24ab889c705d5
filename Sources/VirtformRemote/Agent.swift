import Foundation
import VirtformDHCP
import VirtformModel
import VirtformStorage
import VirtformSystem

/// `virtform agent`, the far side of `SSHAgentClient`: reads one request from standard input,
/// runs it with the local driver, writes one reply. It is meant to be the forced command of
/// the key virtform logs in with (`command="virtform agent --allow /srv/pool",restrict …` in
/// authorized_keys), so that the account can do only this.
public struct Agent: Sendable {
    /// Programs an `exec` request may run (the zfs driver's).
    public static let programs: Set<String> = ["zfs", "zpool"]
    /// Largest request read (a dnsmasq apply of thousands of reservations fits many times).
    public static let maximumRequest = 64 << 20

    /// Paths requests may name (a pool's folder, a hosts file, a PID file, an image to import),
    /// each a directory prefix; empty allows any.
    public let allowed: [String]
    /// zfs datasets requests may name (each a dataset and what is below it); with `allowed`
    /// set and none of these, zfs is refused altogether.
    public let allowedDatasets: [String]

    public init(allowed: [String], allowedDatasets: [String] = []) {
        self.allowed = allowed.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        self.allowedDatasets = allowedDatasets.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
    }

    /// Whether the agent limits what requests may name.
    var restricted: Bool { !allowed.isEmpty || !allowedDatasets.isEmpty }

    /// The reply to the request in `input`, as JSON.
    public func reply(to input: Data) async -> Data {
        let request: AgentRequest
        do {
            guard input.count <= Self.maximumRequest else { throw AgentFailure(domain: "agent", code: "refused", message: "the request is larger than \(Self.maximumRequest) bytes") }
            request = try JSONDecoder().decode(AgentRequest.self, from: input)
        } catch let failure as AgentFailure {
            return Self.encode(AgentReply<Done>(failure: failure))
        } catch {
            return Self.encode(AgentReply<Done>(failure: AgentFailure(domain: "agent", code: "refused", message: "the agent could not read the request: \(error)")))
        }
        switch request {
        case .storage(let spec, let call, let run):
            return await OwnershipMark.$writingRun.withValue(run) { await storage(spec, call) }
        case .export(let spec, let call):
            return await export(spec, call)
        case .dhcp(let spec, let call):
            return await dhcp(spec, call)
        case .exec(let arguments):
            return await answer(domain: "storage") {
                guard let program = arguments.first, Self.programs.contains(program) else {
                    throw AgentFailure(domain: "agent", code: "refused", message: "the agent runs only \(Self.programs.sorted().joined(separator: ", ")), not \(arguments.first ?? "nothing")")
                }
                try checkCommand(arguments)
                return AnyCodable(try await LocalCommandRunner().run(arguments))
            }
        }
    }

    // MARK: Each driver

    private func storage(_ spec: StoragePoolSpec, _ call: StorageCall) async -> Data {
        await answer(domain: "storage") { () async throws -> AnyCodable in
            if restricted && spec.path == nil && spec.dataset == nil {
                throw AgentFailure(domain: "agent", code: "refused", message: "the agent is limited to named paths and datasets; this pool names neither")
            }
            try check(spec.path, "the pool's path")
            try checkDataset(spec.dataset)
            if case .importImage(_, _, let source, _) = call { try check(source, "the image to import") }
            let driver = try StorageDrivers.driver(named: spec.driver, poolName: spec.pool, path: spec.path, dataset: spec.dataset, site: spec.site)
            switch call {
            case .probe: try await driver.probe()
            case .observe: return AnyCodable(try await driver.observe())
            case .createProject(let name): try await driver.createProject(name)
            case .deleteProject(let name): try await driver.deleteProject(name)
            case .createImage(let project, let name, let size): try await driver.createImage(project: project, name: name, size: size)
            case .importImage(let project, let name, let source, let size): try await driver.importImage(project: project, name: name, source: source, size: size)
            case .createSnapshot(let reference): try await driver.createSnapshot(reference)
            case .deleteSnapshot(let reference): try await driver.deleteSnapshot(reference)
            case .sealSnapshot(let reference): try await driver.sealSnapshot(reference)
            case .clone(let source, let project, let name, let size):
                return AnyCodable(try await driver.clone(from: source, project: project, name: name, size: size))
            case .grow(let project, let name, let size): try await driver.grow(project: project, name: name, to: size)
            case .deleteVolume(let project, let name): try await driver.deleteVolume(project: project, name: name)
            case .adopt(let marks, let unmarked): try await driver.adopt(marks, unmarked: unmarked)
            case .removeHalfMade(let paths): try await driver.removeHalfMade(paths)
            }
            return AnyCodable(Done())
        }
    }

    private func export(_ spec: ExportSpec, _ call: ExportCall) async -> Data {
        await answer(domain: "storage") { () async throws -> AnyCodable in
            guard let export = spec.export else { throw AgentFailure(domain: "agent", code: "refused", message: "the export's driver or portal is not valid") }
            let driver = try ExportDrivers.driver(for: export, tgtControlPort: export.controlPort, credentials: spec.credentials)
            switch call {
            case .probe: try await driver.probe()
            case .observe: return AnyCodable(try await driver.observe())
            case .export(let requests):
                for request in requests { try check(request.backingPath, "a LUN's backing file") }
                try await driver.export(requests)
            case .unexport(let iqn, let force): try await driver.unexport(iqn: iqn, force: force)
            case .secure(let iqns, let rotate): try await driver.secure(iqns, rotate: rotate)
            case .admit(let iqn, let add, let remove): try await driver.admit(iqn: iqn, add: add, remove: remove)
            }
            return AnyCodable(Done())
        }
    }

    private func dhcp(_ spec: DnsmasqSpec, _ call: DHCPCall) async -> Data {
        await answer(domain: "dhcp") { () async throws -> AnyCodable in
            for endpoint in spec.endpoints {
                try check(endpoint.hostsFile, "the hosts file of \(endpoint.name)")
                try check(endpoint.pidFile, "the PID file of \(endpoint.name)")
            }
            let driver = DnsmasqDriver(server: spec.dhcpServer)
            switch call {
            case .probe: try await driver.probe()
            case .observe(let subnets): return AnyCodable(try await driver.observe(subnets: subnets))
            case .apply(let changes, let token): return AnyCodable(try await driver.apply(changes, basedOn: token))
            case .finishWrites(let endpoints): try await driver.finishWrites(on: endpoints)
            }
            return AnyCodable(Done())
        }
    }

    // MARK: Parts

    /// Refuses a path outside the allowed directories: one that climbs out with `..`, or whose
    /// existing part leads elsewhere through a symbolic link.
    private func check(_ path: String?, _ what: String) throws {
        guard let path, restricted else { return }
        func inside(_ candidate: String) -> Bool { allowed.contains { candidate == $0 || candidate.hasPrefix($0 + "/") } }
        let components = path.split(separator: "/")
        // What the path names once every link in it is followed (the existing part of it).
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let roots = allowed.map { URL(fileURLWithPath: $0).resolvingSymlinksInPath().path }
        guard path.hasPrefix("/"), !components.contains(".."), inside(path),
            roots.contains(where: { resolved == $0 || resolved.hasPrefix($0 + "/") })
        else {
            throw AgentFailure(domain: "agent", code: "refused", message: "the agent may not use \(path) (\(what)): it is allowed only \(allowed.isEmpty ? "no paths" : allowed.joined(separator: ", "))")
        }
    }

    private func checkDataset(_ dataset: String?) throws {
        guard let dataset, restricted else { return }
        guard !dataset.split(separator: "/").contains(".."), allowedDatasets.contains(where: { dataset == $0 || dataset.hasPrefix($0 + "/") }) else {
            throw AgentFailure(domain: "agent", code: "refused", message: "the agent may not use dataset \(dataset): it is allowed only \(allowedDatasets.isEmpty ? "no datasets" : allowedDatasets.joined(separator: ", "))")
        }
    }

    /// A zfs command of a limited agent: `zpool` never, and every dataset it names (an argument
    /// that is not an option or a property) inside an allowed one.
    private func checkCommand(_ arguments: [String]) throws {
        guard restricted else { return }
        guard arguments.first == "zfs", !allowedDatasets.isEmpty else {
            throw AgentFailure(domain: "agent", code: "refused",
                               message: allowedDatasets.isEmpty ? "this agent is limited to paths: no zfs (--allow-dataset names the datasets it may touch)"
                                   : "a limited agent runs zfs only")
        }
        for argument in arguments.dropFirst(2) where !argument.hasPrefix("-") && !argument.contains("=") && argument.contains("/") {
            let dataset = argument.split(separator: "@", maxSplits: 1).first.map(String.init) ?? argument
            try checkDataset(dataset)
        }
    }

    private func answer(domain: String, _ body: () async throws -> AnyCodable) async -> Data {
        do {
            return try await body().reply()
        } catch let error as StorageError {
            return Self.encode(AgentReply<Done>(failure: AgentFailure(domain: "storage", code: error.code.rawValue, message: error.message)))
        } catch let error as DHCPError {
            return Self.encode(AgentReply<Done>(failure: AgentFailure(domain: "dhcp", code: error.code.rawValue, message: error.message, endpoint: error.endpoint)))
        } catch let failure as AgentFailure {
            return Self.encode(AgentReply<Done>(failure: failure))
        } catch {
            let code = domain == "dhcp" ? DHCPError.Code.unreachable.rawValue : StorageError.Code.failed.rawValue
            return Self.encode(AgentReply<Done>(failure: AgentFailure(domain: domain, code: code, message: "\(error)")))
        }
    }

    static func encode<T: Encodable>(_ value: T) -> Data {
        (try? JSONEncoder().encode(value)) ?? Data(#"{"failure":{"domain":"agent","code":"failed","message":"the reply could not be encoded"}}"#.utf8)
    }
}

/// A result of any Codable type, encoded as the reply it becomes.
struct AnyCodable: Sendable {
    let reply: @Sendable () throws -> Data

    init<T: Codable & Sendable>(_ value: T) {
        reply = { try JSONEncoder().encode(AgentReply(result: value)) }
    }
}
