import VirtformModel

/// The manifest language: the envelope every document shares and the `spec` of each kind.
public enum ManifestSchema {
    static let labels = Shape.stringMap(key: .labelKey, value: .labelValue)
    static let annotations = Shape.stringMap(key: .any, value: .any)
    static let names = Shape.list(.string(.name), unique: true)

    public static let metadata = ObjectShape("Identity of the object.", [
        .required("name", .string(.name), "Unique among objects of this kind (for VMs: within the project; for images: within the project)."),
        Field("labels", labels, "Labels for selection, e.g. `segment: odd`."),
        Field("annotations", annotations, "Free-form notes; never interpreted."),
    ])

    public static let envelope = ObjectShape("A virtform manifest document.", [
        .required("apiVersion", .choice([manifestAPIVersion]), "Version of the manifest language."),
        .required("kind", .choice(Kind.allCases.map(\.rawValue)), "What the document declares."),
        .required("metadata", .object(metadata), "Name, labels and annotations."),
        .required("spec", .object(ObjectShape("", [])), "The declaration itself; its fields depend on the kind."),
    ])

    /// The `spec` of each kind.
    public static func spec(of kind: Kind) -> ObjectShape {
        switch kind {
        case .site: return site
        case .host: return host
        case .cluster: return cluster
        case .storagePool: return storagePool
        case .storageProject: return storageProject
        case .image: return image
        case .network: return network
        case .dhcpServer: return dhcpServer
        case .virtualMachine: return virtualMachine
        case .networkBinding: return networkBinding
        }
    }

    static let site = ObjectShape("The site: its name is carried in every ownership mark, and a site changes only what carries its name. One per site; without one the site is called default.", [
        Field("description", .string(.any), "What the site is, for people."),
        Field("backend", .string(.stateBackend), "Where the apply lock and the run history live: file:DIR (a directory of this machine, relative to this file; SQLite) or postgres://user@host:port/database (shared; the password from PGPASSWORD, never here). Default: /var/lib/virtform for root, else $XDG_STATE_HOME/virtform."),
        Field("reconcile", .choice(ReconcileMode.allCases.map(\.rawValue)), "What virtform reconcile may do by itself: observe (report only; the default), repair (undo changes made outside virtform, restart HA guests of a fenced host) or full (everything apply would do with the loop's allowances). A VM's spec.reconcile overrides it."),
    ])

    static let host = ObjectShape("One hypervisor.", [
        .required("uri", .string(.uri), "libvirt connection URI, e.g. qemu+ssh://root@vm-host1/system."),
        .required("capacity", .object(ObjectShape("What the host may give to guests.", [
            .required("memory", .byteSize, "Memory for guests (excluding the host's own)."),
            .required("vcpus", .integer(1...4096), "Virtual CPUs for guests."),
            Field("maxGuests", .integer(1...10_000), "Most guests the host may run at once."),
        ])), "What the host may give to guests."),
        Field("bridges", names, "Bridge names the host offers to guests, e.g. [fe0, be0]."),
        Field("migrationAddress", .string(.hostname), "Address for live-migration traffic to this host (IP or host name)."),
        Field("maintenance", .boolean, "In maintenance the host takes no new guests. Default false."),
        Field("domainType", .choice(Drivers.names(.hypervisor)), "libvirt domain type, kvm by default: " + Drivers.describe(.hypervisor)),
        Field("guestNetworking", .choice(Host.GuestNetworking.allCases.map(\.rawValue)), "How guest interfaces reach their network: bridge (default) or user-mode (QEMU user-mode networking, for unprivileged hypervisors such as the local lab)."),
        Field("fence", .object(ObjectShape("How to power the host off for certain when it cannot be read.", [
            .required("command", .list(.string(.any), minItems: 1), "The program and its arguments, run on the machine virtform runs on (no shell), e.g. [ipmitool, -H, bmc-h1, chassis, power, off]; exit 0 means the host is off."),
        ])), "Fencing, for HA restarts of the host's guests elsewhere."),
        Field("initiatorName", .string(.any), "The iSCSI initiator name its guests' disks log in as (a pool with initiators must list it). Default: the first name the pool admits, or QEMU's own."),
        Field("ssh", .object(ObjectShape("The SSH client's files for an ssh URI (qemu+libssh:// or qemu+ssh://).", [
            Field("identity", .string(.filePath), "The private key to log in with (absolute, or relative to this file)."),
            Field("knownHosts", .string(.filePath), "The known_hosts file the host's key must be in; an unknown or changed key is an error. qemu+libssh only: the OpenSSH program (qemu+ssh) reads its user's ~/.ssh/known_hosts and ssh_config."),
        ])), "How virtform's SSH client reaches the host."),
    ])

    static let cluster = ObjectShape("Hosts that share storage and network names.", exactlyOne: [["hosts", "hostSelector"]], [
        Field("hosts", .list(.string(.name), minItems: 1, unique: true), "Member hosts by name."),
        Field("hostSelector", labels, "Member hosts by labels (all must match)."),
        .required("placement", .object(ObjectShape("How guests are placed on members.", [
            .required("policy", .choice(["pack", "spread"]), "pack: fill a host up to maxGuestsPerHost first; spread: least-loaded host."),
            Field("maxGuestsPerHost", .integer(1...10_000), "For pack: guests per host before the next is used."),
        ])), "Placement policy."),
        Field("rebalance", .object(ObjectShape("Moving running guests to even out load (live migration).", [
            Field("mode", .choice(Rebalance.Mode.allCases.map(\.rawValue)), "off (default), manual (planned, applied on request) or automatic."),
            Field("thresholdPercent", .integer(1...100), "Rebalance when memory use differs by more than this. Default 20."),
            Field("maxMigrationsPerRun", .integer(1...1_000), "Most live migrations in one apply. Default 1."),
            Field("cooldownSeconds", .integer(0...604_800), "A guest moved is not moved again by rebalancing for this long. Default 3600."),
        ])), "Rebalancing settings."),
        Field("rules", .list(.object(ObjectShape("Affinity or anti-affinity between the cluster's VMs, by labels.",
                                                  exactlyOne: [["affinity", "antiAffinity"]], [
            .required("name", .string(.name), "The rule's name, shown when it keeps a VM off a host."),
            Field("affinity", labels, "VMs whose labels match are kept on one host."),
            Field("antiAffinity", labels, "No two VMs whose labels match share a host."),
        ])), unique: false), "Placement rules."),
        Field("migration", .object(ObjectShape("How live migrations are bounded.", [
            Field("maxPerHost", .integer(1...64), "Outbound migrations at once from one host. Default 2."),
            Field("maxInCluster", .integer(1...1_000), "Migrations at once in the cluster. Default 5."),
            Field("secondsPerGiB", .integer(1...86_400), "A migration is aborted after this many seconds per GiB of guest memory. Default 150."),
            Field("noProgressSeconds", .integer(1...86_400), "A migration is aborted when the data left to send has not shrunk for this long. Default 150."),
            Field("bandwidthMiBps", .integer(1...1_000_000), "A cap on each migration's bandwidth in MiB/s. Default: none."),
        ])), "Live-migration limits."),
        Field("ha", .object(ObjectShape("Restarting guests of a failed host elsewhere.", [
            Field("enabled", .boolean, "Default false."),
            Field("hostFailuresToTolerate", .integer(1...64), "Host failures to keep room for. Default 1."),
        ])), "High-availability settings."),
    ])

    static let storagePool = ObjectShape("A storage system that holds projects and LUNs.", [
        .required("driver", .choice(Drivers.names(.storagePool)), Drivers.describe(.storagePool)),
        Field("path", .string(.absolutePath), "btrfs/dir: the pool's mount point or folder."),
        Field("dataset", .string(.any), "zfs: the parent dataset, e.g. tank/virtform."),
        Field("ssh", sshAccess, "The storage machine, when it is not this one: its pool and export are driven there by `virtform agent` over ssh. Local when absent."),
        Field("export", .object(ObjectShape("iSCSI export of the pool's LUNs.", [
            .required("driver", .choice(Drivers.names(.export)), Drivers.describe(.export)),
            .required("portal", .string(.hostPort), "address:port of the iSCSI portal."),
            .required("iqnPrefix", .string(.iqnPrefix), "Targets are named <iqnPrefix>:<project>.<lun>."),
            Field("initiators", .list(.string(.any), unique: true), "Initiator IQNs allowed to log in; all when absent."),
            Field("controlPort", .integer(0...65535), "tgt: the local tgtd instance that manages the targets (tgtadm -C N). Default 0."),
            Field("admitHosts", .boolean, "Each target admits only the initiatorName of the host that runs its guest (and, during a migration, of its destination), instead of initiators. Every host needs spec.initiatorName. Default false."),
            Field("chap", .object(ObjectShape("CHAP: hypervisors log in to every target with this account.", [
                .required("username", .string(.any), "The account's name."),
                .required("secretRef", secretRef, "Where its secret is read from; never the secret itself."),
                Field("mutual", .object(ObjectShape("Mutual CHAP: the account the target answers with.", [
                    .required("username", .string(.any), "The target's account name."),
                    .required("secretRef", secretRef, "Where its secret is read from."),
                ])), "The target proves itself to the hypervisors too."),
            ])), "CHAP authentication for the pool's targets."),
        ])), "How LUNs are exported."),
    ])

    static let storageProject = ObjectShape("A folder of LUNs on a pool.", [
        .required("pool", .string(.name), "The StoragePool it lives on."),
        Field("quota", .byteSize, "Most space the project may use."),
    ])

    static let image = ObjectShape("A master image LUN and its snapshots.", [
        .required("project", .string(.name), "The StorageProject holding it, e.g. masters."),
        Field("size", .byteSize, "Size of the LUN (an empty one when there is no source)."),
        Field("source", .string(.absolutePath), "A raw image file imported as the LUN's content."),
        Field("snapshots", names, "Read-only snapshots to keep, e.g. [version-01]."),
    ])

    static let network = ObjectShape("A logical network.", [
        .required("bridge", .string(.name), "The bridge every host offers for it, e.g. fe0."),
        .required("subnet", .string(.subnet), "IPv4 subnet, e.g. 192.168.76.0/24."),
        Field("gateway", .string(.ipv4), "Default gateway handed out by DHCP."),
        Field("dhcpServer", .string(.name), "The DHCPServer serving this network's bindings."),
    ])

    /// A secret's source: an environment variable or a file, exactly one.
    static let secretRef = Shape.object(ObjectShape("Where a secret comes from (exactly one of env, file); the value never appears in a manifest, plan or output.", exactlyOne: [["env", "file"]], [
        Field("env", .string(.any), "The environment variable holding it."),
        Field("file", .string(.filePath), "The file holding it (its first line; absolute, or relative to this file)."),
    ]))

    /// How virtform reaches another machine to run `virtform agent` there.
    static let sshAccess = Shape.object(ObjectShape("Another machine, reached with OpenSSH's client; the request goes to `virtform agent` there on its standard input.", [
        .required("target", .string(.any), "user@host."),
        Field("port", .integer(1...65535), "Default 22."),
        Field("identity", .string(.filePath), "The private key to log in with (absolute, or relative to this file)."),
        Field("knownHosts", .string(.filePath), "The known_hosts file the machine's key must be in; an unknown or changed key is an error."),
        Field("agent", .string(.any), "The program run there. Default virtform (an authorized_keys command= may force it)."),
    ]))

    static let dhcpServer = ObjectShape("One DHCP server, or an HA pair.", [
        .required("driver", .choice(Drivers.names(.dhcpServer)), Drivers.describe(.dhcpServer)),
        .required("endpoints", .list(.object(ObjectShape("How to reach one server.", [
            .required("name", .string(.name), "Name of this peer."),
            Field("controlSocket", .string(.absolutePath), "kea: path of the unix control socket."),
            Field("url", .string(.uri), "kea: URL of the control agent."),
            Field("hostsFile", .string(.absolutePath), "dnsmasq: its --dhcp-hostsfile."),
            Field("pidFile", .string(.absolutePath), "dnsmasq: its pid file, to signal a reload."),
        ])), minItems: 1, maxItems: 2), "One endpoint, or two for an HA pair."),
        Field("ssh", sshAccess, "dnsmasq: the machine holding the hosts file, when it is not this one (`virtform agent` over ssh edits it and signals dnsmasq there)."),
    ])

    static let virtualMachine = ObjectShape("A guest; its libvirt domain is named project:name.", [
        .required("project", .string(.name), "The StorageProject it belongs to, e.g. appl-1."),
        Field("type", .choice(VirtualMachine.VirtualizationType.allCases.map(\.rawValue)), "hvm (default) or pv."),
        .required("memory", .byteSize, "Memory, e.g. 1024 (MiB) or 1GiB."),
        .required("vcpus", .integer(1...512), "Virtual CPUs."),
        Field("maxVcpus", .integer(1...512), "The most vCPUs the running guest can be given without a restart (raised vcpus are hot-plugged up to it); default: vcpus."),
        Field("disk", .object(ObjectShape("The boot disk, cloned from a master snapshot.", [
            .required("from", .string(.snapshotReference), "project/image@snapshot, e.g. masters/osol-0811@version-01."),
            Field("size", .byteSize, "Grow the clone to this size."),
        ])), "Boot disk; a VM without one boots from the network."),
        Field("interfaces", .list(.object(ObjectShape("A network interface.", [
            Field("name", .string(.name), "Unique in the VM; defaults to the network's name."),
            .required("network", .string(.name), "The Network it is on."),
            Field("mac", .string(.mac), "Fixed MAC; derived from project, VM and interface when absent."),
        ]))), "Network interfaces."),
        .required("placement", .object(ObjectShape("Where the VM may run.", exactlyOne: [["host", "cluster"]], [
            Field("host", .string(.name), "Pin to this host."),
            Field("cluster", .string(.name), "Any suitable host of this cluster."),
            Field("hostSelector", labels, "With cluster: only hosts with these labels, e.g. segment: odd."),
        ])), "A host, or a cluster with constraints."),
        Field("power", .choice(VirtualMachine.PowerState.allCases.map(\.rawValue)), "running (default) or stopped."),
        Field("deletionProtection", .boolean, "Never delete this VM, even with --allow-destroy. Default false."),
        Field("allowRestart", .boolean, "Restart the running guest when a change cannot be made live, as --allow-restart does for every VM. Default false."),
        Field("ha", .choice(VirtualMachine.HAPolicy.allCases.map(\.rawValue)), "restart: when its host cannot be read and has been fenced (or --confirm-host-down names it), start the guest on another host of its cluster. Default none."),
        Field("reconcile", .choice(ReconcileMode.allCases.map(\.rawValue)), "What virtform reconcile may do for this VM by itself: observe, repair or full (see Site spec.reconcile). Default: the site's."),
    ])

    static let networkBinding = ObjectShape("A VM interface bound to an address and host name in DHCP.", [
        .required("vm", .string(.vmReference), "The VM as project/name."),
        .required("interface", .string(.name), "The VM interface's name."),
        .required("address", .string(.ipv4), "IPv4 address inside the interface's network."),
        .required("hostname", .string(.hostname), "Host name handed out with the address."),
    ])
}
