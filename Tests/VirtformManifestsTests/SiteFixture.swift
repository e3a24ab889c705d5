import Foundation

/// A small valid site that table tests extend with one broken document at a time.
enum SiteFixture {
    static let base = """
        apiVersion: virtform.io/v1alpha1
        kind: Site
        metadata: {name: fixture}
        spec: {}
        ---
        apiVersion: virtform.io/v1alpha1
        kind: Host
        metadata: {name: h1, labels: {segment: odd}}
        spec:
          uri: qemu:///system
          capacity: {memory: 4GiB, vcpus: 4, maxGuests: 2}
          bridges: [fe0, be0]
        ---
        apiVersion: virtform.io/v1alpha1
        kind: Host
        metadata: {name: h2, labels: {segment: even}}
        spec:
          uri: qemu+ssh://root@h2/system
          capacity: {memory: 8GiB, vcpus: 8}
          bridges: [fe0, be0]
        ---
        apiVersion: virtform.io/v1alpha1
        kind: Cluster
        metadata: {name: c1}
        spec:
          hosts: [h1, h2]
          placement: {policy: spread}
        ---
        apiVersion: virtform.io/v1alpha1
        kind: StoragePool
        metadata: {name: pool}
        spec:
          driver: btrfs
          path: /srv/pool
          export: {driver: tgt, portal: "127.0.0.1:3260", iqnPrefix: iqn.2026-11.io.virtform}
        ---
        apiVersion: virtform.io/v1alpha1
        kind: StorageProject
        metadata: {name: masters}
        spec: {pool: pool}
        ---
        apiVersion: virtform.io/v1alpha1
        kind: StorageProject
        metadata: {name: appl-1}
        spec: {pool: pool}
        ---
        apiVersion: virtform.io/v1alpha1
        kind: Image
        metadata: {name: osol}
        spec: {project: masters, size: 1GiB, snapshots: [version-01]}
        ---
        apiVersion: virtform.io/v1alpha1
        kind: DHCPServer
        metadata: {name: dhcp}
        spec:
          driver: kea
          endpoints: [{name: a, controlSocket: /run/kea.sock}]
        ---
        apiVersion: virtform.io/v1alpha1
        kind: Network
        metadata: {name: public}
        spec: {bridge: fe0, subnet: 192.168.76.0/24, gateway: 192.168.76.1, dhcpServer: dhcp}
        ---
        apiVersion: virtform.io/v1alpha1
        kind: Network
        metadata: {name: backend}
        spec: {bridge: be0, subnet: 192.168.78.0/24, dhcpServer: dhcp}
        ---
        apiVersion: virtform.io/v1alpha1
        kind: VirtualMachine
        metadata: {name: vm-1}
        spec:
          project: appl-1
          memory: 1024
          vcpus: 1
          disk: {from: masters/osol@version-01}
          interfaces:
            - {network: public, mac: "52:54:00:00:00:01"}
            - {network: backend}
          placement: {cluster: c1, hostSelector: {segment: odd}}
        ---
        apiVersion: virtform.io/v1alpha1
        kind: NetworkBinding
        metadata: {name: vm-1-public}
        spec: {vm: appl-1/vm-1, interface: public, address: 192.168.76.71, hostname: vm-host1}

        """

    /// The repository's root, for tests that read `manifests/` and `examples/`.
    static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}
