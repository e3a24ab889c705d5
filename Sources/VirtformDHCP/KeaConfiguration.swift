import VirtformModel

/// Reading and editing reservations inside a kea-dhcp4 configuration (the `arguments` of
/// `config-get`). Pure: no I/O, so it is tested without a server.
///
/// Subnets are found by their `subnet` prefix, at the top level (`Dhcp4.subnet4`) and inside
/// shared networks (`Dhcp4.shared-networks[].subnet4`). A reservation is virtform's when its
/// `user-context` holds `{"virtform": {"binding": …, "vm": "project/name", "interface": …}}`.
enum KeaConfiguration {
    static let markKey = "virtform"

    /// The reservations of `subnets` (owned or not) and the subnets the configuration lacks;
    /// with `ownedElsewhere`, also virtform's own reservations in every other subnet (what a site
    /// left in a subnet it no longer declares). Reservations identified by something other than a
    /// MAC (`client-id`, `duid`…) or without an address are left out: virtform neither makes nor
    /// matches those.
    static func reservations(in config: JSONValue, subnets: [IPv4Subnet], ownedElsewhere: Bool = false)
        -> (reservations: [Reservation], unserved: [IPv4Subnet])
    {
        let wanted = Set(subnets)
        var found = Set<IPv4Subnet>()
        var result: [Reservation] = []
        for subnet in allSubnets(config) {
            guard let text = subnet["subnet"]?.stringValue, let prefix = IPv4Subnet(parsing: text) else { continue }
            let isWanted = wanted.contains(prefix)
            guard isWanted || ownedElsewhere else { continue }
            if isWanted { found.insert(prefix) }
            for entry in subnet["reservations"]?.arrayValue ?? [] {
                guard let r = reservation(entry, subnet: prefix), isWanted || r.owner != nil else { continue }
                result.append(r)
            }
        }
        return (result, subnets.filter { !found.contains($0) })
    }

    private static func allSubnets(_ config: JSONValue) -> [JSONValue] {
        guard let dhcp4 = config["Dhcp4"] else { return [] }
        var subnets = dhcp4["subnet4"]?.arrayValue ?? []
        for shared in dhcp4["shared-networks"]?.arrayValue ?? [] {
            subnets += shared["subnet4"]?.arrayValue ?? []
        }
        return subnets
    }

    static func reservation(_ entry: JSONValue, subnet: IPv4Subnet) -> Reservation? {
        guard let macText = entry["hw-address"]?.stringValue, let mac = MACAddress(parsing: macText.lowercased()),
            let addressText = entry["ip-address"]?.stringValue, let address = IPv4Address(parsing: addressText)
        else { return nil }
        let hostname = entry["hostname"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
        return Reservation(subnet: subnet, mac: mac, address: address, hostname: hostname, owner: mark(entry))
    }

    static func mark(_ entry: JSONValue) -> OwnerMark? {
        guard let mark = entry["user-context"]?[markKey], let binding = mark["binding"]?.stringValue,
            let vmText = mark["vm"]?.stringValue, let vm = VMID(parsing: vmText), let interface = mark["interface"]?.stringValue
        else { return nil }
        return OwnerMark(binding: binding, vm: vm, interface: interface, site: mark["site"]?.stringValue,
                         applied: mark["applied"]?.stringValue, run: mark["run"]?.stringValue)
    }

    /// The Kea form of an owned reservation.
    static func entry(_ r: Reservation) -> JSONValue {
        var members: [String: JSONValue] = [
            "hw-address": .string(r.mac.description),
            "ip-address": .string(r.address.description),
        ]
        if let hostname = r.hostname { members["hostname"] = .string(hostname) }
        if let owner = r.owner {
            var mark: [String: JSONValue] = [
                "binding": .string(owner.binding), "vm": .string(owner.vm.description), "interface": .string(owner.interface),
            ]
            if let site = owner.site { mark["site"] = .string(site) }
            if let run = owner.run { mark["run"] = .string(run) }
            // A reservation kept as it was keeps the digest it was written with: a hand edit stays visible.
            mark["applied"] = .string(owner.applied ?? r.digest)
            members["user-context"] = .object([markKey: .object(mark)])
        }
        return .object(members)
    }

    /// `config` with `changes` made: owned reservations of the bindings that changes name are
    /// taken out, then each change's new reservation is added to its subnet. Unowned entries
    /// stay exactly as they are; a new reservation that would share an address, MAC or host
    /// name with one of them is refused (`.conflict`).
    static func applying(_ changes: [ReservationChange], to config: JSONValue, endpoint: String) throws -> JSONValue {
        guard case .object(var root) = config, case .object(var dhcp4)? = root["Dhcp4"] else {
            throw DHCPError(.serverError, "failed to edit the configuration of \(endpoint): it has no Dhcp4 object", endpoint: endpoint)
        }
        var removals: [IPv4Subnet: Set<String>] = [:]
        var additions: [IPv4Subnet: [Reservation]] = [:]
        // Reservations virtform did not make that an import takes over: taken out, the marked one added.
        var adopted: [IPv4Subnet: Set<Reservation>] = [:]
        for change in changes {
            if case .change(let from, let to) = change, from.owner == nil, let owner = to.owner {
                adopted[from.subnet, default: []].insert(from)
                removals[to.subnet, default: []].insert(owner.key)
                additions[to.subnet, default: []].append(to)
                continue
            }
            for r in [change.before, change.after].compactMap({ $0 }) {
                guard let owner = r.owner else {
                    throw DHCPError(.invalidRequest, "failed to apply `\(change)` on \(endpoint): virtform only changes reservations with its owner mark", endpoint: endpoint)
                }
                removals[r.subnet, default: []].insert(owner.key)
            }
            if let after = change.after { additions[after.subnet, default: []].append(after) }
        }
        var pending = Set(removals.keys).union(additions.keys).union(adopted.keys)
        let sites = Set(changes.compactMap { ($0.after ?? $0.before)?.owner.map(\.site) })

        func edit(_ subnets: inout [JSONValue]) throws {
            for i in subnets.indices {
                guard case .object(var subnet) = subnets[i], let text = subnet["subnet"]?.stringValue,
                    let prefix = IPv4Subnet(parsing: text), pending.contains(prefix)
                else { continue }
                pending.remove(prefix)
                let gone = removals[prefix] ?? []
                var kept: [JSONValue] = []
                var heldAddresses: [IPv4Address: Reservation] = [:]
                var heldMACs: [MACAddress: Reservation] = [:]
                var heldNames: [String: Reservation] = [:]
                // An owned entry that already says what its binding wants stays as it is (with
                // the defaults Kea filled in), so re-applying changes nothing.
                var satisfied = Set<Reservation>()
                let wanted = Set(additions[prefix] ?? [])
                for entry in subnet["reservations"]?.arrayValue ?? [] {
                    let owner = mark(entry)
                    if owner == nil, let r = reservation(entry, subnet: prefix), adopted[prefix]?.contains(where: { $0.mac == r.mac && $0.address == r.address }) == true {
                        continue
                    }
                    if let owner, gone.contains(owner.key) {
                        guard let r = reservation(entry, subnet: prefix), wanted.contains(r), !satisfied.contains(r) else { continue }
                        satisfied.insert(r)
                        kept.append(entry)
                        continue
                    }
                    kept.append(entry)
                    // Another site's reservations are as foreign as anybody's.
                    if owner == nil || !sites.contains(owner?.site), let r = reservation(entry, subnet: prefix) {
                        heldAddresses[r.address] = r
                        heldMACs[r.mac] = r
                        if let name = r.hostname { heldNames[name.lowercased()] = r }
                    }
                }
                for r in additions[prefix] ?? [] where !satisfied.contains(r) {
                    let held = heldAddresses[r.address].map { ($0, "address") } ?? heldMACs[r.mac].map { ($0, "MAC") }
                        ?? r.hostname.flatMap { heldNames[$0.lowercased()] }.map { ($0, "host name") }
                    if let (other, field) = held {
                        throw DHCPError(.conflict, "failed to reserve \(r) on \(endpoint): its \(field) is already reserved by \(other), which virtform does not own", endpoint: endpoint)
                    }
                    kept.append(entry(r))
                }
                subnet["reservations"] = .array(kept)
                subnets[i] = .object(subnet)
            }
        }

        if case .array(var top)? = dhcp4["subnet4"] {
            try edit(&top)
            dhcp4["subnet4"] = .array(top)
        }
        if !pending.isEmpty, case .array(var shared)? = dhcp4["shared-networks"] {
            for j in shared.indices {
                guard case .object(var network) = shared[j], case .array(var inner)? = network["subnet4"] else { continue }
                try edit(&inner)
                network["subnet4"] = .array(inner)
                shared[j] = .object(network)
            }
            dhcp4["shared-networks"] = .array(shared)
        }
        if let missing = pending.sorted(by: { $0.network < $1.network }).first {
            throw DHCPError(.conflict, "failed to edit reservations on \(endpoint): it does not serve subnet \(missing)", endpoint: endpoint)
        }
        root["Dhcp4"] = .object(dhcp4)
        return .object(root)
    }
}

/// Whether `changes`, planned from `observed`, still mean the same thing against `current`:
/// every reservation they touch (their bindings' owned entries) or collide with (entries
/// sharing a new reservation's address, MAC or host name) is as it was observed. Edits
/// elsewhere on the server do not matter. Returns what moved, or nil when clean.
func conflictingEdits(_ changes: [ReservationChange], observed: [Reservation], current: [Reservation]) -> [String]? {
    var bindings = Set<String>()
    var addresses = Set<String>()
    var macs = Set<String>()
    var names = Set<String>()
    for change in changes {
        for r in [change.before, change.after].compactMap({ $0 }) {
            if let owner = r.owner { bindings.insert(owner.binding) }
        }
        if let after = change.after {
            addresses.insert("\(after.subnet) \(after.address)")
            macs.insert("\(after.subnet) \(after.mac)")
            if let name = after.hostname { names.insert("\(after.subnet) \(name.lowercased())") }
        }
    }
    func relevant(_ r: Reservation) -> Bool {
        if let owner = r.owner, bindings.contains(owner.binding) { return true }
        return addresses.contains("\(r.subnet) \(r.address)") || macs.contains("\(r.subnet) \(r.mac)")
            || r.hostname.map { names.contains("\(r.subnet) \($0.lowercased())") } == true
    }
    let before = Set(observed.filter(relevant))
    let now = Set(current.filter(relevant))
    guard before != now else { return nil }
    let appeared = now.subtracting(before).map { "now \($0)" }
    let vanished = before.subtracting(now).map { "was \($0)" }
    return (vanished + appeared).sorted()
}
