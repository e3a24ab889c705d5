import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import VirtformModel

/// Domain XML ⇄ `DomainSpec`.
///
/// Rendering writes only what virtform manages, plus the ownership mark in `<metadata>`.
/// Reading takes only those fields back, normalized (units, case, order of attributes), so
/// everything libvirt adds by itself — default devices, controllers, PCI addresses, machine
/// type expansion, seclabels, emulator paths — never shows up as a difference.
public enum DomainXML {
    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// `uuid` keeps an existing domain's identity when it is redefined (libvirt refuses a
    /// definition that reuses a name with a new UUID).
    public static func render(_ spec: DomainSpec, ownership: Ownership, uuid: String? = nil) -> String {
        var lines = ["<domain type='\(escape(spec.domainType))'>"]
        lines.append("  <name>\(escape(spec.name))</name>")
        if let uuid { lines.append("  <uuid>\(escape(uuid))</uuid>") }
        lines.append("  <metadata>")
        lines.append("    <\(Ownership.prefix):owner xmlns:\(Ownership.prefix)='\(Ownership.namespace)' vm='\(escape(ownership.vm.description))' digest='\(escape(ownership.digest))' deletion-protection='\(ownership.deletionProtection)'/>")
        lines.append("  </metadata>")
        lines.append("  <memory unit='KiB'>\(spec.memoryKiB)</memory>")
        lines.append("  <currentMemory unit='KiB'>\(spec.memoryKiB)</currentMemory>")
        lines.append("  <vcpu>\(spec.vcpus)</vcpu>")
        if spec.osType == "hvm" {
            // `pc` boots under TCG as well as KVM; libvirt expands it to a versioned machine type.
            lines.append("  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/><boot dev='network'/></os>")
        } else {
            lines.append("  <os><type>\(escape(spec.osType))</type></os>")
        }
        lines.append("  <on_poweroff>destroy</on_poweroff>")
        lines.append("  <on_reboot>restart</on_reboot>")
        lines.append("  <on_crash>destroy</on_crash>")
        lines.append("  <devices>")
        for (i, disk) in spec.disks.enumerated() {
            let device = "vd" + String(UnicodeScalar(UInt8(ascii: "a") + UInt8(i % 26)))
            lines.append("    <disk type='network' device='disk'>")
            lines.append("      <driver name='qemu' type='raw' cache='none'/>")
            lines.append("      <source protocol='iscsi' name='\(escape(disk.target))/\(disk.lun)'>")
            lines.append("        <host name='\(escape(disk.portalHost))' port='\(disk.portalPort)'/>")
            lines.append("      </source>")
            lines.append("      <target dev='\(device)' bus='virtio'/>")
            lines.append("    </disk>")
        }
        for interface in spec.interfaces {
            if interface.bridge == DomainSpec.InterfaceSpec.userMode {
                lines.append("    <interface type='user'>")
                lines.append("      <mac address='\(escape(interface.mac))'/>")
            } else {
                lines.append("    <interface type='bridge'>")
                lines.append("      <mac address='\(escape(interface.mac))'/>")
                lines.append("      <source bridge='\(escape(interface.bridge))'/>")
            }
            lines.append("      <model type='virtio'/>")
            lines.append("    </interface>")
        }
        lines.append("    <serial type='pty'/>")
        lines.append("  </devices>")
        lines.append("</domain>")
        return lines.joined(separator: "\n") + "\n"
    }

    /// The managed fields of a domain and its ownership mark (nil when virtform does not own it).
    public static func parse(_ xml: String) throws -> (spec: DomainSpec, ownership: Ownership?) {
        let document: XMLDocument
        do {
            document = try XMLDocument(xmlString: xml, options: [])
        } catch {
            throw ParseError(description: "domain XML does not parse: \(error.localizedDescription)")
        }
        guard let root = document.rootElement(), root.name == "domain" else {
            throw ParseError(description: "domain XML has no <domain> root")
        }
        guard let name = root.child("name")?.stringValue, !name.isEmpty else {
            throw ParseError(description: "domain XML has no <name>")
        }
        let memory = root.child("memory").map { kibibytes($0) } ?? 0
        let vcpus = Int(root.child("vcpu")?.stringValue?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
        let osType = root.child("os")?.child("type")?.stringValue?.trimmingCharacters(in: .whitespaces) ?? ""

        var interfaces: [DomainSpec.InterfaceSpec] = []
        var disks: [DomainSpec.DiskSpec] = []
        for device in root.child("devices")?.children?.compactMap({ $0 as? XMLElement }) ?? [] {
            switch device.name {
            case "interface":
                let mac = device.child("mac")?.attribute("address")?.lowercased() ?? ""
                let source = device.child("source")
                let attachment: String
                switch device.attribute("type") {
                case "bridge": attachment = source?.attribute("bridge") ?? ""
                case "network": attachment = "network:" + (source?.attribute("network") ?? "")
                case let other: attachment = other ?? "unknown"
                }
                interfaces.append(.init(mac: mac, bridge: attachment))
            case "disk" where device.attribute("device") == "disk":
                let source = device.child("source")
                if device.attribute("type") == "network", source?.attribute("protocol") == "iscsi" {
                    let full = source?.attribute("name") ?? ""
                    let slash = full.lastIndex(of: "/")
                    let target = slash.map { String(full[..<$0]) } ?? full
                    let lun = slash.flatMap { Int(full[full.index(after: $0)...]) } ?? 0
                    let host = source?.child("host")
                    disks.append(.init(target: target, lun: lun, portalHost: host?.attribute("name") ?? "",
                                       portalPort: Int(host?.attribute("port") ?? "") ?? 3260))
                } else {
                    // Not one of ours; kept so that a disk attached by hand shows as a difference.
                    let path = source?.attribute("file") ?? source?.attribute("dev") ?? source?.attribute("name") ?? "?"
                    disks.append(.init(target: "\(device.attribute("type") ?? "disk"):\(path)", lun: 0, portalHost: "", portalPort: 0))
                }
            default:
                continue
            }
        }
        let spec = DomainSpec(name: name, domainType: root.attribute("type") ?? "", osType: osType, memoryKiB: memory,
                              vcpus: vcpus, interfaces: interfaces, disks: disks)
        return (spec, ownership(in: root))
    }

    private static func ownership(in root: XMLElement) -> Ownership? {
        guard let metadata = root.child("metadata") else { return nil }
        for element in metadata.children?.compactMap({ $0 as? XMLElement }) ?? []
        where element.localName == "owner" && element.uri == Ownership.namespace {
            guard let vm = element.attribute("vm").flatMap(VMID.init(parsing:)) else { return nil }
            return Ownership(vm: vm, digest: element.attribute("digest") ?? "",
                             deletionProtection: element.attribute("deletion-protection") == "true")
        }
        return nil
    }

    private static func kibibytes(_ element: XMLElement) -> UInt64 {
        let value = UInt64(element.stringValue?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
        switch element.attribute("unit") ?? "KiB" {
        case "b", "bytes": return value >> 10
        case "KB": return value * 1000 >> 10
        case "k", "KiB": return value
        case "MB": return value * 1_000_000 >> 10
        case "M", "MiB": return value << 10
        case "GB": return value * 1_000_000_000 >> 10
        case "G", "GiB": return value << 20
        default: return value
        }
    }

    static func escape(_ text: String) -> String {
        var result = ""
        for character in text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "'": result += "&apos;"
            case "\"": result += "&quot;"
            default: result.append(character)
            }
        }
        return result
    }
}

extension XMLElement {
    fileprivate func child(_ name: String) -> XMLElement? { elements(forName: name).first }
    fileprivate func attribute(_ name: String) -> String? { attribute(forName: name)?.stringValue }
}
