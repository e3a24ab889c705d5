import Foundation
import VirtformModel

/// Writes a large, valid site as manifest files: hosts in clusters of 50 on odd and even
/// segments, one pool, 20 application projects, two networks, a Kea server, and VMs with one
/// binding each, spread over one file per project.
struct SiteGenerator {
    var vms: Int
    var hosts: Int
    var projects = 20
    var hostsPerCluster = 50
    /// Set for a site on real local hypervisors (libvirt's test driver): these host URIs, a
    /// `dir` pool at this path, small guests without disks, networks without DHCP.
    var lab: (uris: [String], poolPath: String)?

    private var guestMemory: String { lab == nil ? "2GiB" : "64MiB" }

    func write(to directory: URL) throws -> (files: Int, bytes: Int) {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var files: [(String, String)] = []
        let header = "apiVersion: \(manifestAPIVersion)\n"
        let clusterCount = max(1, (hosts + hostsPerCluster - 1) / hostsPerCluster)

        var text = ""
        for h in 0..<hosts {
            text += """
                ---
                \(header)kind: Host
                metadata:
                  name: host-\(h)
                  labels:
                    segment: \(h % 2 == 0 ? "even" : "odd")
                    cluster: c\(h / hostsPerCluster)
                spec:
                  uri: "\(lab?.uris[h] ?? "qemu+ssh://root@host-\(h)/system")"
                  capacity:
                    memory: \(lab == nil ? "256GiB" : "4TiB")
                    vcpus: \(lab == nil ? 64 : 4096)
                    maxGuests: \(lab == nil ? 60 : min(10_000, 2 * ((vms + hosts - 1) / hosts)))
                  bridges: [fe0, be0]
                  migrationAddress: host-\(h).example\(lab == nil ? "" : "\n  domainType: test")

                """
        }
        files.append(("hosts.yaml", text))

        text = ""
        for c in 0..<clusterCount {
            text += """
                ---
                \(header)kind: Cluster
                metadata:
                  name: c\(c)
                spec:
                  hostSelector:
                    cluster: c\(c)
                  placement:
                    policy: spread

                """
        }
        if let lab {
            text += """
                ---
                \(header)kind: StoragePool
                metadata:
                  name: pool
                spec:
                  driver: dir
                  path: \(lab.poolPath)

                """ + networks(header: header, dhcpServer: nil)
        } else {
            text += remoteSharedObjects(header: header)
        }
        for p in 0..<projects {
            text += "---\n\(header)kind: StorageProject\nmetadata:\n  name: appl-\(p)\nspec:\n  pool: pool\n"
        }
        files.append(("site.yaml", text))

        var perProject = Array(repeating: "", count: projects)
        for v in 0..<vms {
            let p = v % projects
            let address = "10.0.\(v / 250).\(v % 250 + 2)"
            perProject[p] += """
                ---
                \(header)kind: VirtualMachine
                metadata:
                  name: vm-\(v)
                spec:
                  project: appl-\(p)
                  memory: \(guestMemory)
                  vcpus: 1\(lab == nil ? "\n  disk:\n    from: masters/osol-0811@version-01" : "")
                  interfaces:
                    - network: public
                    - network: backend
                  placement:
                    cluster: c\(v % clusterCount)
                    hostSelector:
                      segment: \(v % 2 == 0 ? "even" : "odd")

                """
            guard lab == nil else { continue }  // the lab site has no DHCP server to serve bindings
            perProject[p] += """
                ---
                \(header)kind: NetworkBinding
                metadata:
                  name: vm-\(v)-public
                spec:
                  vm: appl-\(p)/vm-\(v)
                  interface: public
                  address: \(address)
                  hostname: vm-\(v)

                """
        }
        for (p, body) in perProject.enumerated() { files.append(("vms/appl-\(p).yaml", body)) }

        var bytes = 0
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("vms"), withIntermediateDirectories: true)
        for (name, body) in files {
            try body.write(to: directory.appendingPathComponent(name), atomically: false, encoding: .utf8)
            bytes += body.utf8.count
        }
        return (files.count, bytes)
    }

    /// The pool, master image, DHCP server and networks of an imaginary data centre.
    private func remoteSharedObjects(header: String) -> String {
        """
            ---
            \(header)kind: StoragePool
            metadata:
              name: pool
            spec:
              driver: btrfs
              path: /srv/pool
              export:
                driver: tgt
                portal: 127.0.0.1:3260
                iqnPrefix: iqn.2026-11.io.virtform
            ---
            \(header)kind: StorageProject
            metadata:
              name: masters
            spec:
              pool: pool
            ---
            \(header)kind: Image
            metadata:
              name: osol-0811
            spec:
              project: masters
              size: 10GiB
              snapshots: [version-01]
            ---
            \(header)kind: DHCPServer
            metadata:
              name: dhcp
            spec:
              driver: kea
              endpoints:
                - name: dhcp-a
                  controlSocket: /run/kea/a.sock
                - name: dhcp-b
                  controlSocket: /run/kea/b.sock

            """ + networks(header: header, dhcpServer: "dhcp")
    }

    /// The public (fe0) and backend (be0) networks, served by `dhcpServer` when given.
    private func networks(header: String, dhcpServer: String?) -> String {
        [("public", "fe0", "10.0.0.0/16"), ("backend", "be0", "10.1.0.0/16")].map { name, bridge, subnet in
            "---\n\(header)kind: Network\nmetadata:\n  name: \(name)\nspec:\n  bridge: \(bridge)\n  subnet: \(subnet)\n"
                + (dhcpServer.map { "  dhcpServer: \($0)\n" } ?? "")
        }.joined()
    }
}
