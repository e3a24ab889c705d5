/// What a DHCP server holds, as observed, and how it compares with the reservations the
/// bindings ask for: pure data and logic, shared by the DHCP drivers and the planner.

/// Who a reservation belongs to: the `NetworkBinding` that asked for it, and the VM interface it
/// serves. Only reservations carrying this mark are ever changed or removed by virtform.
///
/// Kea keeps it as the reservation's `user-context`:
/// `{"virtform": {"binding": "vm-1-fe0", "vm": "appl-1/vm-1", "interface": "fe0"}}`.
/// dnsmasq keeps it as a comment line right above the reservation's line in the hosts file:
/// `# virtform binding=vm-1-fe0 vm=appl-1/vm-1 interface=fe0`.
public struct OwnerMark: Hashable, Sendable, Comparable, Codable, CustomStringConvertible {
    /// The `NetworkBinding`'s name.
    public var binding: String
    public var vm: VMID
    /// The VM interface's name.
    public var interface: String
    /// The site that owns the reservation; nil in marks written before sites existed.
    public var site: String?
    /// As read from a server: the digest of the reservation virtform wrote with this mark
    /// (`Reservation.digest`); a reservation that no longer hashes to it was edited outside
    /// virtform. Not part of the mark's identity: two marks of one binding are equal whatever
    /// it says. nil in marks written before it existed, and in marks not yet written.
    public var applied: String?
    /// The run that last wrote the reservation (`virtform history RUN`); not part of the mark's
    /// identity either.
    public var run: String?

    public init(binding: String, vm: VMID, interface: String, site: String? = nil, applied: String? = nil, run: String? = nil) {
        self.binding = binding
        self.vm = vm
        self.interface = interface
        self.site = site
        self.applied = applied
        self.run = run
    }

    public static func == (a: OwnerMark, b: OwnerMark) -> Bool {
        (a.binding, a.vm, a.interface, a.site) == (b.binding, b.vm, b.interface, b.site)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(binding)
        hasher.combine(vm)
        hasher.combine(interface)
        hasher.combine(site)
    }

    /// What identifies the owner's reservation on a server: its site and its binding.
    public var key: String { "\(site ?? "")/\(binding)" }

    public static func < (a: OwnerMark, b: OwnerMark) -> Bool {
        (a.site ?? "", a.binding, a.vm, a.interface) < (b.site ?? "", b.binding, b.vm, b.interface)
    }
    public var description: String { "binding \(binding) (\(vm) \(interface)\(site.map { ", site \($0)" } ?? ""))" }
}

/// One host reservation: this MAC gets this address (and host name) in this subnet.
public struct Reservation: Hashable, Sendable, Codable, CustomStringConvertible {
    public var subnet: IPv4Subnet
    public var mac: MACAddress
    public var address: IPv4Address
    /// Sent to the client as option 12.
    public var hostname: String?
    /// nil for a reservation somebody else made: virtform never changes or removes those.
    public var owner: OwnerMark?

    public init(subnet: IPv4Subnet, mac: MACAddress, address: IPv4Address, hostname: String?, owner: OwnerMark?) {
        self.subnet = subnet
        self.mac = mac
        self.address = address
        self.hostname = hostname
        self.owner = owner
    }

    /// The reservation a binding asks for: the VM interface's MAC (fixed or derived), the
    /// binding's address and host name, in the network's subnet; nil when the VM has no
    /// interface of the binding's name.
    public init?(binding: NetworkBinding, vm: VirtualMachine, network: Network, site: String? = nil) {
        guard let interface = vm.interfaces.first(where: { $0.name == binding.interface }) else { return nil }
        self.init(subnet: network.subnet, mac: vm.mac(of: interface), address: binding.address, hostname: binding.hostname,
                  owner: OwnerMark(binding: binding.meta.name, vm: vm.id, interface: interface.name, site: site))
    }

    public var description: String {
        "\(mac) → \(address)\(hostname.map { " (\($0))" } ?? "") in \(subnet)\(owner.map { ", \($0)" } ?? ", unowned")"
    }

    /// What a client would see, hashed: written into the mark as `applied` when virtform writes
    /// the reservation.
    public var digest: String { Self.digest(mac: mac, address: address, hostname: hostname) }

    public static func digest(mac: MACAddress, address: IPv4Address, hostname: String?) -> String {
        var hash = StableHash()
        hash.feed("\(mac)|\(address)|\(hostname ?? "")")
        return hash.hex
    }

    /// Whether the reservation is as virtform wrote it (nil: its mark does not say).
    public var untouched: Bool? { owner?.applied.map { $0 == digest } }

    /// Same reservation apart from the mark (what a DHCP client would see).
    public func sameEffect(as other: Reservation) -> Bool {
        subnet == other.subnet && mac == other.mac && address == other.address && hostname == other.hostname
    }
}

/// One edit of a server's reservations. `change` and `remove` only ever target owned
/// reservations (matched by their mark's binding name and subnet).
public enum ReservationChange: Hashable, Sendable, CustomStringConvertible {
    case add(Reservation)
    case change(from: Reservation, to: Reservation)
    case remove(Reservation)

    /// What the server holds for this binding before the change (nil for add).
    public var before: Reservation? {
        switch self {
        case .add: nil
        case .change(let from, _): from
        case .remove(let reservation): reservation
        }
    }

    /// What it holds after (nil for remove).
    public var after: Reservation? {
        switch self {
        case .add(let reservation): reservation
        case .change(_, let to): to
        case .remove: nil
        }
    }

    public var description: String {
        switch self {
        case .add(let r): "add \(r)"
        case .change(let from, let to): "change \(from) to \(to)"
        case .remove(let r): "remove \(r)"
        }
    }
}

/// A server's state as of one observation, handed back to `apply` so it can tell whether
/// somebody else changed the server in between. Opaque to callers.
public struct DHCPVersionToken: Hashable, Sendable, Codable {
    public struct Endpoint: Hashable, Sendable, Codable {
        /// Kea: FNV-1a of the canonical (sorted-key) JSON of `config-get`'s arguments.
        /// dnsmasq: FNV-1a of the hosts file's bytes.
        public var hash: String
        /// Every reservation of the observed subnets at that time, owned or not.
        public var reservations: [Reservation]

        public init(hash: String, reservations: [Reservation]) {
            self.hash = hash
            self.reservations = reservations
        }
    }

    /// By endpoint name; an endpoint that could not be read has no entry.
    public var endpoints: [String: Endpoint]

    public init(endpoints: [String: Endpoint]) {
        self.endpoints = endpoints
    }
}

/// What one endpoint of a server holds.
public enum EndpointState: Hashable, Sendable, Codable {
    /// Read: the reservations of each observed subnet the server serves (owned or not), and the
    /// observed subnets it does not serve at all.
    case observed(reservations: [Reservation], unservedSubnets: [IPv4Subnet])
    /// Could not tell (socket down, file unreadable). Never read this as "no reservations".
    case unreachable(reason: String)
}

public struct EndpointObservation: Hashable, Sendable, Codable {
    public var name: String
    public var state: EndpointState
    /// An apply stopped between changing the server and making the change last: Kea was given
    /// the new configuration but did not save it (`config-write`), or dnsmasq's hosts file was
    /// written but dnsmasq not told to re-read it. What was read is then not what would
    /// survive a restart (Kea) or what is served (dnsmasq).
    public var unfinished: Bool

    public init(name: String, state: EndpointState, unfinished: Bool = false) {
        self.name = name
        self.state = state
        self.unfinished = unfinished
    }

    public var reservations: [Reservation]? {
        if case .observed(let reservations, _) = state { return reservations }
        return nil
    }
}

/// A DHCP server's reservations as observed, endpoint by endpoint (two for an HA pair).
public struct DHCPObservation: Hashable, Sendable, Codable {
    public var server: String
    public var subnets: [IPv4Subnet]
    public var endpoints: [EndpointObservation]
    public var token: DHCPVersionToken

    public init(server: String, subnets: [IPv4Subnet], endpoints: [EndpointObservation], token: DHCPVersionToken) {
        self.server = server
        self.subnets = subnets
        self.endpoints = endpoints
        self.token = token
    }

    /// Whether every endpoint could be read. When not, the planner must not plan removals from
    /// what it did see (a peer that cannot be read might hold anything).
    public var isComplete: Bool { endpoints.allSatisfy { $0.reservations != nil } }

    /// Reservations for the same MAC in the same subnet that differ between peers of an HA pair
    /// (or exist on one peer only).
    public var peerDisagreements: [DHCPDriftItem] {
        let read = endpoints.compactMap { e in e.reservations.map { (e.name, $0) } }
        guard read.count > 1 else { return [] }
        struct Key: Hashable { var subnet: IPv4Subnet; var mac: MACAddress }
        var keys = Set<Key>()
        var byEndpoint: [String: [Key: Reservation]] = [:]
        for (name, reservations) in read {
            var map: [Key: Reservation] = [:]
            for r in reservations {
                let key = Key(subnet: r.subnet, mac: r.mac)
                map[key] = r
                keys.insert(key)
            }
            byEndpoint[name] = map
        }
        var items: [DHCPDriftItem] = []
        for key in keys.sorted(by: { ($0.subnet.network, $0.mac) < ($1.subnet.network, $1.mac) }) {
            let held = read.map { name, _ in PeerReservation(endpoint: name, reservation: byEndpoint[name]?[key]) }
            if Set(held.map(\.reservation)).count > 1 {
                items.append(.peersDisagree(subnet: key.subnet, mac: key.mac, held: held))
            }
        }
        return items
    }
}

public struct PeerReservation: Hashable, Sendable {
    public var endpoint: String
    /// nil: this peer has no reservation for the MAC.
    public var reservation: Reservation?

    public init(endpoint: String, reservation: Reservation?) {
        self.endpoint = endpoint
        self.reservation = reservation
    }
}

/// Something the planner shows: the server differs from the manifests, or a desired
/// reservation cannot be made.
public enum DHCPDriftItem: Hashable, Sendable, CustomStringConvertible {
    /// A reservation the manifests want is not on these endpoints: not made yet, or deleted
    /// behind virtform's back.
    case missing(Reservation, endpoints: [String])
    /// An owned reservation differs from what its binding says.
    case changed(observed: Reservation, desired: Reservation, endpoint: String)
    /// An owned reservation whose binding is no longer in the manifests.
    case orphaned(Reservation, endpoint: String)
    /// The desired reservation's address, MAC or host name is already held by a reservation
    /// virtform does not own; the change is not planned.
    case conflict(desired: Reservation, heldBy: Reservation, field: ConflictField, endpoint: String)
    /// The server does not serve the desired reservation's subnet.
    case subnetNotServed(Reservation, endpoint: String)
    /// HA peers hold different reservations for one MAC.
    case peersDisagree(subnet: IPv4Subnet, mac: MACAddress, held: [PeerReservation])

    public enum ConflictField: String, Hashable, Sendable { case address, mac, hostname }

    public var description: String {
        switch self {
        case .missing(let r, let endpoints): "missing on \(endpoints.joined(separator: ", ")): \(r)"
        case .changed(let observed, let desired, let endpoint): "changed on \(endpoint): \(observed), wanted \(desired)"
        case .orphaned(let r, let endpoint): "no binding any more on \(endpoint): \(r)"
        case .conflict(let desired, let held, let field, let endpoint):
            "conflict on \(endpoint): \(desired) needs a \(field.rawValue) already reserved by \(held)"
        case .subnetNotServed(let r, let endpoint): "\(endpoint) does not serve \(r.subnet) (needed by \(r))"
        case .peersDisagree(let subnet, let mac, let held):
            "HA peers disagree on \(mac) in \(subnet): "
                + held.map { "\($0.endpoint): \($0.reservation.map { "\($0.address)" } ?? "none")" }.joined(separator: ", ")
        }
    }
}

/// The result of comparing desired reservations with an observation: the changes to apply
/// and what to show.
public struct ReservationComparison: Hashable, Sendable {
    public var changes: [ReservationChange]
    public var drift: [DHCPDriftItem]
    /// Set when an endpoint could not be read: nothing is removed then.
    public var incomplete: Bool

    public init(changes: [ReservationChange], drift: [DHCPDriftItem], incomplete: Bool) {
        self.changes = changes
        self.drift = drift
        self.incomplete = incomplete
    }
}

extension DHCPObservation {
    /// Compares the reservations the manifests want (each with its owner mark) with what the
    /// endpoints hold. Owned reservations are matched by binding name. A change is planned when
    /// any readable endpoint differs (so a peer of an HA pair that lost a reservation gets it
    /// back); a desired reservation that collides with an unowned one is reported as a
    /// conflict and not planned. Removals are only planned when every endpoint was read.
    /// A binding in `importing` (written by `virtform import`) takes an unowned reservation with
    /// its MAC and address as its own: the change rewrites it with the mark — never one of
    /// `othersSites` (reservations another site marked, shown here without their mark).
    public func compare(desired: [Reservation], importing: Set<String> = [], othersSites: Set<Reservation> = []) -> ReservationComparison {
        var changes: [ReservationChange] = []
        var drift: [DHCPDriftItem] = []
        let read = endpoints.compactMap { e in e.reservations.map { (name: e.name, reservations: $0) } }
        // Indexes per endpoint, so comparing thousands of reservations stays linear.
        struct Index {
            var owned: [String: Reservation] = [:]
            var unownedByAddress: [IPv4Subnet: [IPv4Address: Reservation]] = [:]
            var unownedByMAC: [IPv4Subnet: [MACAddress: Reservation]] = [:]
            var unownedByName: [IPv4Subnet: [String: Reservation]] = [:]
        }
        var indexes: [String: Index] = [:]
        for (name, reservations) in read {
            var index = Index()
            for r in reservations {
                if let owner = r.owner {
                    index.owned[owner.binding] = index.owned[owner.binding] ?? r
                } else {
                    index.unownedByAddress[r.subnet, default: [:]][r.address] = r
                    index.unownedByMAC[r.subnet, default: [:]][r.mac] = r
                    if let host = r.hostname { index.unownedByName[r.subnet, default: [:]][host.lowercased()] = r }
                }
            }
            indexes[name] = index
        }
        let unserved: [String: Set<IPv4Subnet>] = Dictionary(uniqueKeysWithValues: endpoints.compactMap { e in
            if case .observed(_, let subnets) = e.state { return (e.name, Set(subnets)) }
            return nil
        })

        for want in desired.sorted(by: { ($0.owner?.binding ?? "") < ($1.owner?.binding ?? "") }) {
            guard let owner = want.owner else { continue }
            var blocked = false
            var current: Reservation?
            var differs = false
            var missingOn: [String] = []
            for (name, _) in read {
                if unserved[name]?.contains(want.subnet) == true {
                    drift.append(.subnetNotServed(want, endpoint: name))
                    blocked = true
                    continue
                }
                let index = indexes[name]!
                var mine = index.owned[owner.binding]
                var adopted: Reservation?
                if mine == nil, importing.contains(owner.binding),
                   let unowned = index.unownedByMAC[want.subnet]?[want.mac], unowned.address == want.address, !othersSites.contains(unowned) {
                    adopted = unowned
                    mine = unowned
                }
                if let mine {
                    current = current ?? mine
                    if mine != want {
                        differs = true
                        drift.append(.changed(observed: mine, desired: want, endpoint: name))
                    }
                } else {
                    differs = true
                    missingOn.append(name)
                }
                let held: [(Reservation?, DHCPDriftItem.ConflictField)] = [
                    (index.unownedByAddress[want.subnet]?[want.address], .address),
                    (index.unownedByMAC[want.subnet]?[want.mac], .mac),
                    (want.hostname.flatMap { index.unownedByName[want.subnet]?[$0.lowercased()] }, .hostname),
                ]
                for case let (other?, field) in held where other != adopted {
                    drift.append(.conflict(desired: want, heldBy: other, field: field, endpoint: name))
                    blocked = true
                }
            }
            if !missingOn.isEmpty { drift.append(.missing(want, endpoints: missingOn)) }
            guard differs, !blocked else { continue }
            if let current {
                changes.append(.change(from: current, to: want))
            } else {
                changes.append(.add(want))
            }
        }

        let wanted = Set(desired.compactMap { $0.owner?.binding })
        var orphans: [String: Reservation] = [:]
        for (name, reservations) in read {
            for r in reservations where r.owner != nil && !wanted.contains(r.owner!.binding) {
                drift.append(.orphaned(r, endpoint: name))
                orphans[r.owner!.binding] = orphans[r.owner!.binding] ?? r
            }
        }
        if isComplete {
            changes += orphans.keys.sorted().map { .remove(orphans[$0]!) }
        }
        drift += peerDisagreements
        return ReservationComparison(changes: changes, drift: drift, incomplete: !isComplete)
    }

    /// Which field of `want` an unowned reservation `other` already holds, if any. Host names
    /// compare case-insensitively, as DNS does.
    public static func collision(_ want: Reservation, _ other: Reservation) -> DHCPDriftItem.ConflictField? {
        if other.address == want.address { return .address }
        if other.mac == want.mac { return .mac }
        if let a = want.hostname, let b = other.hostname, a.lowercased() == b.lowercased() { return .hostname }
        return nil
    }
}

extension ReservationChange: Codable {
    /// `{"add": R}`, `{"change": {"from": R, "to": R}}` or `{"remove": R}`.
    private enum CodingKeys: String, CodingKey { case add, change, remove }
    private struct Pair: Codable { var from: Reservation; var to: Reservation }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if let added = try container.decodeIfPresent(Reservation.self, forKey: .add) {
            self = .add(added)
        } else if let pair = try container.decodeIfPresent(Pair.self, forKey: .change) {
            self = .change(from: pair.from, to: pair.to)
        } else if let removed = try container.decodeIfPresent(Reservation.self, forKey: .remove) {
            self = .remove(removed)
        } else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "expected add, change or remove"))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .add(let r): try container.encode(r, forKey: .add)
        case .change(let from, let to): try container.encode(Pair(from: from, to: to), forKey: .change)
        case .remove(let r): try container.encode(r, forKey: .remove)
        }
    }
}
