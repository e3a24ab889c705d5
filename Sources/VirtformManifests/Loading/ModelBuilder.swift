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
        self.spec = root["spec"]!
        self.provenance = provenance
        self.checker = checker
    }


    mutating func build(_ kind: Kind) -> (any SiteObject)? {
        let meta = ObjectMeta(name: root["metadata"]!["name"]!.scalar!,
                              labels: stringMap(root["metadata"]!["labels"]),
                              annotations: stringMap(root["metadata"]!["annotations"]))
        switch kind {
        case .host: return host(meta)
        case .cluster: return cluster(meta)
        case .storagePool: return storagePool(meta)
        case .storageProject:
            return StorageProject(meta: meta, pool: string(spec["pool"])!, quota: size(spec["quota"]), provenance: provenance)
        case .image:
            return Image(meta: meta, project: string(spec["project"])!, size: size(spec["size"]), source: string(spec["source"]),
                         snapshots: strings(spec["snapshots"]), provenance: provenance)
        case .network:
            return Network(meta: meta, bridge: string(spec["bridge"])!, subnet: IPv4Subnet(parsing: string(spec["subnet"])!)!,
                           gateway: string(spec["gateway"]).flatMap(IPv4Address.init(parsing:)),
                           dhcpServer: string(spec["dhcpServer"]), provenance: provenance)
        case .dhcpServer: return dhcpServer(meta)
        case .virtualMachine: return virtualMachine(meta)
        case .networkBinding:
            return NetworkBinding(meta: meta, vm: VMID(parsing: string(spec["vm"])!)!, interface: string(spec["interface"])!,
                                  address: IPv4Address(parsing: string(spec["address"])!)!,
                                  hostname: string(spec["hostname"])!, provenance: provenance)
        }
    }

    // MARK: - Kinds

    private func host(_ meta: ObjectMeta) -> Host {
        let capacity = spec["capacity"]!
        return Host(meta: meta, uri: string(spec["uri"])!,
                    capacity: Capacity(memory: size(capacity["memory"])!, vcpus: capacity["vcpus"]!.integer!,
                                       maxGuests: integer(capacity["maxGuests"])),
                    bridges: strings(spec["bridges"]), migrationAddress: string(spec["migrationAddress"]),
                    maintenance: boolean(spec["maintenance"]) ?? false, provenance: provenance)
    }

    private mutating func cluster(_ meta: ObjectMeta) -> Cluster? {
        let members: Cluster.Members = spec["hosts"].flatMap(nonNull) != nil
            ? .hosts(strings(spec["hosts"])) : .selector(stringMap(spec["hostSelector"]))
        let placementNode = spec["placement"]!
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
            maxMigrationsPerRun: integer(rebalanceNode?["maxMigrationsPerRun"]) ?? defaults.maxMigrationsPerRun)
        let haDefaults = HighAvailability()
        let ha = HighAvailability(enabled: boolean(spec["ha"]?["enabled"]) ?? haDefaults.enabled,
                                  hostFailuresToTolerate: integer(spec["ha"]?["hostFailuresToTolerate"]) ?? haDefaults.hostFailuresToTolerate)
        return Cluster(meta: meta, members: members, placement: placement, rebalance: rebalance, highAvailability: ha,
                       provenance: provenance)
    }

    private func storagePool(_ meta: ObjectMeta) -> StoragePool {
        var export: ISCSIExport?
        if let node = spec["export"].flatMap(nonNull) {
            export = ISCSIExport(driver: ISCSIExport.Driver(rawValue: string(node["driver"])!)!,
                                 portal: HostPort(parsing: string(node["portal"])!)!,
                                 iqnPrefix: string(node["iqnPrefix"])!, initiators: strings(node["initiators"]))
        }
        return StoragePool(meta: meta, driver: StoragePool.Driver(rawValue: string(spec["driver"])!)!, path: string(spec["path"]),
                           dataset: string(spec["dataset"]), sshTarget: string(spec["ssh"]), export: export, provenance: provenance)
    }

    private func dhcpServer(_ meta: ObjectMeta) -> DHCPServer {
        let endpoints = (spec["endpoints"]?.items ?? []).map { node in
            DHCPServer.Endpoint(name: string(node["name"])!, controlSocket: string(node["controlSocket"]),
                                url: string(node["url"]), hostsFile: string(node["hostsFile"]), pidFile: string(node["pidFile"]))
        }
        return DHCPServer(meta: meta, driver: DHCPServer.Driver(rawValue: string(spec["driver"])!)!, endpoints: endpoints,
                          provenance: provenance)
    }

    private mutating func virtualMachine(_ meta: ObjectMeta) -> VirtualMachine? {
        let placementNode = spec["placement"]!
        let selector = stringMap(placementNode["hostSelector"])
        let placement: VirtualMachine.Placement
        if let host = string(placementNode["host"]) {
            if !selector.isEmpty {
                checker.report(placementNode["hostSelector"]!, "spec.placement.hostSelector",
                               "hostSelector narrows a cluster's hosts; it cannot be used with host")
                return nil
            }
            placement = .host(host)
        } else {
            placement = .cluster(string(placementNode["cluster"])!, hostSelector: selector)
        }
        var disk: VirtualMachine.Disk?
        if let node = spec["disk"].flatMap(nonNull) {
            disk = VirtualMachine.Disk(source: SnapshotReference(parsing: string(node["from"])!)!, size: size(node["size"]))
        }
        let interfaces = (spec["interfaces"]?.items ?? []).map { node in
            let network = string(node["network"])!
            return VirtualMachine.Interface(name: string(node["name"]) ?? network, network: network,
                                            mac: string(node["mac"]).flatMap(MACAddress.init(parsing:)))
        }
        return VirtualMachine(
            meta: meta, project: string(spec["project"])!,
            type: string(spec["type"]).flatMap(VirtualMachine.VirtualizationType.init(rawValue:)) ?? .hvm,
            memory: size(spec["memory"])!, vcpus: spec["vcpus"]!.integer!, disk: disk, interfaces: interfaces,
            placement: placement, power: string(spec["power"]).flatMap(VirtualMachine.PowerState.init(rawValue:)) ?? .running,
            deletionProtection: boolean(spec["deletionProtection"]) ?? false, provenance: provenance)
    }

    // MARK: - Values (already checked; absent or null reads as nil)

    private func nonNull(_ node: YAMLNode) -> YAMLNode? { node.isNull ? nil : node }
    private func string(_ node: YAMLNode?) -> String? { node.flatMap(nonNull)?.scalar }
    private func integer(_ node: YAMLNode?) -> Int? { node.flatMap(nonNull)?.integer }
    private func boolean(_ node: YAMLNode?) -> Bool? { node.flatMap(nonNull)?.boolean }
    private func size(_ node: YAMLNode?) -> ByteSize? { string(node).flatMap(ByteSize.init(parsing:)) }
    private func strings(_ node: YAMLNode?) -> [String] { node?.items.compactMap(\.scalar) ?? [] }
    private func stringMap(_ node: YAMLNode?) -> [String: String] {
        var map: [String: String] = [:]
        for pair in node?.pairs ?? [] {
            if let key = pair.key.scalar, let value = pair.value.scalar { map[key] = value }
        }
        return map
    }
}
