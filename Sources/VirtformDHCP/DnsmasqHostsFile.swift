import VirtformModel

/// A dnsmasq `--dhcp-hostsfile`, line by line. Pure: no I/O.
///
/// virtform's reservations are a mark comment followed by one `MAC,address[,hostname]` line:
///
///     # virtform binding=vm-1-fe0 vm=appl-1/vm-1 interface=fe0
///     02:3a:1f:00:12:7c,192.168.76.71,vm-1
///
/// Every other line (comments, blank lines, other people's `dhcp-host` entries in any of
/// dnsmasq's forms) is foreign: kept byte for byte and in place. Foreign lines of the simple
/// `MAC,address[,hostname][,lease]` kind are also read, so that conflicts with them show.
struct DnsmasqHostsFile: Hashable, Sendable {
    enum Line: Hashable, Sendable {
        case foreign(String)
        case owned(OwnerMark, mac: MACAddress, address: IPv4Address, hostname: String?)
    }

    static let markPrefix = "# virtform "

    var lines: [Line]
    /// Whether the text ended with a newline (kept as it was when nothing is added).
    private var trailingNewline: Bool

    init(parsing text: String) {
        var raw = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        trailingNewline = text.hasSuffix("\n")
        if trailingNewline { raw.removeLast() }
        if text.isEmpty { raw = [] }
        var lines: [Line] = []
        var i = 0
        while i < raw.count {
            if raw[i].hasPrefix(Self.markPrefix), i + 1 < raw.count, let mark = Self.mark(raw[i]),
                let entry = Self.simpleEntry(raw[i + 1])
            {
                lines.append(.owned(mark, mac: entry.mac, address: entry.address, hostname: entry.hostname))
                i += 2
            } else {
                lines.append(.foreign(raw[i]))
                i += 1
            }
        }
        self.lines = lines
    }

    var text: String {
        var out: [String] = []
        for line in lines {
            switch line {
            case .foreign(let text): out.append(text)
            case .owned(let mark, let mac, let address, let hostname):
                // A line kept as it was keeps its mark as read (a hand edit stays visible); what
                // virtform writes carries the digest of what it reserved.
                out.append("\(Self.markPrefix)binding=\(mark.binding) vm=\(mark.vm) interface=\(mark.interface)\(mark.site.map { " site=\($0)" } ?? "")\(mark.applied.map { " applied=\($0)" } ?? "")\(mark.run.map { " run=\($0)" } ?? "")")
                out.append([mac.description, address.description, hostname].compactMap { $0 }.joined(separator: ","))
            }
        }
        guard !out.isEmpty else { return "" }
        return out.joined(separator: "\n") + (trailingNewline || lines.contains { if case .owned = $0 { true } else { false } } ? "\n" : "")
    }

    static func mark(_ line: String) -> OwnerMark? {
        var fields: [String: String] = [:]
        for token in line.dropFirst(markPrefix.count).split(separator: " ") {
            guard let eq = token.firstIndex(of: "=") else { return nil }
            fields[String(token[..<eq])] = String(token[token.index(after: eq)...])
        }
        guard let binding = fields["binding"], !binding.isEmpty, let vm = fields["vm"].flatMap({ VMID(parsing: $0) }),
            let interface = fields["interface"], !interface.isEmpty
        else { return nil }
        return OwnerMark(binding: binding, vm: vm, interface: interface, site: fields["site"].flatMap { $0.isEmpty ? nil : $0 },
                         applied: fields["applied"].flatMap { $0.isEmpty ? nil : $0 }, run: fields["run"].flatMap { $0.isEmpty ? nil : $0 })
    }

    /// `MAC,address[,hostname][,lease time]`, the form virtform writes and the commonest one
    /// people write; nil for anything else (client ids, tags, several MACs, wildcards…).
    static func simpleEntry(_ line: String) -> (mac: MACAddress, address: IPv4Address, hostname: String?)? {
        let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard fields.count >= 2, fields.count <= 4, let mac = MACAddress(parsing: fields[0].lowercased()),
            let address = IPv4Address(parsing: fields[1])
        else { return nil }
        var hostname: String?
        for field in fields.dropFirst(2) {
            if isLeaseTime(field) { continue }
            guard Names.isHostname(field) else { return nil }
            hostname = field
        }
        return (mac, address, hostname)
    }

    private static func isLeaseTime(_ field: String) -> Bool {
        if field == "infinite" { return true }
        var digits = Substring(field)
        if let last = digits.last, "smhdw".contains(last) { digits = digits.dropLast() }
        return !digits.isEmpty && digits.allSatisfy { $0.isASCII && $0.isNumber }
    }

    /// The reservations whose address lies in one of `subnets`, owned or not; with
    /// `ownedElsewhere`, also virtform's own entries outside them (a site's leftovers in a subnet
    /// it no longer declares), each in the /32 of its address since the file names no subnet.
    func reservations(in subnets: [IPv4Subnet], ownedElsewhere: Bool = false) -> [Reservation] {
        lines.compactMap { line in
            switch line {
            case .owned(let mark, let mac, let address, let hostname):
                let subnet = subnets.first { $0.contains(address) } ?? (ownedElsewhere ? IPv4Subnet(parsing: "\(address)/32") : nil)
                return subnet.map { Reservation(subnet: $0, mac: mac, address: address, hostname: hostname, owner: mark) }
            case .foreign(let text):
                guard let entry = Self.simpleEntry(text), let subnet = subnets.first(where: { $0.contains(entry.address) }) else { return nil }
                return Reservation(subnet: subnet, mac: entry.mac, address: entry.address, hostname: entry.hostname, owner: nil)
            }
        }
    }

    /// The file with `changes` made: the owned entries of the bindings they name are taken
    /// out, the new ones appended. A new one sharing address, MAC or host name with a foreign
    /// entry of its subnet is refused.
    func applying(_ changes: [ReservationChange], endpoint: String) throws -> DnsmasqHostsFile {
        var gone = Set<String>()
        var additions: [Reservation] = []
        // Entries virtform did not make that an import takes over: replaced where they stand.
        var adopted: [String: Reservation] = [:]
        for change in changes {
            if case .change(let from, let to) = change, from.owner == nil, let owner = to.owner {
                adopted[Self.entryKey(from.mac, from.address)] = to
                gone.insert(owner.key)
                additions.append(to)
                continue
            }
            for r in [change.before, change.after].compactMap({ $0 }) {
                guard let owner = r.owner else {
                    throw DHCPError(.invalidRequest, "failed to apply `\(change)` on \(endpoint): virtform only changes reservations with its owner mark", endpoint: endpoint)
                }
                gone.insert(owner.key)
            }
            if let after = change.after { additions.append(after) }
        }
        // Another site's reservations are as foreign as anybody's.
        let sites = Set(additions.map { $0.owner?.site })
        let foreign = reservations(in: Array(Set(additions.map(\.subnet)))).filter { $0.owner == nil || !sites.contains($0.owner?.site) }
            .filter { !($0.owner == nil && adopted[Self.entryKey($0.mac, $0.address)] != nil) }
        for r in additions {
            if let other = foreign.first(where: { $0.subnet == r.subnet && DHCPObservation.collision(r, $0) != nil }) {
                throw DHCPError(.conflict, "failed to reserve \(r) on \(endpoint): its \(DHCPObservation.collision(r, other)!.rawValue) is already reserved by \(other), which virtform does not own", endpoint: endpoint)
            }
        }
        // A binding's new entry takes the place of its old one, so the file changes only where
        // the reservation did; entries of new bindings go at the end.
        var pending: [String: Reservation] = [:]
        for r in additions { pending[r.owner!.key] = r }
        var result = self
        result.lines = []
        for line in lines {
            if case .foreign(let text) = line, let entry = Self.simpleEntry(text), let r = adopted[Self.entryKey(entry.mac, entry.address)],
               pending[r.owner!.key] == r {
                pending[r.owner!.key] = nil
                result.lines.append(Self.written(r))
                continue
            }
            guard case .owned(let mark, _, _, _) = line, gone.contains(mark.key) else {
                result.lines.append(line)
                continue
            }
            if let r = pending.removeValue(forKey: mark.key) { result.lines.append(Self.written(r)) }
        }
        for r in additions where pending[r.owner!.key] == r {
            pending[r.owner!.key] = nil
            result.lines.append(Self.written(r))
        }
        return result
    }

    private static func entryKey(_ mac: MACAddress, _ address: IPv4Address) -> String { "\(mac)|\(address)" }

    /// The lines virtform writes for a reservation: its mark, with the digest of what it reserves.
    private static func written(_ r: Reservation) -> Line {
        var mark = r.owner!
        mark.applied = r.digest
        return .owned(mark, mac: r.mac, address: r.address, hostname: r.hostname)
    }
}
