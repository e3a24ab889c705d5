/// An IPv4 address.
public struct IPv4Address: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    /// Dotted quad, each part 0–255 without leading zeros (`010` is ambiguous and refused).
    public init?(parsing text: some StringProtocol) {
        var result: UInt32 = 0
        var parts = 0
        for part in text.split(separator: ".", omittingEmptySubsequences: false) {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                part == "0" || !part.hasPrefix("0"), let octet = UInt32(part), octet <= 255
            else { return nil }
            result = result << 8 | octet
            parts += 1
        }
        guard parts == 4 else { return nil }
        value = result
    }

    public static func < (a: IPv4Address, b: IPv4Address) -> Bool { a.value < b.value }

    public var description: String {
        "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
    }
}

/// An IPv4 subnet in CIDR form, `192.168.76.0/24`. The address must be the network address.
public struct IPv4Subnet: Hashable, Sendable, CustomStringConvertible {
    public var network: IPv4Address
    public var prefixLength: Int

    public init?(parsing text: some StringProtocol) {
        let pieces = text.split(separator: "/", omittingEmptySubsequences: false)
        guard pieces.count == 2, let address = IPv4Address(parsing: pieces[0]),
            pieces[1].allSatisfy({ $0.isASCII && $0.isNumber }), let length = Int(pieces[1]), (0...32).contains(length)
        else { return nil }
        let subnet = IPv4Subnet(network: address, prefixLength: length)
        guard subnet.network.value & subnet.mask == subnet.network.value else { return nil }
        self = subnet
    }

    init(network: IPv4Address, prefixLength: Int) {
        self.network = network
        self.prefixLength = prefixLength
    }

    public var mask: UInt32 { prefixLength == 0 ? 0 : UInt32.max << (32 - prefixLength) }
    public var broadcast: IPv4Address { IPv4Address(network.value | ~mask) }

    public func contains(_ address: IPv4Address) -> Bool { address.value & mask == network.value }

    /// Whether the address may be handed to a host: inside, and neither network nor broadcast
    /// address (for prefixes up to /30).
    public func isUsableHostAddress(_ address: IPv4Address) -> Bool {
        guard contains(address) else { return false }
        if prefixLength >= 31 { return true }
        return address != network && address != broadcast
    }

    public var description: String { "\(network)/\(prefixLength)" }
}

/// A 48-bit Ethernet MAC address, written `52:54:00:12:34:56`.
public struct MACAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var value: UInt64

    public init(_ value: UInt64) { self.value = value & 0xffff_ffff_ffff }

    public init?(parsing text: some StringProtocol) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var result: UInt64 = 0
        for part in parts {
            guard part.count == 2, let byte = UInt8(part, radix: 16) else { return nil }
            result = result << 8 | UInt64(byte)
        }
        value = result
    }

    /// The group bit: a multicast MAC cannot be a guest's address.
    public var isMulticast: Bool { (value >> 40) & 1 == 1 }
    /// The locally-administered bit.
    public var isLocallyAdministered: Bool { (value >> 40) & 2 == 2 }

    public static func < (a: MACAddress, b: MACAddress) -> Bool { a.value < b.value }

    public var description: String {
        // Written byte by byte: a plan formats tens of thousands of these.
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(17)
        for shift in stride(from: 40, through: 0, by: -8) {
            let byte = Int((value >> UInt64(shift)) & 0xff)
            if shift != 40 { text.append(UInt8(ascii: ":")) }
            text.append(digits[byte >> 4])
            text.append(digits[byte & 0xf])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

/// `address:port`, as an iSCSI portal is written.
public struct HostPort: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `127.0.0.1:3260`, `storage.example:3260`; the port defaults to `defaultPort` when absent.
    public init?(parsing text: some StringProtocol, defaultPort: Int? = nil) {
        let string = String(text)
        if let colon = string.lastIndex(of: ":") {
            guard let port = Int(string[string.index(after: colon)...]), (1...65535).contains(port) else { return nil }
            host = String(string[..<colon])
            self.port = port
        } else if let defaultPort {
            host = string
            port = defaultPort
        } else {
            return nil
        }
        guard Names.isHostname(host) || IPv4Address(parsing: host) != nil else { return nil }
    }

    public var description: String { "\(host):\(port)" }
}

extension MACAddress {
    /// A stable, locally administered unicast MAC for an interface without a fixed one:
    /// `02:` followed by 40 bits of a `StableHash` of project, VM and interface. The same names give
    /// the same MAC on every run and every machine, so reservations can exist before first boot.
    public static func derived(for vm: VMID, interface: String) -> MACAddress {
        let hash = StableHash.of(vm.project, vm.name, interface).value
        return MACAddress(0x02_00_0000_0000 | (hash & 0xff_ffff_ffff))
    }
}
