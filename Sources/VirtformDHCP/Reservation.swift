import VirtformModel

/// Who a reservation belongs to: the `NetworkBinding` that asked for it, and the VM interface it
/// serves. Only reservations carrying this mark are ever changed or removed by virtform.
///
/// Kea keeps it as the reservation's `user-context`:
/// `{"virtform": {"binding": "vm-1-fe0", "vm": "appl-1/vm-1", "interface": "fe0"}}`.
/// dnsmasq keeps it as a comment line right above the reservation's line in the hosts file:
/// `# virtform binding=vm-1-fe0 vm=appl-1/vm-1 interface=fe0`.
public struct OwnerMark: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The `NetworkBinding`'s name.
    public var binding: String
    public var vm: VMID
    /// The VM interface's name.
    public var interface: String

    public init(binding: String, vm: VMID, interface: String) {
        self.binding = binding
        self.vm = vm
        self.interface = interface
    }

    public static func < (a: OwnerMark, b: OwnerMark) -> Bool { (a.binding, a.vm, a.interface) < (b.binding, b.vm, b.interface) }
    public var description: String { "binding \(binding) (\(vm) \(interface))" }
}

/// One host reservation: this MAC gets this address (and host name) in this subnet.
public struct Reservation: Hashable, Sendable, CustomStringConvertible {
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
    /// binding's address and host name, in the network's subnet.
    public init(binding: NetworkBinding, vm: VirtualMachine, network: Network) throws {
        guard let interface = vm.interfaces.first(where: { $0.name == binding.interface }) else {
            throw DHCPError(.invalidRequest, "binding \(binding.meta.name) names interface \(binding.interface), which \(vm.id) does not have")
        }
        self.init(subnet: network.subnet, mac: vm.mac(of: interface), address: binding.address, hostname: binding.hostname,
                  owner: OwnerMark(binding: binding.meta.name, vm: vm.id, interface: interface.name))
    }

    public var description: String {
        "\(mac) → \(address)\(hostname.map { " (\($0))" } ?? "") in \(subnet)\(owner.map { ", \($0)" } ?? ", unowned")"
    }

    /// Same reservation apart from the mark (what a DHCP client would see).
    func sameEffect(as other: Reservation) -> Bool {
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
