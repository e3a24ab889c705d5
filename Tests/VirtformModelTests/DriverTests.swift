import Testing
import VirtformModel

@Suite("Driver descriptors")
struct DriverTests {
    @Test func everyDriverAManifestCanNameHasOneDescriptor() {
        #expect(Drivers.names(.hypervisor) == Host.DomainType.allCases.map(\.rawValue))
        #expect(Drivers.names(.storagePool) == StoragePool.Driver.allCases.map(\.rawValue))
        #expect(Drivers.names(.export) == ISCSIExport.Driver.allCases.map(\.rawValue))
        #expect(Drivers.names(.dhcpServer) == DHCPServer.Driver.allCases.map(\.rawValue))
        #expect(Set(Drivers.all.map { "\($0.system)/\($0.name)" }).count == Drivers.all.count)
        // Each descriptor carries the capabilities of its kind of system, and only those.
        for descriptor in Drivers.all {
            let kinds = [descriptor.hypervisor != nil, descriptor.storage != nil, descriptor.export != nil, descriptor.dhcp != nil]
            let expected: Int = switch descriptor.system {
            case .hypervisor: 0
            case .storagePool: 1
            case .export: 2
            case .dhcpServer: 3
            }
            #expect(kinds.enumerated().allSatisfy { $0.element == ($0.offset == expected) }, "\(descriptor.system)/\(descriptor.name)")
        }
    }

    @Test func hypervisorCapabilitiesSayWhatChangesLive() {
        #expect(Drivers.descriptor(.hypervisor, "qemu")?.hypervisor?.interfaceHotplug == true)
        // libvirt's test driver has no device hot-plug (virDomainAttachDeviceFlags is unsupported).
        #expect(Drivers.descriptor(.hypervisor, "test")?.hypervisor?.interfaceHotplug == false)
        #expect(Drivers.descriptor(.hypervisor, "xen")?.standIn != nil)
    }

    @Test func aPoolIsCheckedAgainstItsDriversDescriptor() {
        var site = Site()
        site.pools = [
            StoragePool(meta: ObjectMeta(name: "z"), driver: .zfs, path: "/srv/z", provenance: .synthetic("test")),
            StoragePool(meta: ObjectMeta(name: "b"), driver: .btrfs, dataset: "tank/b", sshTarget: "root@h", provenance: .synthetic("test")),
        ]
        let messages = SiteValidator.validate(site).filter { $0.severity == .error }.map(\.message)
        #expect(messages.contains("driver zfs needs spec.dataset, the parent dataset such as tank/virtform"), "\(messages)")
        #expect(messages.contains("driver zfs does not use spec.path; use spec.dataset"), "\(messages)")
        #expect(messages.contains("driver btrfs needs spec.path, the pool's mount point or folder"), "\(messages)")
        #expect(messages.contains("driver btrfs does not use spec.dataset; use spec.path"), "\(messages)")
        // Any pool may be on another machine (spec.ssh: `virtform agent` there).
        #expect(!messages.contains { $0.contains("spec.ssh") }, "\(messages)")
    }

    @Test func storageCapabilitiesAreKnownBeforeAnyProbe() {
        #expect(Drivers.descriptor(.storagePool, "zfs")?.storage?.canImport == false)
        #expect(Drivers.descriptor(.storagePool, "btrfs")?.storage?.cloneMethod == .reflink)
        #expect(Drivers.descriptor(.storagePool, "zfs")?.standIn != nil && Drivers.descriptor(.storagePool, "btrfs")?.standIn == nil)
    }
}
