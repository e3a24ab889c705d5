import Foundation
import Testing
import VirtformLab
import VirtformModel
import VirtformSystem
@testable import VirtformDHCP

let publicSubnet = IPv4Subnet(parsing: "192.168.76.0/24")!
let backendSubnet = IPv4Subnet(parsing: "192.168.78.0/24")!
let provenance = Provenance(document: SourceLocation(file: "test.yaml", line: 1, column: 1))

func mac(_ text: String) -> MACAddress { MACAddress(parsing: text)! }
func address(_ text: String) -> IPv4Address { IPv4Address(parsing: text)! }

/// A reservation with virtform's mark for binding `binding` of VM `appl-1/<vm>`.
func owned(_ binding: String, vm: String = "vm-1", mac macText: String, _ ip: String, host: String?, subnet: IPv4Subnet = publicSubnet) -> Reservation {
    Reservation(subnet: subnet, mac: mac(macText), address: address(ip), hostname: host,
                owner: OwnerMark(binding: binding, vm: VMID(project: "appl-1", name: vm), interface: "fe0"))
}

func unowned(mac macText: String, _ ip: String, host: String?, subnet: IPv4Subnet = publicSubnet) -> Reservation {
    Reservation(subnet: subnet, mac: mac(macText), address: address(ip), hostname: host, owner: nil)
}

func keaServer(_ labs: [DHCPLab], name: String = "lab-dhcp") -> DHCPServer {
    DHCPServer(meta: ObjectMeta(name: name), driver: .kea,
               endpoints: labs.enumerated().map { i, lab in .init(name: "kea-\(i + 1)", controlSocket: lab.configuration.controlSocket) },
               provenance: provenance)
}

func dnsmasqServer(_ lab: DHCPLab) -> DHCPServer {
    DHCPServer(meta: ObjectMeta(name: "lab-dnsmasq"), driver: .dnsmasq,
               endpoints: [.init(name: "dnsmasq-1", hostsFile: lab.configuration.hostsFile, pidFile: lab.configuration.pidFile)],
               provenance: provenance)
}

/// Edits a Kea server's configuration the way somebody else would: config-get, change,
/// config-set, with no regard for virtform.
func editBehindTheBack(_ socket: String, _ edit: (inout [JSONValue]) -> Void, subnet: String = "192.168.76.0/24") async throws {
    let channel = KeaControlChannel(endpoint: "test", path: socket, timeout: .seconds(20))
    guard case .object(var root)? = try await channel.send("config-get").arguments, case .object(var dhcp4)? = root["Dhcp4"],
        case .array(var subnets)? = dhcp4["subnet4"]
    else { throw SystemError("unexpected config-get answer") }
    for i in subnets.indices {
        guard case .object(var s) = subnets[i], s["subnet"]?.stringValue == subnet else { continue }
        var reservations = s["reservations"]?.arrayValue ?? []
        edit(&reservations)
        s["reservations"] = .array(reservations)
        subnets[i] = .object(s)
    }
    dhcp4["subnet4"] = .array(subnets)
    root["Dhcp4"] = .object(dhcp4)
    _ = try await channel.send("config-set", arguments: .object(root))
}

func keaEntry(mac: String, ip: String, host: String) -> JSONValue {
    .object(["hw-address": .string(mac), "ip-address": .string(ip), "hostname": .string(host)])
}

/// A DHCP lab of its own for one test (fresh temporary root, namespace names nobody else
/// uses), torn down when `body` ends, also when it throws.
enum LabFixture {
    static func with<T: Sendable>(
        _ server: DHCPLabServer = .kea, tags: [String], _ body: @Sendable ([DHCPLab]) async throws -> T
    ) async throws -> T {
        var labs: [DHCPLab] = []
        var roots: [String] = []
        let outcome: Result<T, any Error>
        do {
            for tag in tags {
                var template = Array("/tmp/vfdhcp-XXXXXX".utf8CString)
                guard let pointer = mkdtemp(&template) else { throw CocoaError(.fileWriteUnknown) }
                roots.append(String(cString: pointer))
                let lab = DHCPLab(configuration: DHCPLabConfiguration(root: roots.last!, server: server, namespace: "vft-\(tag)-\(getpid())"))
                labs.append(lab)
                try await lab.up()
            }
            outcome = .success(try await body(labs))
        } catch {
            outcome = .failure(error)
        }
        // Last in, first out.
        var problems: [any Error] = []
        for lab in labs.reversed() {
            do { try await lab.down() } catch { problems.append(error) }
        }
        for root in roots.reversed() { try? FileManager.default.removeItem(atPath: root) }
        let value = try outcome.get()
        if let first = problems.first { throw first }
        return value
    }

    static func with<T: Sendable>(_ server: DHCPLabServer = .kea, tag: String, _ body: @Sendable (DHCPLab) async throws -> T) async throws -> T {
        try await with(server, tags: [tag]) { try await body($0[0]) }
    }
}
