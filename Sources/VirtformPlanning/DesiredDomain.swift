import VirtformModel

extension DomainSpec {
    /// The domain a VM should have on `host`.
    ///
    /// Interfaces use the bridge of their network (or user-mode networking where the host says so); the disk is the VM's clone, exported as
    /// `<iqnPrefix>:<project>.<vm>` LUN 1 on its pool's portal.
    public static func desired(for vm: VirtualMachine, on host: Host, index: SiteIndex) -> DomainSpec {
        let interfaces = vm.interfaces.map { interface in
            InterfaceSpec(mac: vm.mac(of: interface).description,
                          bridge: host.guestNetworking == .userMode
                            ? InterfaceSpec.userMode : index.networks[interface.network]?.bridge ?? interface.network)
        }
        var disks: [DiskSpec] = []
        if vm.disk != nil, let export = index.projects[vm.project].flatMap({ index.pools[$0.pool] })?.export {
            // CHAP: the account and the host's libvirt secret of it; the host's own initiator
            // name when it has one (else QEMU's own, as before).
            disks.append(DiskSpec(target: "\(export.iqnPrefix):\(vm.project).\(vm.name)", lun: 1,
                                  portalHost: export.portal.host, portalPort: export.portal.port,
                                  chapUsername: export.chap?.initiator.username, secretUsage: export.chap.map { _ in export.secretUsage },
                                  initiator: host.initiatorName))
        }
        return DomainSpec(name: vm.id.domainName, domainType: host.domainType.rawValue,
                          osType: vm.type == .pv ? "linux" : "hvm", memoryKiB: vm.memory.kibibytes, vcpus: vm.vcpus,
                          maxVCPUs: vm.maxVCPUs, interfaces: interfaces, disks: disks)
    }
}
