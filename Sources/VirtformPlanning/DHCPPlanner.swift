import VirtformModel

/// DHCP in a plan: every declared `DHCPServer`'s reservations compared with the site's
/// `NetworkBinding`s; each difference is a `NetworkBinding/<name>` change on
/// `DHCPServer/<name>` carrying the reservation edit. Apply writes one server's edits in one go.
struct DHCPPlanner {
    let site: Site
    let readings: [String: DHCPReading]
    /// Why nothing a VM uses may be deleted now; nil when it may.
    let deletionGuard: (VMID) -> String?
    let options: Planner.Options

    private(set) var changes: [Change] = []
    private(set) var problems: [Plan.Problem] = []
    private(set) var unreachable: [Plan.UnreachableSystem] = []
    private(set) var fingerprints: [String: String] = [:]
    private(set) var foreign: [Plan.ForeignObject] = []

    /// The server each binding's reservation lives on.
    static func desiredReservations(_ site: Site, index: SiteIndex) -> (byServer: [String: [Reservation]], problems: [Plan.Problem]) {
        let virtualMachines = site.virtualMachineIndices
        var desired: [String: [Reservation]] = [:]
        var problems: [Plan.Problem] = []
        for binding in site.bindings {
            guard let position = virtualMachines[binding.vm], case let vm = site.virtualMachines[position],
                let interface = vm.interfaces.first(where: { $0.name == binding.interface }),
                let network = index.networks[interface.network], let server = network.dhcpServer
            else { continue }
            if let reservation = Reservation(binding: binding, vm: vm, network: network, site: site.name) {
                desired[server, default: []].append(reservation)
            } else {
                problems.append(Plan.Problem(resource: "NetworkBinding/\(binding.meta.name)",
                                             message: "it names interface \(binding.interface), which \(vm.id) does not have"))
            }
        }
        return (desired, problems)
    }

    mutating func plan(index: SiteIndex) {
        let (desired, bindingProblems) = Self.desiredReservations(site, index: index)
        problems += bindingProblems
        // Bindings `virtform import` wrote: they take the unowned reservation of their MAC.
        let importing = Set(site.bindings.lazy.filter { $0.meta.importedFrom != nil }.map(\.meta.name))
        for server in site.dhcpServers.sorted(by: { $0.meta.name < $1.meta.name }) {
            let system = SystemAddress.dhcpServer(server.meta.name)
            guard case .read(let observation) = readings[server.meta.name] else {
                if case .unreachable(let reason) = readings[server.meta.name] {
                    unreachable.append(Plan.UnreachableSystem(system: system, reason: reason))
                } else {
                    unreachable.append(Plan.UnreachableSystem(system: system, reason: "not observed"))
                }
                continue
            }
            for endpoint in observation.endpoints {
                if case .unreachable(let reason) = endpoint.state {
                    unreachable.append(Plan.UnreachableSystem(system: system, endpoint: endpoint.name, reason: reason))
                } else if endpoint.unfinished {
                    let lasting = server.driver == .kea ? "saved to its configuration file" : "re-read by dnsmasq"
                    changes.append(Change(action: .update, resource: "DHCPServer/\(server.meta.name)/\(endpoint.name)", system: system,
                                          operation: .finishDHCPWrite(endpoint: endpoint.name),
                                          fields: [FieldChange(field: "last write", before: "not \(lasting)", after: lasting, effect: .applied)],
                                          reason: "an apply stopped between changing \(endpoint.name) and making the change last"))
                }
            }
            var othersSites: Set<Reservation> = []
            let view = ownView(of: observation, system: system, stripped: &othersSites)
            let comparison = view.compare(desired: desired[server.meta.name] ?? [], importing: importing, othersSites: othersSites)
            for item in comparison.drift {
                switch item {
                case .conflict(let wanted, _, _, _), .subnetNotServed(let wanted, _):
                    problems.append(Plan.Problem(resource: "NetworkBinding/\(wanted.owner?.binding ?? "?")", message: item.description))
                default: continue
                }
            }
            for change in comparison.changes {
                guard let owner = change.after?.owner ?? change.before?.owner else { continue }
                let resource = "NetworkBinding/\(owner.binding)"
                fingerprints[resource] = change.before.map(Self.fingerprint) ?? Plan.absent
                changes.append(planChange(change, resource: resource, system: system, drift: comparison.drift))
            }
        }
    }

    /// The observation as this site sees it: reservations whose mark names another site, or
    /// names none (an earlier virtform's) for a binding this site does not declare, count as
    /// somebody else's (never changed, and reported when they collide); they are listed as foreign.
    private mutating func ownView(of observation: DHCPObservation, system: SystemAddress, stripped: inout Set<Reservation>) -> DHCPObservation {
        let declared = Set(site.bindings.map(\.meta.name))
        var view = observation
        var listed = Set<String>()
        for (e, endpoint) in observation.endpoints.enumerated() {
            guard case .observed(let reservations, let unserved) = endpoint.state else { continue }
            let mine = reservations.map { reservation -> Reservation in
                guard let owner = reservation.owner, owner.site != site.name, !(owner.site == nil && declared.contains(owner.binding)) else {
                    return reservation
                }
                if listed.insert(owner.key).inserted {
                    foreign.append(Plan.ForeignObject(resource: "NetworkBinding/\(owner.binding)", system: system, site: owner.site))
                }
                var unmarked = reservation
                unmarked.owner = nil
                stripped.insert(unmarked)
                return unmarked
            }
            view.endpoints[e].state = .observed(reservations: mine, unservedSubnets: unserved)
        }
        return view
    }

    static func fingerprint(_ reservation: Reservation) -> String {
        "\(reservation.subnet)|\(reservation.mac)|\(reservation.address)|\(reservation.hostname ?? "")"
    }

    private func planChange(_ change: ReservationChange, resource: String, system: SystemAddress, drift: [DHCPDriftItem]) -> Change {
        func describe(_ r: Reservation) -> String {
            "\(r.mac) → \(r.address)\(r.hostname.map { " (\($0))" } ?? "") in \(r.subnet)"
        }
        let operation = Operation.reservation(change: change)
        switch change {
        case .add(let wanted):
            let missing = drift.lazy.compactMap { item -> [String]? in
                if case .missing(let r, let endpoints) = item, r.owner == wanted.owner { return endpoints }
                return nil
            }.first
            return Change(action: .create, resource: resource, system: system, operation: operation,
                          after: ResourceState(reservation: wanted),
                          reason: "no reservation for \(wanted.owner?.vm.description ?? "?") \(wanted.owner?.interface ?? "") on \(missing?.joined(separator: ", ") ?? "the server")",
                          summary: describe(wanted))
        case .change(let from, let to):
            var fields: [FieldChange] = []
            if from.subnet != to.subnet { fields.append(FieldChange(field: "subnet", before: "\(from.subnet)", after: "\(to.subnet)", effect: .applied)) }
            if from.mac != to.mac { fields.append(FieldChange(field: "mac", before: "\(from.mac)", after: "\(to.mac)", effect: .applied)) }
            if from.address != to.address { fields.append(FieldChange(field: "address", before: "\(from.address)", after: "\(to.address)", effect: .applied)) }
            if from.hostname != to.hostname {
                fields.append(FieldChange(field: "hostname", before: from.hostname ?? "none", after: to.hostname ?? "none", effect: .applied))
            }
            if from.owner == nil {
                // `virtform import`: a reservation virtform did not make, marked as this binding's.
                fields.append(FieldChange(field: "mark", before: "none", after: "site \(to.owner?.site ?? "")'s", effect: .applied))
                return Change(action: .update, resource: resource, system: system, operation: operation,
                              before: ResourceState(reservation: from), after: ResourceState(reservation: to), fields: fields,
                              reason: "import: the reservation is marked as the binding's")
            }
            return Change(action: .update, resource: resource, system: system, operation: operation,
                          before: ResourceState(reservation: from), after: ResourceState(reservation: to), fields: fields,
                          reason: fields.isEmpty ? "the HA peers disagree" : "differs from the binding")
        case .remove(let held):
            let blocked = options.allowDestroy ? held.owner.flatMap { deletionGuard($0.vm) } : "removing a reservation needs --allow-destroy"
            return Change(action: .delete, resource: resource, system: system, operation: operation,
                          before: ResourceState(reservation: held),
                          reason: "virtform made it and its binding is no longer in the manifests", blocked: blocked,
                          summary: describe(held))
        }
    }
}
