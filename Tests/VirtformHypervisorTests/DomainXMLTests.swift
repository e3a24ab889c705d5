import Testing
import VirtformHypervisor
import VirtformModel

@Suite("Domain XML")
struct DomainXMLTests {
    let spec = DomainSpec(
        name: "appl-1:vm-1", domainType: "qemu", osType: "hvm", memoryKiB: 65536, vcpus: 1,
        interfaces: [.init(mac: "02:21:2b:26:8a:e4", bridge: "fe0"), .init(mac: "02:ea:ff:ee:f1:43", bridge: "be0")],
        disks: [.init(target: "iqn.2026-11.io.virtform.lab:appl-1.vm-1", lun: 1, portalHost: "127.0.0.1", portalPort: 3260)])
    let owner = Ownership(vm: VMID(project: "appl-1", name: "vm-1"), digest: "abc", deletionProtection: true)

    @Test func rendersAndReadsBackTheSameSpec() throws {
        let xml = DomainXML.render(spec, ownership: owner)
        let (parsed, ownership) = try DomainXML.parse(xml)
        #expect(parsed == spec)
        #expect(ownership == owner)
        #expect(xml.contains("<source protocol='iscsi' name='iqn.2026-11.io.virtform.lab:appl-1.vm-1/1'>"))
    }

    @Test func vCPUsBelowTheMaximumAndHotPlugRoundTrip() throws {
        var hotpluggable = spec
        hotpluggable.maxVCPUs = 4
        let xml = DomainXML.render(hotpluggable, ownership: owner)
        #expect(xml.contains("<vcpu current='1'>4</vcpu>"))
        let reading = try DomainXML.read(xml)
        #expect(reading.spec == hotpluggable && reading.spec.maxVCPUs == 4)
        #expect(reading.hotplug, "an hvm guest is defined with ACPI, so it can take PCI devices")
        #expect(hotpluggable.digest != spec.digest)
        // libvirt's live XML once the vCPUs are all online, and a guest defined without ACPI.
        let live = try DomainXML.read("<domain type='qemu'><name>x</name><vcpu placement='static'>4</vcpu><os><type>hvm</type></os></domain>")
        #expect(live.spec.vcpus == 4 && live.spec.maxVCPUs == 4 && !live.hotplug)
        // One interface, as attached to a running guest.
        #expect(DomainXML.render(spec.interfaces[0]) == """
            <interface type='bridge'>
              <mac address='02:21:2b:26:8a:e4'/>
              <source bridge='fe0'/>
              <model type='virtio'/>
            </interface>
            """)
    }

    @Test func userModeInterfacesRoundTrip() throws {
        var userMode = spec
        userMode.interfaces = userMode.interfaces.map { .init(mac: $0.mac, bridge: DomainSpec.InterfaceSpec.userMode) }
        let xml = DomainXML.render(userMode, ownership: owner)
        #expect(xml.contains("<interface type='user'>"))
        #expect(!xml.contains("<source bridge="))
        #expect(try DomainXML.parse(xml).spec == userMode)
        #expect(try DomainXML.parse(xml).spec != spec, "a user-mode interface is not the bridged one")
    }

    /// What libvirt 9 returns for a rendered domain: defaults, controllers, addresses, a
    /// versioned machine type, seclabels. None of it may read as a difference.
    @Test func libvirtAdditionsAreNotDifferences() throws {
        let xml = """
            <domain type='qemu' id='3'>
              <name>appl-1:vm-1</name>
              <uuid>5d3f0a3e-1b9e-4a8e-9c3b-8e3f5c2b1a00</uuid>
              <metadata>
                <virtform:owner xmlns:virtform="https://virtform.io/xmlns/domain/v1" vm="appl-1/vm-1" digest="abc" deletion-protection="true"/>
              </metadata>
              <memory unit='KiB'>65536</memory>
              <currentMemory unit='KiB'>65536</currentMemory>
              <vcpu placement='static'>1</vcpu>
              <resource><partition>/machine</partition></resource>
              <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>
              <cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model></cpu>
              <clock offset='utc'/>
              <devices>
                <emulator>/usr/bin/qemu-system-x86_64</emulator>
                <disk type='network' device='disk'>
                  <driver name='qemu' type='raw' cache='none'/>
                  <source protocol='iscsi' name='iqn.2026-11.io.virtform.lab:appl-1.vm-1/1' index='1'>
                    <host name='127.0.0.1' port='3260'/>
                  </source>
                  <target dev='vda' bus='virtio'/>
                  <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
                </disk>
                <controller type='usb' index='0' model='piix3-uhci'/>
                <controller type='pci' index='0' model='pci-root'/>
                <interface type='bridge'>
                  <mac address='02:21:2B:26:8A:E4'/>
                  <source bridge='fe0'/>
                  <target dev='vnet0'/>
                  <model type='virtio'/>
                  <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
                </interface>
                <interface type='bridge'>
                  <mac address='02:ea:ff:ee:f1:43'/>
                  <source bridge='be0'/>
                  <model type='virtio'/>
                </interface>
                <serial type='pty'><target type='isa-serial' port='0'/></serial>
                <input type='mouse' bus='ps2'/>
                <memballoon model='virtio'/>
              </devices>
              <seclabel type='dynamic' model='dac' relabel='yes'/>
            </domain>
            """
        let (parsed, ownership) = try DomainXML.parse(xml)
        #expect(parsed == spec)
        #expect(ownership == owner)
    }

    @Test func memoryUnitsAreNormalized() throws {
        let xml = "<domain type='kvm'><name>a:b</name><memory unit='MiB'>64</memory><vcpu>2</vcpu><os><type>hvm</type></os></domain>"
        let (parsed, ownership) = try DomainXML.parse(xml)
        #expect(parsed.memoryKiB == 65536)
        #expect(parsed.vcpus == 2)
        #expect(ownership == nil, "a domain without the mark is not virtform's")
    }

    @Test func aDiskAttachedByHandIsADifference() throws {
        var xml = DomainXML.render(spec, ownership: owner)
        xml = xml.replacingOccurrences(of: "<serial type='pty'/>",
                                       with: "<disk type='file' device='disk'><source file='/tmp/extra.img'/><target dev='vdb'/></disk>")
        let (parsed, _) = try DomainXML.parse(xml)
        #expect(parsed.disks.count == 2)
        #expect(parsed != spec)
    }

    @Test func foreignMetadataIsNotOwnership() throws {
        let xml = """
            <domain type='kvm'><name>x:y</name><metadata><other:owner xmlns:other="https://example.com/ns" vm="x/y"/></metadata>
            <memory>1024</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>
            """
        #expect(try DomainXML.parse(xml).ownership == nil)
    }

    @Test func garbageIsAnError() {
        #expect(throws: DomainXML.ParseError.self) { try DomainXML.parse("<domain><name>") }
        #expect(throws: DomainXML.ParseError.self) { try DomainXML.parse("<network/>") }
    }

    @Test func namesAreEscaped() throws {
        var odd = spec
        odd.interfaces = [.init(mac: "02:00:00:00:00:01", bridge: "br'<0>&")]
        let (parsed, _) = try DomainXML.parse(DomainXML.render(odd, ownership: owner))
        #expect(parsed.interfaces == odd.interfaces)
    }
}
