// swift-tools-version:6.0
// virtform: a declarative reconciler for libvirt hypervisors, shared iSCSI storage and DHCP.
// See docs/architecture.md for what each target owns and how data flows between them.
import PackageDescription

let package = Package(
    name: "virtform",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "virtform", targets: ["virtform"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        // Already built for postgres-nio; SHA-256 for the salted digest a libvirt secret's
        // description keeps of its value (docs/security.md).
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        // The long-running reconcile (docs/reconcile.md): its metrics in Prometheus's text format,
        // served over HTTP by SwiftNIO (already built for postgres-nio), and its graceful shutdown.
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // System-library shims: nothing but the C headers.
        .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        .systemLibrary(name: "CLibvirt", pkgConfig: "libvirt", providers: [.apt(["libvirt-dev"])]),
        .systemLibrary(name: "CISCSI", pkgConfig: "libiscsi", providers: [.apt(["libiscsi-dev"])]),

        // Safe Swift over libvirt's C API: owned pointers, Swift errors, blocking calls off the pool.
        .target(name: "Libvirt", dependencies: ["CLibvirt", "VirtformSystem"], exclude: ["README.md"]),

        // Safe Swift over libiscsi: discovery, login, REPORT LUNS, READ CAPACITY(16); blocking calls off the pool.
        .target(name: "ISCSI", dependencies: ["CISCSI", "VirtformSystem"], exclude: ["README.md"]),

        // The pure model: objects, identities, quantities, semantic validation. No I/O.
        .target(name: "VirtformModel"),

        // YAML ⇄ model with source locations, manifest loading, the JSON Schema.
        .target(name: "VirtformManifests", dependencies: ["CYAML", "VirtformModel"]),

        // Diff, placement and the plan as data. Pure: tested without any system.
        .target(name: "VirtformPlanning", dependencies: ["VirtformModel"]),

        // The hypervisor driver: libvirt domains ⇄ the model (domain XML, ownership mark).
        .target(name: "VirtformHypervisor", dependencies: ["VirtformModel", "Libvirt", "VirtformSystem"]),

        // The action-graph walker and the per-site apply lock. Generic: no virtform types.
        .target(name: "VirtformExecution", exclude: ["README.md"]),

        // The site's shared state: the apply lock with its holder and the run journal, embedded
        // (SQLite through GRDB, with a file lock) or on PostgreSQL (advisory lock, postgres-nio).
        .target(name: "VirtformState", dependencies: [
            "VirtformExecution", "VirtformSystem",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "PostgresNIO", package: "postgres-nio"),
        ], exclude: ["README.md"]),

        // Programs, daemons, processes, files and users of this machine, for drivers and the lab.
        .target(name: "VirtformSystem"),

        // DHCP reservations kept in step with network bindings: Kea (control socket) and dnsmasq (hosts file).
        .target(name: "VirtformDHCP", dependencies: ["VirtformModel", "VirtformSystem"], exclude: ["README.md"]),
        // Storage pools (btrfs, dir, zfs) and iSCSI exports (tgt, lio) behind small driver protocols.
        .target(name: "VirtformStorage", dependencies: ["VirtformModel", "VirtformSystem", "ISCSI"], exclude: ["README.md"]),

        // Pools, exports and dnsmasq hosts files on other machines: the same drivers run there by
        // `virtform agent`, reached over OpenSSH with the request on standard input.
        .target(name: "VirtformRemote", dependencies: ["VirtformModel", "VirtformSystem", "VirtformStorage", "VirtformDHCP"], exclude: ["README.md"]),

        // The local lab: real libvirt session daemons on this machine (the `lab` command and integration tests).
        .target(name: "VirtformLab", dependencies: ["Libvirt", "VirtformSystem"], exclude: ["README.md"]),

        // Every `virtform` subcommand, as a library so each one is testable.
        .target(name: "VirtformCommands", dependencies: [
            "VirtformModel", "VirtformManifests", "VirtformPlanning", "VirtformHypervisor", "VirtformExecution", "VirtformLab",
            "VirtformStorage", "VirtformDHCP", "VirtformState", "VirtformRemote", "ISCSI", "Libvirt",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),

        // The thin executable.
        .executableTarget(name: "virtform", dependencies: ["VirtformCommands"]),

        // Benchmarks (not timed tests): `swift run -c release virtform-bench`.
        .executableTarget(name: "virtform-bench", dependencies: [
            "VirtformModel", "VirtformManifests", "VirtformPlanning", "VirtformHypervisor", "VirtformLab", "Libvirt", "VirtformDHCP",
            "VirtformStorage", "VirtformSystem", "VirtformState", "ISCSI",
        ]),

        .testTarget(name: "VirtformModelTests", dependencies: ["VirtformModel"]),
        .testTarget(name: "VirtformManifestsTests", dependencies: ["VirtformManifests", "VirtformModel"]),
        .testTarget(name: "VirtformPlanningTests", dependencies: ["VirtformPlanning", "VirtformManifests", "VirtformModel"],
                    exclude: ["Golden"]),
        .testTarget(name: "VirtformHypervisorTests", dependencies: ["VirtformHypervisor", "VirtformModel"], exclude: ["Fixtures"]),
        .testTarget(name: "VirtformExecutionTests", dependencies: ["VirtformExecution"]),
        .testTarget(name: "VirtformStateTests", dependencies: ["VirtformState", "VirtformExecution", "VirtformSystem", "VirtformLab"]),
        .testTarget(name: "VirtformSystemTests", dependencies: ["VirtformSystem"]),
        .testTarget(name: "LibvirtTests", dependencies: ["Libvirt", "VirtformSystem"]),
        .testTarget(name: "VirtformLabTests", dependencies: ["VirtformLab", "Libvirt", "VirtformModel", "VirtformSystem"]),
        .testTarget(name: "VirtformDHCPTests", dependencies: ["VirtformDHCP", "VirtformLab", "VirtformModel", "VirtformSystem"]),
        .testTarget(name: "ISCSITests", dependencies: ["ISCSI", "VirtformLab", "VirtformSystem"]),
        .testTarget(name: "VirtformStorageTests", dependencies: [
            "VirtformStorage", "VirtformModel", "VirtformSystem", "VirtformLab", "ISCSI",
        ]),
        // Depends on the executable too, so that `swift test` builds it (the killed-apply test runs it).
        .testTarget(name: "VirtformCommandsTests", dependencies: [
            "virtform", "VirtformCommands", "VirtformLab", "VirtformSystem", "Libvirt", "VirtformDHCP", "VirtformModel", "VirtformPlanning", "VirtformManifests",
            "VirtformRemote", "VirtformStorage", "VirtformHypervisor",
        ], exclude: ["Golden"]),
    ],
    swiftLanguageModes: [.v6]
)
