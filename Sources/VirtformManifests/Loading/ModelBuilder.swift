import VirtformModel

/// Builds the model object of one document whose shape has been checked.
///
/// Field types are known to be right by now; what remains are rules that tie fields of one
/// document together, reported through the same checker.
struct ModelBuilder {
    let root: YAMLNode
    let provenance: Provenance
    var checker: ShapeChecker

    private let spec: YAMLNode

    init(root: YAMLNode, provenance: Provenance, checker: ShapeChecker) {
        self.root = root
        self.spec = root["spec"] ?? root
        self.provenance = provenance
        self.checker = checker
    }


    /// The object, or nil with a diagnostic. Never traps: if the shape check and the builder ever
    /// disagree, the user sees an internal error naming the field instead of a crash.
    mutating func build(_ kind: Kind) -> (any SiteObject)? {
        do {
            return try buildChecked(kind)
        } catch let missing as Missing {
            checker.report(root, missing.path, "internal error: the field passed its checks but could not be read; please report this")
            return nil
        } catch {
            return nil
        }
    }

    private struct Missing: Error { var path: String }

    private func need<T>(_ value: T?, _ path: String) throws -> T {
        guard let value else { throw Missing(path: path) }
        return value
    }

    private mutating func buildChecked(_ kind: Kind) throws -> (any SiteObject)? {
        let meta = ObjectMeta(name: try need(root["metadata"]?["name"]?.scalar, "metadata.name"),
                              labels: stringMap(root["metadata"]?["labels"]),
                              annotations: stringMap(root["metadata"]?["annotations"]))
        switch kind {
        case .site: return SiteDeclaration(meta: meta, description: string(spec["description"]), backend: string(spec["backend"]),
                                           reconcile: string(spec["reconcile"]).flatMap(ReconcileMode.init(rawValue:)), provenance: provenance)
        case .host: return try host(meta)
        case .cluster: return try cluster(meta)
        case .storagePool: return try storagePool(meta)
        case .storageProject:
            return StorageProject(meta: meta, pool: try need(string(spec["pool"]), "pool"), quota: size(spec["quota"]), provenance: provenance)
        case .image:
            return Image(meta: meta, project: try need(string(spec["project"]), "project"), size: size(spec["size"]), source: string(spec["source"]),
                         snapshots: strings(spec["snapshots"]), provenance: provenance)
        case .network:
            return Network(meta: meta, bridge: try need(string(spec["bridge"]), "bridge"), subnet: try need(IPv4Subnet(parsing: try need(string(spec["subnet"]), "subnet")), "value"),
                           gateway: string(spec["gateway"]).flatMap(IPv4Address.init(parsing:)),
                           dhcpServer: string(spec["dhcpServer"]), provenance: provenance)
        case .dhcpServer: return try dhcpServer(meta)
        case .virtualMachine: return try virtualMachine(meta)
        case .networkBinding:
            return NetworkBinding(meta: meta, vm: try need(VMID(parsing: try need(string(spec["vm"]), "vm")), "value"), interface: try need(string(spec["interface"]), "interface"),
                                  address: try need(IPv4Address(parsing: try need(string(spec["address"]), "address")), "value"),
                                  hostname: try need(string(spec["hostname"]), "hostname"), provenance: provenance)
        }
    }

    // MARK: - Kinds

    private func host(_ meta: ObjectMeta) throws -> Host {
        let capacity = try need(spec["capacity"], "spec.capacity")
        return Host(meta: meta, uri: try need(string(spec["uri"]), "uri"),
                    capacity: Capacity(memory: try need(size(capacity["memory"]), "memory"), vcpus: try need(capacity["vcpus"]?.integer, "spec.capacity.vcpus"),
                                       maxGuests: integer(capacity["maxGuests"])),
                    bridges: strings(spec["bridges"]), migrationAddress: string(spec["migrationAddress"]),
                    maintenance: boolean(spec["maintenance"]) ?? false,
                    domainType: string(spec["domainType"]).flatMap(Host.DomainType.init(rawValue:)) ?? .kvm,
                    guestNetworking: string(spec["guestNetworking"]).flatMap(Host.GuestNetworking.init(rawValue:)) ?? .bridge,
                    fenceCommand: spec["fence"].flatMap(nonNull).map { strings($0["command"]) },
                    ssh: spec["ssh"].flatMap(nonNull).map { SSHClientFiles(identity: path(string($0["identity"])), knownHosts: path(string($0["knownHosts"]))) },
                    initiatorName: string(spec["initiatorName"]), provenance: provenance)
    }

    private mutating func cluster(_ meta: ObjectMeta) throws -> Cluster? {
        let members: Cluster.Members = spec["hosts"].flatMap(nonNull) != nil
            ? .hosts(strings(spec["hosts"])) : .selector(stringMap(spec["hostSelector"]))
        let placementNode = try need(spec["placement"], "spec.placement")
        let perHost = integer(placementNode["maxGuestsPerHost"])
        let placement: PlacementPolicy
        if string(placementNode["policy"]) == "pack" {
            guard let perHost else {
                checker.report(placementNode, "spec.placement.maxGuestsPerHost", "policy pack needs maxGuestsPerHost, e.g. 6")
                return nil
            }
            placement = .pack(maxGuestsPerHost: perHost)
        } else {
            if let node = placementNode["maxGuestsPerHost"], !node.isNull {
                checker.report(node, "spec.placement.maxGuestsPerHost", "maxGuestsPerHost is for policy pack; policy spread places by load")
                return nil
            }
            placement = .spread
        }
        let defaults = Rebalance()
        let rebalanceNode = spec["rebalance"]
        let rebalance = Rebalance(
            mode: string(rebalanceNode?["mode"]).flatMap(Rebalance.Mode.init(rawValue:)) ?? defaults.mode,
            thresholdPercent: integer(rebalanceNode?["thresholdPercent"]) ?? defaults.thresholdPercent,
            maxMigrationsPerRun: integer(rebalanceNode?["maxMigrationsPerRun"]) ?? defaults.maxMigrationsPerRun,
            cooldownSeconds: integer(rebalanceNode?["cooldownSeconds"]) ?? defaults.cooldownSeconds)
        let haDefaults = HighAvailability()
        let ha = HighAvailability(enabled: boolean(spec["ha"]?["enabled"]) ?? haDefaults.enabled,
                                  hostFailuresToTolerate: integer(spec["ha"]?["hostFailuresToTolerate"]) ?? haDefaults.hostFailuresToTolerate)
        let migrationDefaults = MigrationPolicy()
        let migrationNode = spec["migration"]
        let migration = MigrationPolicy(
            maxPerHost: integer(migrationNode?["maxPerHost"]) ?? migrationDefaults.maxPerHost,
            maxInCluster: integer(migrationNode?["maxInCluster"]) ?? migrationDefaults.maxInCluster,
            secondsPerGiB: integer(migrationNode?["secondsPerGiB"]) ?? migrationDefaults.secondsPerGiB,
            noProgressSeconds: integer(migrationNode?["noProgressSeconds"]) ?? migrationDefaults.noProgressSeconds,
            bandwidthMiBps: integer(migrationNode?["bandwidthMiBps"]))
        let rules = (spec["rules"]?.items ?? []).compactMap { node -> PlacementRule? in
            guard let name = string(node["name"]) else { return nil }
            if let selector = node["antiAffinity"].flatMap(nonNull) {
                return PlacementRule(name: name, kind: .antiAffinity, selector: stringMap(selector))
            }
            return PlacementRule(name: name, kind: .affinity, selector: stringMap(node["affinity"]))
        }
        return Cluster(meta: meta, members: members, placement: placement, rebalance: rebalance, highAvailability: ha,
                       migration: migration, rules: rules, provenance: provenance)
    }

    private func storagePool(_ meta: ObjectMeta) throws -> StoragePool {
        var export: ISCSIExport?
        if let node = spec["export"].flatMap(nonNull) {
            export = ISCSIExport(driver: try need(ISCSIExport.Driver(rawValue: try need(string(node["driver"]), "driver")), "value"),
                                 portal: try need(HostPort(parsing: try need(string(node["portal"]), "portal")), "value"),
                                 iqnPrefix: try need(string(node["iqnPrefix"]), "iqnPrefix"), initiators: strings(node["initiators"]),
                                 controlPort: integer(node["controlPort"]) ?? 0, chap: chap(node["chap"]))
            export?.admitHosts = boolean(node["admitHosts"]) ?? false
        }
        return StoragePool(meta: meta, driver: try need(StoragePool.Driver(rawValue: try need(string(spec["driver"]), "driver")), "value"), path: string(spec["path"]),
                           dataset: string(spec["dataset"]), ssh: sshAccess(spec["ssh"]), export: export, provenance: provenance)
    }

    private func dhcpServer(_ meta: ObjectMeta) throws -> DHCPServer {
        let endpoints = try (spec["endpoints"]?.items ?? []).map { node in
            DHCPServer.Endpoint(name: try need(string(node["name"]), "name"), controlSocket: string(node["controlSocket"]),
                                url: string(node["url"]), hostsFile: string(node["hostsFile"]), pidFile: string(node["pidFile"]))
        }
        return DHCPServer(meta: meta, driver: try need(DHCPServer.Driver(rawValue: try need(string(spec["driver"]), "driver")), "value"), endpoints: endpoints,
                          ssh: sshAccess(spec["ssh"]), provenance: provenance)
    }

    private mutating func virtualMachine(_ meta: ObjectMeta) throws -> VirtualMachine? {
        let placementNode = try need(spec["placement"], "spec.placement")
        let selector = stringMap(placementNode["hostSelector"])
        let placement: VirtualMachine.Placement
        if let host = string(placementNode["host"]) {
            if !selector.isEmpty {
                checker.report(try need(placementNode["hostSelector"], "spec.placement.hostSelector"), "spec.placement.hostSelector",
                               "hostSelector narrows a cluster's hosts; it cannot be used with host")
                return nil
            }
            placement = .host(host)
        } else {
            placement = .cluster(try need(string(placementNode["cluster"]), "cluster"), hostSelector: selector)
        }
        var disk: VirtualMachine.Disk?
        if let node = spec["disk"].flatMap(nonNull) {
            disk = VirtualMachine.Disk(source: try need(SnapshotReference(parsing: try need(string(node["from"]), "from")), "value"), size: size(node["size"]))
        }
        let interfaces = try (spec["interfaces"]?.items ?? []).map { node in
            let network = try need(string(node["network"]), "network")
            return VirtualMachine.Interface(name: string(node["name"]) ?? network, network: network,
                                            mac: string(node["mac"]).flatMap(MACAddress.init(parsing:)))
        }
        return VirtualMachine(
            meta: meta, project: try need(string(spec["project"]), "project"),
            type: string(spec["type"]).flatMap(VirtualMachine.VirtualizationType.init(rawValue:)) ?? .hvm,
            memory: try need(size(spec["memory"]), "memory"), vcpus: try need(spec["vcpus"]?.integer, "spec.vcpus"),
            maxVCPUs: spec["maxVcpus"]?.integer, disk: disk, interfaces: interfaces,
            placement: placement, power: string(spec["power"]).flatMap(VirtualMachine.PowerState.init(rawValue:)) ?? .running,
            deletionProtection: boolean(spec["deletionProtection"]) ?? false, allowRestart: boolean(spec["allowRestart"]) ?? false,
            ha: string(spec["ha"]).flatMap(VirtualMachine.HAPolicy.init(rawValue:)) ?? .none,
            reconcile: string(spec["reconcile"]).flatMap(ReconcileMode.init(rawValue:)),
            provenance: provenance)
    }

    // MARK: - Values (already checked; absent or null reads as nil)

    private func nonNull(_ node: YAMLNode) -> YAMLNode? { node.isNull ? nil : node }
    private func string(_ node: YAMLNode?) -> String? { node.flatMap(nonNull)?.scalar }
    private func integer(_ node: YAMLNode?) -> Int? { node.flatMap(nonNull)?.integer }
    private func boolean(_ node: YAMLNode?) -> Bool? { node.flatMap(nonNull)?.boolean }
    private func size(_ node: YAMLNode?) -> ByteSize? { string(node).flatMap(ByteSize.init(parsing:)) }
    /// `export.chap`: the accounts, with references to their secrets (never the values).
    private func chap(_ node: YAMLNode?) -> CHAPSettings? {
        func account(_ node: YAMLNode?) -> CHAPSettings.Account? {
            guard let node = node.flatMap(nonNull), let username = string(node["username"]), let reference = secretRef(node["secretRef"]) else { return nil }
            return CHAPSettings.Account(username: username, secret: reference)
        }
        guard let node = node.flatMap(nonNull), let initiator = account(node) else { return nil }
        return CHAPSettings(initiator: initiator, mutual: account(node["mutual"]))
    }

    /// `secretRef: {env: NAME}` or `{file: PATH}` (relative to this file).
    private func secretRef(_ node: YAMLNode?) -> SecretRef? {
        guard let node = node.flatMap(nonNull) else { return nil }
        if let name = string(node["env"]) { return SecretRef(.environment(name)) }
        if let file = path(string(node["file"])) { return SecretRef(.file(file)) }
        return nil
    }

    /// `spec.ssh` of a pool or DHCP server: the machine `virtform agent` runs on.
    private func sshAccess(_ node: YAMLNode?) -> SSHAccess? {
        guard let node = node.flatMap(nonNull), let target = string(node["target"]) else { return nil }
        return SSHAccess(target: target, port: integer(node["port"]), identity: path(string(node["identity"])),
                         knownHosts: path(string(node["knownHosts"])), agent: string(node["agent"]))
    }

    /// A file named in the manifest: relative paths are relative to the manifest's directory.
    private func path(_ text: String?) -> String? {
        guard let text, !text.hasPrefix("/") else { return text }
        let file = provenance.document.file
        guard let slash = file.lastIndex(of: "/") else { return text }
        return String(file[...slash]) + text
    }
    private func strings(_ node: YAMLNode?) -> [String] { node?.items.compactMap(\.scalar) ?? [] }
    private func stringMap(_ node: YAMLNode?) -> [String: String] {
        var map: [String: String] = [:]
        for pair in node?.pairs ?? [] {
            if let key = pair.key.scalar, let value = pair.value.scalar { map[key] = value }
        }
        return map
    }
}
