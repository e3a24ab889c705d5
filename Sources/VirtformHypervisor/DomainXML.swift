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
    ///
    /// Written straight into one string (apply renders one per define: ten thousand in a large
    /// apply), escaping only what needs it.
    public static func render(_ spec: DomainSpec, ownership: Ownership, uuid: String? = nil) -> String {
        var xml = ""
        xml.reserveCapacity(1400 + 200 * spec.interfaces.count + 300 * spec.disks.count)
        func add(_ parts: String...) { for part in parts { xml += part } }
        add("<domain type='", escape(spec.domainType), "'>\n")
        add("  <name>", escape(spec.name), "</name>\n")
        if let uuid { add("  <uuid>", escape(uuid), "</uuid>\n") }
        add("  <metadata>\n    ", ownerElement(ownership, qualified: true), "\n  </metadata>\n")
        add("  <memory unit='KiB'>", String(spec.memoryKiB), "</memory>\n")
        add("  <currentMemory unit='KiB'>", String(spec.currentMemoryKiB), "</currentMemory>\n")
        if spec.maxVCPUs > spec.vcpus {
            add("  <vcpu current='", String(spec.vcpus), "'>", String(spec.maxVCPUs), "</vcpu>\n")
        } else {
            add("  <vcpu>", String(spec.vcpus), "</vcpu>\n")
        }
        if spec.osType == "hvm" {
            // `pc` boots under TCG as well as KVM; libvirt expands it to a versioned machine type.
            add("  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/><boot dev='network'/></os>\n")
            // ACPI: a graceful shutdown, and PCI hot-plug (interfaces attached to a running guest).
            add("  <features><acpi/><apic/></features>\n")
        } else {
            add("  <os><type>", escape(spec.osType), "</type></os>\n")
        }
        add("  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  <on_crash>destroy</on_crash>\n  <devices>\n")
        for (i, disk) in spec.disks.enumerated() {
            let device = "vd" + String(UnicodeScalar(UInt8(ascii: "a") + UInt8(i % 26)))
            add("    <disk type='network' device='disk'>\n      <driver name='qemu' type='raw' cache='none'/>\n")
            add("      <source protocol='iscsi' name='", escape(disk.target), "/", String(disk.lun), "'>\n")
            add("        <host name='", escape(disk.portalHost), "' port='", String(disk.portalPort), "'/>\n")
            if let initiator = disk.initiator { add("        <initiator><iqn name='", escape(initiator), "'/></initiator>\n") }
            if let username = disk.chapUsername, let usage = disk.secretUsage {
                add("        <auth username='", escape(username), "'><secret type='iscsi' usage='", escape(usage), "'/></auth>\n")
            }
            add("      </source>\n      <target dev='", device, "' bus='virtio'/>\n    </disk>\n")
        }
        for interface in spec.interfaces { render(interface, indent: "    ", into: &xml) }
        add("    <serial type='pty'/>\n  </devices>\n</domain>\n")
        return xml
    }

    /// One interface's `<interface>` element, as a definition holds it and as a running guest
    /// is given it (attach) or asked to give it up (detach: libvirt finds it by its MAC).
    public static func render(_ interface: DomainSpec.InterfaceSpec) -> String {
        var xml = ""
        render(interface, indent: "", into: &xml)
        return String(xml.dropLast())  // no newline after the element
    }

    private static func render(_ interface: DomainSpec.InterfaceSpec, indent: String, into xml: inout String) {
        func add(_ parts: String...) { for part in parts { xml += part } }
        if interface.bridge == DomainSpec.InterfaceSpec.userMode {
            add(indent, "<interface type='user'>\n", indent, "  <mac address='", escape(interface.mac), "'/>\n")
        } else if interface.bridge.hasPrefix("network:") {
            add(indent, "<interface type='network'>\n", indent, "  <mac address='", escape(interface.mac), "'/>\n")
            add(indent, "  <source network='", escape(String(interface.bridge.dropFirst("network:".count))), "'/>\n")
        } else {
            add(indent, "<interface type='bridge'>\n", indent, "  <mac address='", escape(interface.mac), "'/>\n")
            add(indent, "  <source bridge='", escape(interface.bridge), "'/>\n")
        }
        add(indent, "  <model type='virtio'/>\n", indent, "</interface>\n")
    }

    /// The managed fields of a domain and its ownership mark (nil when virtform does not own it).
    /// virtform's mark as one element: `qualified` with its namespace prefix and declaration, as
    /// in a whole definition; otherwise bare, as `virDomainSetMetadata` takes it (libvirt adds
    /// the namespace).
    public static func ownerElement(_ ownership: Ownership, qualified: Bool = false) -> String {
        var xml = qualified ? "<\(Ownership.prefix):owner xmlns:\(Ownership.prefix)='\(Ownership.namespace)'" : "<owner"
        xml += " vm='" + escape(ownership.vm.description) + "' digest='" + escape(ownership.digest)
            + "' deletion-protection='" + (ownership.deletionProtection ? "true" : "false") + "'"
        if let site = ownership.site { xml += " site='" + escape(site) + "'" }
        if let power = ownership.power { xml += " power='" + power.rawValue + "'" }
        if let host = ownership.host { xml += " host='" + escape(host) + "'" }
        if let replaces = ownership.replaces, !replaces.isEmpty { xml += " replaces='" + escape(replaces.joined(separator: " ")) + "'" }
        if let movedAt = ownership.movedAt { xml += " moved-at='" + String(movedAt) + "'" }
        if let run = ownership.run { xml += " run='" + escape(run) + "'" }
        return xml + "/>"
    }

    public static func parse(_ xml: String) throws -> (spec: DomainSpec, ownership: Ownership?) {
        let reading = try read(xml)
        return (reading.spec, reading.ownership)
    }

    /// What `read` finds in a domain's XML.
    public struct Reading: Sendable {
        public var spec: DomainSpec
        public var ownership: Ownership?
        /// Whether devices can be hot-plugged into the domain as defined: a `pv` guest, or an
        /// `hvm` guest with ACPI.
        public var hotplug: Bool
    }

    /// The managed fields, the ownership mark and whether the domain can take hot-plugged devices.
    public static func read(_ xml: String) throws -> Reading {
        let root = try XMLTree.parse(xml, keep: managedElements)
        guard root.name == "domain" else {
            throw ParseError(description: "domain XML has no <domain> root")
        }
        guard let name = root.child("name")?.stringValue, !name.isEmpty else {
            throw ParseError(description: "domain XML has no <name>")
        }
        let memory = root.child("memory").map { kibibytes($0) } ?? 0
        let currentMemory = root.child("currentMemory").map { kibibytes($0) } ?? memory
        let vcpuElement = root.child("vcpu")
        let maxVCPUs = Int(trimmed(vcpuElement?.stringValue)) ?? 0
        let vcpus = vcpuElement?.attribute("current").flatMap { Int(trimmed($0)) } ?? maxVCPUs
        let osType = trimmed(root.child("os")?.child("type")?.stringValue)

        var interfaces: [DomainSpec.InterfaceSpec] = []
        var disks: [DomainSpec.DiskSpec] = []
        for device in root.child("devices")?.children ?? [] {
            switch device.name {
            case "interface":
                let mac = asciiLowercased(device.child("mac")?.attribute("address") ?? "")
                let source = device.child("source")
                let attachment: String
                switch device.attribute("type") {
                case "bridge": attachment = source?.attribute("bridge") ?? ""
                case "network": attachment = "network:" + (source?.attribute("network") ?? "")
                case let other: attachment = other ?? "unknown"
                }
                interfaces.append(.init(mac: mac, bridge: attachment))
            case "disk":
                let source = device.child("source")
                if let kind = device.attribute("device"), kind != "disk" {
                    // virtform attaches no CD-ROM or floppy: one added by hand is a difference.
                    let path = source?.attribute("file") ?? source?.attribute("dev") ?? source?.attribute("name") ?? "empty"
                    disks.append(.init(target: "\(kind):\(path)", lun: 0, portalHost: "", portalPort: 0))
                } else if device.attribute("type") == "network", source?.attribute("protocol") == "iscsi" {
                    let full = source?.attribute("name") ?? ""
                    let slash = full.lastIndex(of: "/")
                    let target = slash.map { String(full[..<$0]) } ?? full
                    let lun = slash.flatMap { Int(full[full.index(after: $0)...]) } ?? 0
                    let host = source?.child("host")
                    // libvirt keeps <auth> where it was given: in <source>, or (older XML) in <disk>.
                    let auth = source?.child("auth") ?? device.child("auth")
                    disks.append(.init(target: target, lun: lun, portalHost: host?.attribute("name") ?? "",
                                       portalPort: Int(host?.attribute("port") ?? "") ?? 3260,
                                       chapUsername: auth?.attribute("username"), secretUsage: auth?.child("secret")?.attribute("usage"),
                                       initiator: source?.child("initiator")?.child("iqn")?.attribute("name")))
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
                              currentMemoryKiB: currentMemory, vcpus: vcpus, maxVCPUs: maxVCPUs, interfaces: interfaces, disks: disks)
        return Reading(spec: spec, ownership: ownership(in: root), hotplug: osType != "hvm" || root.child("features")?.child("acpi") != nil)
    }

    /// One `<disk>` of a definition, as migration checks it.
    public struct Disk: Sendable, Hashable {
        /// `network`, `file`, `block`, …
        public var type: String
        /// `disk`, `cdrom`, `floppy`.
        public var device: String
        /// The guest's name for it (`vda`).
        public var target: String
        /// The driver's cache mode, when the definition names one.
        public var cache: String?
    }

    /// Every `<disk>` of a definition.
    public static func disks(in xml: String) throws -> [Disk] {
        let root = try XMLTree.parse(xml) { ancestors, name in
            switch (ancestors.count, ancestors.last ?? "", name) {
            case (1, _, "devices"), (2, "devices", "disk"), (3, "disk", "driver"), (3, "disk", "target"): true
            default: false
            }
        }
        return (root.child("devices")?.children ?? []).filter { $0.name == "disk" }.map { disk in
            Disk(type: disk.attribute("type") ?? "file", device: disk.attribute("device") ?? "disk",
                 target: disk.child("target")?.attribute("dev") ?? "?", cache: disk.child("driver")?.attribute("cache"))
        }
    }

    /// The elements `parse` reads; the scanner skips everything else unbuilt.
    private static func managedElements(_ ancestors: [String], _ name: String) -> Bool {
        switch (ancestors.count, ancestors.last ?? "", name) {
        case (1, _, "name"), (1, _, "memory"), (1, _, "currentMemory"), (1, _, "vcpu"), (1, _, "os"), (1, _, "metadata"), (1, _, "devices"),
             (1, _, "features"), (2, "features", "acpi"), (2, "os", "type"), (2, "metadata", "owner"), (2, "devices", "interface"), (2, "devices", "disk"),
             (3, "interface", "mac"), (3, "interface", "source"), (3, "disk", "source"), (3, "disk", "auth"),
             (4, "source", "host"), (4, "source", "auth"), (4, "source", "initiator"), (4, "auth", "secret"), (5, "initiator", "iqn"), (5, "auth", "secret"):
            return true
        default:
            return false
        }
    }

    private static func ownership(in root: XMLTree) -> Ownership? {
        guard let metadata = root.child("metadata") else { return nil }
        for element in metadata.children where element.name == "owner" && element.namespace == Ownership.namespace {
            guard let vm = element.attribute("vm").flatMap(VMID.init(parsing:)) else { return nil }
            var ownership = Ownership(vm: vm, digest: element.attribute("digest") ?? "",
                             deletionProtection: element.attribute("deletion-protection") == "true",
                             site: element.attribute("site").flatMap { $0.isEmpty ? nil : $0 },
                             power: element.attribute("power").flatMap(VirtualMachine.PowerState.init(rawValue:)),
                             host: element.attribute("host").flatMap { $0.isEmpty ? nil : $0 },
                             replaces: element.attribute("replaces").map { $0.split(separator: " ").map(String.init) },
                             movedAt: element.attribute("moved-at").flatMap { Int($0) })
            ownership.run = element.attribute("run").flatMap { $0.isEmpty ? nil : $0 }
            return ownership
        }
        return nil
    }

    private static func kibibytes(_ element: XMLTree) -> UInt64 {
        let value = UInt64(trimmed(element.stringValue)) ?? 0
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

    /// `text` without leading and trailing XML whitespace (Foundation's trimming costs more than
    /// the rest of reading a domain).
    private static func trimmed(_ text: String?) -> String {
        guard let text else { return "" }
        let utf8 = text.utf8
        let isSpace = { (byte: UInt8) in byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D }
        guard let first = utf8.firstIndex(where: { !isSpace($0) }), let last = utf8.lastIndex(where: { !isSpace($0) }) else { return "" }
        if first == utf8.startIndex && last == utf8.index(before: utf8.endIndex) { return text }
        return String(text[first...last])
    }

    /// MACs compare in lower case; only ASCII letters occur in one.
    private static func asciiLowercased(_ text: String) -> String {
        guard text.utf8.contains(where: { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) else { return text }
        return String(decoding: text.utf8.map { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") ? $0 + 32 : $0 }, as: UTF8.self)
    }

    static func escape(_ text: String) -> String { XMLText.escaped(text) }
}

/// A small element tree read with `XMLParser` (SAX): names, namespaces, attributes and direct
/// text, nothing else. Foundation's `XMLDocument` costs several times the time and memory, which
/// matters when a plan reads ten thousand domains.
final class XMLTree {
    typealias Attribute = (name: String, value: String)
    let name: String
    let namespace: String?
    /// In document order (by name when Foundation's parser read them). A handful per element:
    /// a list is cheaper to build and search than a dictionary.
    let attributes: [Attribute]
    var children: [XMLTree] = []
    var text = ""

    init(name: String, namespace: String?, attributes: [Attribute]) {
        self.name = name
        self.namespace = namespace
        self.attributes = attributes
    }

    func child(_ name: String) -> XMLTree? { children.first { $0.name == name } }
    func attribute(_ name: String) -> String? { attributes.first { $0.name == name }?.value }
    var stringValue: String? { text }

    /// Reads `xml` with the fast scanner, or with Foundation's parser when the scanner meets
    /// something it does not handle (and for the error message of a document that is not XML).
    static func parse(_ xml: String, keep: @escaping XMLScanner.Filter = { _, _ in true }) throws -> XMLTree {
        if let tree = XMLScanner.scan(xml, keep: keep) { return tree }
        return try parseWithFoundation(xml)
    }

    static func parseWithFoundation(_ xml: String) throws -> XMLTree {
        let parser = XMLParser(data: Data(xml.utf8))
        parser.shouldProcessNamespaces = true
        let builder = Builder()
        parser.delegate = builder
        guard parser.parse(), let root = builder.root else {
            let reason = parser.parserError.map { "\($0.localizedDescription)" } ?? "no root element"
            throw DomainXML.ParseError(description: "domain XML does not parse: \(reason)")
        }
        return root
    }

    private final class Builder: NSObject, XMLParserDelegate {
        var stack: [XMLTree] = []
        var root: XMLTree?

        func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                    qualifiedName: String?, attributes: [String: String] = [:]) {
            stack.append(XMLTree(name: elementName, namespace: namespaceURI.flatMap { $0.isEmpty ? nil : $0 },
                                 attributes: attributes.sorted { $0.key < $1.key }.map { (name: $0.key, value: $0.value) }))
        }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
            guard let element = stack.popLast() else { return }
            if let parent = stack.last { parent.children.append(element) } else { root = element }
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            stack.last?.text += string
        }

        func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
            stack.last?.text += String(decoding: CDATABlock, as: UTF8.self)
        }
    }
}
