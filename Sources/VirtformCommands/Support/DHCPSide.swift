import VirtformDHCP
import VirtformModel
import VirtformPlanning

/// DHCP in a plan: every `DHCPServer` a network names is observed, its reservations compared
/// with the site's `NetworkBinding`s, and the differences become `NetworkBinding/<name>`
/// changes grouped under `DHCPServer/<name>`. Apply writes each server's changes in one go,
/// before any guest starts (the MACs are known from the manifests, so a guest's first DHCP
/// request already finds its reservation).
enum DHCPSide {
    static func plan(site: Site, options: Planner.Options) async -> SidePlan {
        let index = SiteIndex(site)
        let virtualMachines = site.virtualMachinesByID
        var result = SidePlan()
        var subnets: [String: [IPv4Subnet]] = [:]
        for network in site.networks {
            if let server = network.dhcpServer { subnets[server, default: []].append(network.subnet) }
        }
        var desired: [String: [Reservation]] = [:]
        for binding in site.bindings {
            guard let vm = virtualMachines[binding.vm],
                let interface = vm.interfaces.first(where: { $0.name == binding.interface }),
                let network = index.networks[interface.network], let server = network.dhcpServer
            else { continue }
            do {
                desired[server, default: []].append(try Reservation(binding: binding, vm: vm, network: network))
            } catch {
                result.problems.append(Plan.Problem(resource: "NetworkBinding/\(binding.meta.name)", message: "\(error)"))
            }
        }

        struct Reading: Sendable {
            var server: String
            var driver: (any DHCPDriver)?
            var observation: DHCPObservation?
            var error: String?
        }
        let servers = site.dhcpServers.filter { subnets[$0.name] != nil }
        let served = subnets
        let readings = await withTaskGroup(of: Reading.self) { group in
            for server in servers {
                group.addTask {
                    do {
                        let driver = try DHCPDrivers.driver(for: server)
                        let observation = try await driver.observe(subnets: served[server.name] ?? [])
                        return Reading(server: server.name, driver: driver, observation: observation)
                    } catch {
                        return Reading(server: server.name, error: "\(error)")
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }.sorted { $0.server < $1.server }
        }

        struct Work: Sendable {
            var driver: any DHCPDriver
            var token: DHCPVersionToken
            var changes: [String: ReservationChange]
        }
        var work: [String: Work] = [:]
        for reading in readings {
            let system = "DHCPServer/\(reading.server)"
            guard let driver = reading.driver, let observation = reading.observation else {
                result.unreachable.append(Plan.UnreachableHost(host: system, reason: reading.error ?? "no answer"))
                continue
            }
            for endpoint in observation.endpoints {
                if case .unreachable(let reason) = endpoint.state {
                    result.unreachable.append(Plan.UnreachableHost(host: "\(system) (\(endpoint.name))", reason: reason))
                }
            }
            let comparison = observation.compare(desired: desired[reading.server] ?? [])
            for item in comparison.drift {
                switch item {
                case .conflict(let wanted, _, _, _), .subnetNotServed(let wanted, _):
                    result.problems.append(Plan.Problem(resource: "NetworkBinding/\(wanted.owner?.binding ?? "?")", message: item.description))
                default: continue
                }
            }
            var byResource: [String: ReservationChange] = [:]
            for change in comparison.changes {
                guard let owner = change.after?.owner ?? change.before?.owner else { continue }
                let resource = "NetworkBinding/\(owner.binding)"
                byResource[resource] = change
                result.fingerprints[resource] = change.before.map(fingerprint) ?? Plan.absent
                result.changes.append(planChange(change, resource: resource, system: system, drift: comparison.drift, options: options))
            }
            work[reading.server] = Work(driver: driver, token: observation.token, changes: byResource)
        }

        let pending = work
        result.actions = { runnable in
            var actions: [SideAction] = []
            for (server, entry) in pending.sorted(by: { $0.key < $1.key }) {
                let system = "DHCPServer/\(server)"
                let changes = runnable.filter { $0.host == system }.compactMap { entry.changes[$0.resource] }
                guard !changes.isEmpty else { continue }
                let vms = changes.compactMap { ($0.after ?? $0.before)?.owner?.vm }
                let driver = entry.driver
                let token = entry.token
                actions.append(SideAction(
                    id: "reservations \(system)", group: system,
                    label: "write \(changes.count) reservation change\(changes.count == 1 ? "" : "s") to \(system)",
                    beforeStart: vms,
                    run: { _ = try await driver.apply(changes, basedOn: token) }))
            }
            return actions
        }
        return result
    }

    private static func fingerprint(_ reservation: Reservation) -> String {
        "\(reservation.subnet)|\(reservation.mac)|\(reservation.address)|\(reservation.hostname ?? "")"
    }

    private static func planChange(_ change: ReservationChange, resource: String, system: String, drift: [DHCPDriftItem],
                                   options: Planner.Options) -> Change {
        func describe(_ r: Reservation) -> String {
            "\(r.mac) → \(r.address)\(r.hostname.map { " (\($0))" } ?? "") in \(r.subnet)"
        }
        switch change {
        case .add(let wanted):
            let missing = drift.lazy.compactMap { item -> [String]? in
                if case .missing(let r, let endpoints) = item, r.owner == wanted.owner { return endpoints }
                return nil
            }.first
            return Change(action: .create, resource: resource, host: system,
                          reason: "no reservation for \(wanted.owner?.vm.description ?? "?") \(wanted.owner?.interface ?? "") on \(missing?.joined(separator: ", ") ?? "the server")",
                          summary: describe(wanted))
        case .change(let from, let to):
            var fields: [FieldChange] = []
            if from.subnet != to.subnet { fields.append(FieldChange(field: "subnet", before: "\(from.subnet)", after: "\(to.subnet)", live: true)) }
            if from.mac != to.mac { fields.append(FieldChange(field: "mac", before: "\(from.mac)", after: "\(to.mac)", live: true)) }
            if from.address != to.address { fields.append(FieldChange(field: "address", before: "\(from.address)", after: "\(to.address)", live: true)) }
            if from.hostname != to.hostname {
                fields.append(FieldChange(field: "hostname", before: from.hostname ?? "none", after: to.hostname ?? "none", live: true))
            }
            return Change(action: .update, resource: resource, host: system, fields: fields,
                          reason: fields.isEmpty ? "the HA peers disagree" : "differs from the binding")
        case .remove(let held):
            return Change(action: .delete, resource: resource, host: system,
                          reason: "virtform made it and its binding is no longer in the manifests",
                          blocked: options.allowDestroy ? nil : "removing a reservation needs --allow-destroy",
                          summary: describe(held))
        }
    }
}
