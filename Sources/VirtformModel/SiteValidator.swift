/// The checks that need the whole site: names, references, addresses, bridges and capacity.
///
/// Shape checks (types, units, unknown keys) happen while reading the manifests; by the time a
/// `Site` exists every field has the right type, and this validator only checks how the objects
/// fit together. Every problem is reported, none stops the others.
public struct SiteValidator {
    private let site: Site
    private let index: SiteIndex
    private var diagnostics: [Diagnostic] = []
    /// Candidate hosts per placement rule: thousands of VMs share a handful of rules.
    private var candidateCache: [VirtualMachine.Placement: PlacementFacts] = [:]

    private struct PlacementFacts {
        var hosts: [Host]
        var largestMemory: ByteSize
        var mostVCPUs: Int
        /// Bridge → names of candidate hosts that lack it; only bridges someone lacks are listed.
        var hostsLacking: [String: [String]]
        var bridgesOfAll: Set<String>
    }

    public static func validate(_ site: Site) -> [Diagnostic] {
        var validator = SiteValidator(site: site)
        validator.run()
        return validator.diagnostics
    }

    private init(site: Site) {
        self.site = site
        self.index = SiteIndex(site)
    }

    private mutating func run() {
        checkSite()
        checkDuplicates(site.hosts)
        site.hosts.forEach { checkHostSSH($0) }
        checkDuplicates(site.clusters)
        checkDuplicates(site.pools)
        checkDuplicates(site.projects)
        checkDuplicates(site.images)
        checkDuplicates(site.networks)
        checkDuplicates(site.dhcpServers)
        checkDuplicates(site.virtualMachines)
        checkDuplicates(site.bindings)
        checkClusters()
        site.pools.forEach { checkPool($0) }
        for pool in site.pools { if let access = pool.ssh { checkSSHAccess(pool, access) } }
        for server in site.dhcpServers { if let access = server.ssh { checkSSHAccess(server, access) } }
        for project in site.projects {
            reference(project, "spec.pool", .storagePool, project.pool, exists: index.pools[project.pool] != nil,
                      known: index.pools.keys)
        }
        site.images.forEach { checkImage($0) }
        checkNetworks()
        site.dhcpServers.forEach { checkDHCPServer($0) }
        checkVirtualMachines()
        checkBindings()
    }

    /// One `Site` document at most; without one, a warning (the site is called `default`).
    private mutating func checkSite() {
        if let first = site.declarations.first {
            for other in site.declarations.dropFirst() {
                report(other, "metadata.name", "a site has one Site document; the first (\(first.meta.name)) is declared at \(first.provenance.document)")
            }
            return
        }
        // Objects of a kind are in load order, so the earliest of the first of each kind is the site's first.
        let firsts: [(any SiteObject)?] = [site.hosts.first, site.clusters.first, site.pools.first, site.projects.first, site.images.first,
                                           site.networks.first, site.dhcpServers.first, site.virtualMachines.first, site.bindings.first]
        guard let anchor = firsts.compactMap({ $0 }).min(by: { $0.provenance.document < $1.provenance.document }) else { return }
        diagnostics.append(Diagnostic(.warning, at: anchor.provenance.document, object: nil, field: "",
                                      message: "no Site document: this site is called \"\(Site.defaultName)\", and every mark it writes says so; declare `kind: Site` to name it"))
    }

    /// A pool's or DHCP server's `spec.ssh`: words OpenSSH takes as they are — a target that is
    /// not an option, an agent that is a plain program path (the remote side runs it), files
    /// without spaces, quotes or `%` (ssh's option syntax would read them otherwise).
    private mutating func checkSSHAccess(_ object: some SiteObject, _ access: SSHAccess) {
        func plain(_ text: String, extra: String) -> Bool {
            !text.isEmpty && text.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || extra.unicodeScalars.contains($0)) }
        }
        if access.target.hasPrefix("-") || !plain(access.target, extra: "._-@:[]") {
            report(object, "spec.ssh.target", "the target must be user@host in letters, digits and . _ - @ : (no spaces, quotes or shell characters), not \"\(Redaction.escapingControls(access.target))\"")
        }
        if let agent = access.agent, agent.hasPrefix("-") || !plain(agent, extra: "/._-") {
            report(object, "spec.ssh.agent", "the agent must be a program path in letters, digits and / . _ - (the far side runs it as it is), not \"\(Redaction.escapingControls(agent))\"")
        }
        for (field, path) in [("identity", access.identity), ("knownHosts", access.knownHosts)] {
            guard let path else { continue }
            if path.contains(where: { $0 == " " || $0 == "\"" || $0 == "'" || $0 == "%" || $0 == "\t" }) {
                report(object, "spec.ssh.\(field)", "ssh cannot take this path as it is: it has a space, a quote or %; move the file")
            }
        }
    }

    /// `spec.ssh` belongs to an SSH URI, names each file once, and a known_hosts file only
    /// where libvirt can hand it to its client (libssh; the OpenSSH program reads its own).
    private mutating func checkHostSSH(_ host: Host) {
        if let name = host.initiatorName, !(name.hasPrefix("iqn.") || name.hasPrefix("eui.") || name.hasPrefix("naa.")) || name.contains(" ") {
            report(host, "spec.initiatorName", "an iSCSI initiator name starts with iqn., eui. or naa. and has no spaces, e.g. iqn.2026-11.io.example:\(host.name)")
        }
        guard let ssh = host.ssh else { return }
        guard let transport = host.sshTransport else {
            report(host, "spec.ssh", "spec.ssh is for SSH URIs (qemu+libssh://… or qemu+ssh://…); this host's URI uses another transport")
            return
        }
        let query = host.uri.split(separator: "?", maxSplits: 1).dropFirst().first.map { $0.split(separator: "&").map { $0.split(separator: "=").first.map(String.init) ?? "" } } ?? []
        if ssh.identity != nil, query.contains("keyfile") {
            report(host, "spec.ssh.identity", "the key is named twice: in spec.ssh.identity and in the URI's keyfile parameter; keep one")
        }
        if ssh.knownHosts != nil, query.contains("known_hosts") {
            report(host, "spec.ssh.knownHosts", "the known_hosts file is named twice: in spec.ssh.knownHosts and in the URI's known_hosts parameter; keep one")
        }
        if ssh.knownHosts != nil, transport == "ssh" {
            report(host, "spec.ssh.knownHosts",
                   "qemu+ssh runs the OpenSSH program, which libvirt cannot give a known_hosts file: it reads ~/.ssh/known_hosts (or an ssh_config Host block) of the user virtform runs as",
                   suggestion: "use qemu+libssh://, or leave knownHosts out")
        }
    }

    // MARK: - Helpers

    private mutating func report(_ object: some SiteObject, _ field: String, _ message: String, suggestion: String? = nil,
                                 severity: Diagnostic.Severity = .error) {
        diagnostics.append(Diagnostic(severity, at: object.provenance.location(of: field), object: object.reference,
                                      field: field, message: message, suggestion: suggestion))
    }

    /// Reports a reference to an object that is not declared, unless it was declared with errors.
    private mutating func reference(_ object: some SiteObject, _ field: String, _ kind: Kind, _ name: String, exists: Bool,
                                    known: some Sequence<String>) {
        guard !exists, !site.incomplete.contains(Site.incompleteKey(kind, name)) else { return }
        report(object, field, "no \(kind.rawValue) named \"\(name)\" is declared",
               suggestion: Suggestion.nearest(to: name, in: known))
    }

    private mutating func checkDuplicates<T: SiteObject>(_ objects: [T]) {
        var first: [String: T] = [:]
        for object in objects {
            if let original = first[object.uniqueName] {
                report(object, "metadata.name",
                       "duplicate \(T.kind.rawValue) \"\(object.uniqueName)\": first declared at \(original.provenance.document)")
            } else {
                first[object.uniqueName] = object
            }
        }
    }

    // MARK: - Hosts and clusters

    private mutating func checkClusters() {
        var clusterOfHost: [String: String] = [:]
        for cluster in site.clusters {
            switch cluster.members {
            case .hosts(let names):
                for (i, name) in names.enumerated() {
                    reference(cluster, "spec.hosts[\(i)]", .host, name, exists: index.hosts[name] != nil, known: index.hosts.keys)
                }
            case .selector(let selector):
                if index.members(of: cluster).isEmpty {
                    report(cluster, "spec.hostSelector", "no host has the labels \(describe(selector))")
                }
            }
            let members = index.members(of: cluster)
            for host in members {
                if let other = clusterOfHost[host.name], other != cluster.name {
                    report(cluster, "spec", "host \"\(host.name)\" is already a member of cluster \"\(other)\"; a host belongs to one cluster")
                } else {
                    clusterOfHost[host.name] = cluster.name
                }
            }
            // VI3: "all network interfaces and virtual switches must share the same names", or
            // guests cannot move between the cluster's hosts.
            if let reference = members.first {
                let expected = Set(reference.bridges)
                for host in members.dropFirst() where Set(host.bridges) != expected {
                    report(cluster, "spec",
                           "hosts of a cluster must offer the same bridges: \"\(reference.name)\" offers \(describe(expected)), \"\(host.name)\" offers \(describe(Set(host.bridges)))")
                }
            }
            if case .pack(let perHost) = cluster.placement, let tightest = members.compactMap(\.capacity.maxGuests).min(),
                perHost > tightest {
                report(cluster, "spec.placement.maxGuestsPerHost",
                       "packs \(perHost) guests per host, but a member host allows only \(tightest) (spec.capacity.maxGuests)",
                       severity: .warning)
            }
            if cluster.highAvailability.enabled, cluster.highAvailability.hostFailuresToTolerate >= max(members.count, 1) {
                report(cluster, "spec.ha.hostFailuresToTolerate",
                       "must be smaller than the number of hosts in the cluster (\(members.count))")
            }
            var ruleNames = Set<String>()
            for (i, rule) in cluster.rules.enumerated() {
                if !ruleNames.insert(rule.name).inserted {
                    report(cluster, "spec.rules[\(i)].name", "rule \"\(rule.name)\" is named twice in this cluster")
                }
                if rule.selector.isEmpty {
                    report(cluster, "spec.rules[\(i)].\(rule.kind == .affinity ? "affinity" : "antiAffinity")",
                           "selects no VM: give the labels of the VMs it is about")
                }
            }
        }
    }

    // MARK: - Storage

    /// What the pool's driver needs and cannot use, from its descriptor (`Drivers`).
    private mutating func checkPool(_ pool: StoragePool) {
        if let export = pool.export, export.driver != .tgt {
            if export.chap != nil { report(pool, "spec.export.chap", "CHAP is set up by the tgt export driver only") }
            if export.admitHosts { report(pool, "spec.export.admitHosts", "admitting hosts by name is done by the tgt export driver only") }
        }
        if let export = pool.export, export.chap != nil,
            let other = site.pools.first(where: { $0.name != pool.name && $0.export?.chap != nil && $0.export?.secretUsage == export.secretUsage }),
            other.name < pool.name {
            report(pool, "spec.export.chap.username", "pool \(other.name) has the same iqnPrefix and CHAP account: the hosts' libvirt secret of it would be one; give one of them another account or prefix")
        }
        if let export = pool.export, export.admitHosts {
            if !export.initiators.isEmpty {
                report(pool, "spec.export.admitHosts", "admitHosts admits each guest's host by name; it cannot be used with a fixed initiators list")
            }
            for host in site.hosts where host.initiatorName == nil {
                report(host, "spec.initiatorName", "pool \(pool.name) admits hosts by name (export.admitHosts): this host needs spec.initiatorName, e.g. iqn.2026-11.io.example:\(host.name)")
            }
        }
        guard let driver = Drivers.descriptor(.storagePool, pool.driver.rawValue) else { return }
        let given: [String: Bool] = ["path": pool.path != nil, "dataset": pool.dataset != nil, "ssh": pool.sshTarget != nil]
        for (field, purpose) in driver.requires.sorted(by: { $0.key < $1.key }) where given[field] != true {
            report(pool, "spec.\(field)", "driver \(driver.name) needs spec.\(field), \(purpose)")
        }
        for (field, instead) in driver.rejects.sorted(by: { $0.key < $1.key }) where given[field] == true {
            report(pool, "spec.\(field)", "driver \(driver.name) does not use spec.\(field); use \(instead)")
        }
    }

    private mutating func checkImage(_ image: Image) {
        reference(image, "spec.project", .storageProject, image.project, exists: index.projects[image.project] != nil,
                  known: index.projects.keys)
        if image.size == nil && image.source == nil {
            report(image, "spec", "an image needs spec.size (an empty LUN) or spec.source (a raw file to import)")
        }
    }

    // MARK: - Networks and DHCP

    private mutating func checkNetworks() {
        var networkOfBridge: [String: String] = [:]
        for network in site.networks {
            if let server = network.dhcpServer {
                reference(network, "spec.dhcpServer", .dhcpServer, server, exists: index.dhcpServers[server] != nil,
                          known: index.dhcpServers.keys)
            }
            if let gateway = network.gateway, !network.subnet.isUsableHostAddress(gateway) {
                report(network, "spec.gateway", "\(gateway) is not a usable address in \(network.subnet)")
            }
            if let other = networkOfBridge[network.bridge], other != network.name {
                report(network, "spec.bridge", "bridge \"\(network.bridge)\" already carries network \"\(other)\"")
            } else {
                networkOfBridge[network.bridge] = network.name
            }
        }
    }

    private mutating func checkDHCPServer(_ server: DHCPServer) {
        if server.endpoints.count > 1, Drivers.descriptor(.dhcpServer, server.driver.rawValue)?.dhcp?.highAvailability != true {
            report(server, "spec.endpoints", "the \(server.driver.rawValue) driver cannot keep two endpoints in step; give it one")
        }
        if server.ssh != nil, server.driver == .kea {
            report(server, "spec.ssh", "spec.ssh is for dnsmasq (its hosts file on another machine); kea is reached through its control socket or agent url")
        }
        var seen: Set<String> = []
        for (i, endpoint) in server.endpoints.enumerated() {
            let field = "spec.endpoints[\(i)]"
            if !seen.insert(endpoint.name).inserted {
                report(server, "\(field).name", "endpoint name \"\(endpoint.name)\" is used twice")
            }
            switch server.driver {
            case .kea:
                if (endpoint.controlSocket == nil) == (endpoint.url == nil) {
                    report(server, field, "a kea endpoint needs exactly one of controlSocket (unix socket path) or url (control agent)")
                }
                if endpoint.hostsFile != nil || endpoint.pidFile != nil {
                    report(server, field, "hostsFile and pidFile are for the dnsmasq driver")
                }
            case .dnsmasq:
                if endpoint.hostsFile == nil || endpoint.pidFile == nil {
                    report(server, field, "a dnsmasq endpoint needs hostsFile (its --dhcp-hostsfile) and pidFile")
                }
                if endpoint.controlSocket != nil || endpoint.url != nil {
                    report(server, field, "controlSocket and url are for the kea driver")
                }
            }
        }
    }

    // MARK: - Virtual machines

    private mutating func facts(for placement: VirtualMachine.Placement, of vm: VirtualMachine) -> PlacementFacts {
        if let cached = candidateCache[placement] { return cached }
        let hosts = index.candidateHosts(for: vm)
        var lacking: [String: [String]] = [:]
        let allBridges = Set(hosts.flatMap(\.bridges))
        for host in hosts {
            let offered = Set(host.bridges)
            for bridge in allBridges where !offered.contains(bridge) { lacking[bridge, default: []].append(host.name) }
        }
        let facts = PlacementFacts(
            hosts: hosts,
            largestMemory: hosts.map(\.capacity.memory).max() ?? ByteSize(bytes: 0),
            mostVCPUs: hosts.map(\.capacity.vcpus).max() ?? 0,
            hostsLacking: lacking,
            bridgesOfAll: allBridges)
        candidateCache[placement] = facts
        return facts
    }

    private mutating func checkVirtualMachines() {
        var macOwner: [MACAddress: String] = [:]
        var pinnedLoad: [String: (memory: ByteSize, vcpus: Int, guests: Int, first: VirtualMachine)] = [:]

        for vm in site.virtualMachines {
            reference(vm, "spec.project", .storageProject, vm.project, exists: index.projects[vm.project] != nil,
                      known: index.projects.keys)
            if let disk = vm.disk { checkDisk(disk, of: vm) }

            var interfaceNames: Set<String> = []
            for (i, interface) in vm.interfaces.enumerated() {
                let field = "spec.interfaces[\(i)]"
                if !interfaceNames.insert(interface.name).inserted {
                    report(vm, "\(field).name", "interface name \"\(interface.name)\" is used twice in this VM; name them apart with `name:`")
                }
                reference(vm, "\(field).network", .network, interface.network,
                          exists: index.networks[interface.network] != nil, known: index.networks.keys)
                // Fixed and derived MACs share one space: a derived one could collide with a fixed one.
                let mac = vm.mac(of: interface)
                if mac.isMulticast {
                    report(vm, "\(field).mac", "\(mac) is a multicast address; a guest needs a unicast MAC (even first byte)")
                }
                if let owner = macOwner[mac] {
                    report(vm, interface.mac == nil ? field : "\(field).mac",
                           "MAC \(mac)\(interface.mac == nil ? " (derived)" : "") is already used by \(owner)")
                } else {
                    macOwner[mac] = "\(vm.id) interface \(interface.name)"
                }
            }

            let placementField: String
            switch vm.placement {
            case .host(let name):
                placementField = "spec.placement.host"
                reference(vm, placementField, .host, name, exists: index.hosts[name] != nil, known: index.hosts.keys)
                if vm.power == .running, index.hosts[name] != nil {
                    var load = pinnedLoad[name] ?? (ByteSize(bytes: 0), 0, 0, vm)
                    load.memory = load.memory + vm.memory
                    load.vcpus += vm.vcpus
                    load.guests += 1
                    pinnedLoad[name] = load
                }
            case .cluster(let name, let selector):
                placementField = "spec.placement.cluster"
                reference(vm, placementField, .cluster, name, exists: index.clusters[name] != nil, known: index.clusters.keys)
                if let cluster = index.clusters[name], !selector.isEmpty, facts(for: vm.placement, of: vm).hosts.isEmpty,
                    !index.members(of: cluster).isEmpty {
                    report(vm, "spec.placement.hostSelector", "no host of cluster \"\(name)\" has the labels \(describe(selector))")
                }
            }
            checkFit(vm, placementField: placementField)
            if vm.ha == .restart {
                switch vm.placement {
                case .host:
                    report(vm, "spec.ha", "ha: restart needs a placement on a cluster (the guest is restarted on another of its hosts), not one host")
                case .cluster(let name, _):
                    if let cluster = index.clusters[name], !cluster.highAvailability.enabled {
                        report(vm, "spec.ha", "cluster \"\(name)\" does not enable HA (spec.ha.enabled: true)")
                    }
                }
            }
        }

        for (hostName, load) in pinnedLoad.sorted(by: { $0.key < $1.key }) {
            guard let host = index.hosts[hostName] else { continue }
            var over: [String] = []
            if load.memory > host.capacity.memory { over.append("memory \(load.memory) > \(host.capacity.memory)") }
            if load.vcpus > host.capacity.vcpus { over.append("vCPUs \(load.vcpus) > \(host.capacity.vcpus)") }
            if let maxGuests = host.capacity.maxGuests, load.guests > maxGuests { over.append("guests \(load.guests) > \(maxGuests)") }
            if !over.isEmpty {
                report(host, "spec.capacity",
                       "running guests pinned to this host exceed its capacity: \(over.joined(separator: ", "))")
            }
        }
    }

    private mutating func checkDisk(_ disk: VirtualMachine.Disk, of vm: VirtualMachine) {
        let source = disk.source
        let field = "spec.disk.from"
        guard index.projects[source.project] != nil || site.incomplete.contains(Site.incompleteKey(.storageProject, source.project))
        else {
            reference(vm, field, .storageProject, source.project, exists: false, known: index.projects.keys)
            return
        }
        let imageKey = "\(source.project)/\(source.image)"
        guard let image = index.images[imageKey] else {
            reference(vm, field, .image, imageKey, exists: false, known: index.images.keys)
            return
        }
        if !image.snapshots.contains(source.snapshot) {
            report(vm, field, "image \(imageKey) has no snapshot \"\(source.snapshot)\" (declared: \(image.snapshots.joined(separator: ", ")))",
                   suggestion: Suggestion.nearest(to: source.snapshot, in: image.snapshots).map { "\(imageKey)@\($0)" })
        }
        if let size = disk.size, let imageSize = image.size, size < imageSize {
            report(vm, "spec.disk.size", "\(size) is smaller than its image \(imageKey) (\(imageSize)); a clone can only grow")
        }
    }

    /// Bridges and size against every host the VM may be placed on.
    private mutating func checkFit(_ vm: VirtualMachine, placementField: String) {
        let facts = facts(for: vm.placement, of: vm)
        guard !facts.hosts.isEmpty else { return }
        for (i, interface) in vm.interfaces.enumerated() {
            guard let network = index.networks[interface.network] else { continue }
            if !facts.bridgesOfAll.contains(network.bridge) {
                report(vm, "spec.interfaces[\(i)].network",
                       "network \"\(network.name)\" needs bridge \"\(network.bridge)\", which no host this VM may run on offers (\(facts.hosts.map(\.name).prefix(5).joined(separator: ", ")))")
            } else if let lacking = facts.hostsLacking[network.bridge] {
                report(vm, "spec.interfaces[\(i)].network",
                       "network \"\(network.name)\" needs bridge \"\(network.bridge)\", missing on host(s) this VM may run on: \(lacking.prefix(5).joined(separator: ", "))")
            }
        }
        if vm.memory > facts.largestMemory {
            report(vm, "spec.memory", "\(vm.memory) is more than any host it may run on has (largest: \(facts.largestMemory))")
        }
        if vm.vcpus > facts.mostVCPUs {
            report(vm, "spec.vcpus", "\(vm.vcpus) vCPUs are more than any host it may run on has (most: \(facts.mostVCPUs))")
        }
        if vm.maxVCPUs < vm.vcpus {
            report(vm, "spec.maxVcpus", "\(vm.maxVCPUs) is less than vcpus (\(vm.vcpus)); the maximum must be at least what the guest has")
        } else if vm.maxVCPUs > facts.mostVCPUs {
            report(vm, "spec.maxVcpus", "\(vm.maxVCPUs) vCPUs are more than any host it may run on has (most: \(facts.mostVCPUs))")
        }
    }

    // MARK: - Bindings

    private mutating func checkBindings() {
        // Binding names, not bindings, and VM positions, not VMs: for a large site these maps
        // would otherwise hold a second copy of every binding and VM.
        var boundInterface: [String: String] = [:]
        var addressOwner: [String: String] = [:]
        var hostnameOwner: [String: String] = [:]
        let virtualMachines = site.virtualMachineIndices
        for binding in site.bindings {
            guard let position = virtualMachines[binding.vm] else {
                reference(binding, "spec.vm", .virtualMachine, binding.vm.description, exists: false,
                          known: virtualMachines.keys.map(\.description))
                continue
            }
            let vm = site.virtualMachines[position]
            guard let interface = vm.interfaces.first(where: { $0.name == binding.interface }) else {
                report(binding, "spec.interface", "VM \(vm.id) has no interface \"\(binding.interface)\" (it has: \(vm.interfaces.map(\.name).joined(separator: ", ")))",
                       suggestion: Suggestion.nearest(to: binding.interface, in: vm.interfaces.map(\.name)))
                continue
            }
            let interfaceKey = "\(vm.id) \(interface.name)"
            if let other = boundInterface[interfaceKey] {
                report(binding, "spec.interface", "interface \(interface.name) of \(vm.id) is already bound by NetworkBinding/\(other)")
            } else {
                boundInterface[interfaceKey] = binding.name
            }
            guard let network = index.networks[interface.network] else { continue }
            if !network.subnet.contains(binding.address) {
                report(binding, "spec.address", "\(binding.address) is not inside network \"\(network.name)\" (\(network.subnet))")
            } else if !network.subnet.isUsableHostAddress(binding.address) {
                report(binding, "spec.address", "\(binding.address) is the network or broadcast address of \(network.subnet)")
            } else if binding.address == network.gateway {
                report(binding, "spec.address", "\(binding.address) is the gateway of network \"\(network.name)\"")
            }
            if network.dhcpServer == nil {
                report(binding, "spec.interface", "network \"\(network.name)\" has no spec.dhcpServer to serve this binding")
            }
            let addressKey = "\(network.name) \(binding.address)"
            if let other = addressOwner[addressKey] {
                report(binding, "spec.address", "\(binding.address) is already bound on network \"\(network.name)\" by NetworkBinding/\(other)")
            } else {
                addressOwner[addressKey] = binding.name
            }
            let hostnameKey = "\(network.name) \(binding.hostname.lowercased())"
            if let other = hostnameOwner[hostnameKey] {
                report(binding, "spec.hostname", "host name \"\(binding.hostname)\" is already bound on network \"\(network.name)\" by NetworkBinding/\(other)")
            } else {
                hostnameOwner[hostnameKey] = binding.name
            }
        }
    }

    private func describe(_ labels: [String: String]) -> String {
        labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
    }

    private func describe(_ names: Set<String>) -> String {
        "[" + names.sorted().joined(separator: ", ") + "]"
    }
}
