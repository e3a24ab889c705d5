import ISCSI
import VirtformModel
import VirtformPlanning
import VirtformRemote
import VirtformStorage

/// Storage pools, each with its iSCSI export server: the pool's contents, every target on the
/// server, and what the portal serves for each of virtform's targets (through libiscsi).
enum StoragePools: SystemKind {
    static func drivers(for site: Site, context: ReadContext) -> [any SystemDriver] {
        site.pools.map { PoolDriver(pool: $0, site: site.name) }
    }

    struct PoolDriver: SystemDriver {
        let pool: StoragePool
        let site: String
        var address: SystemAddress { .pool(pool.name) }

        func read(timeout: Duration) async throws -> SystemRead {
            // A pool on another machine is driven there, by `virtform agent` over ssh.
            let driver = try pool.ssh.map { try RemoteDrivers.storage(for: pool, access: $0, site: site) } ?? StorageDrivers.driver(for: pool, site: site)
            try await driver.probe()
            let observation = try await driver.observe()
            guard let export = pool.export else {
                return SystemRead(reading: .pool(PoolContents(observation: observation, targets: nil, capabilities: driver.capabilities)),
                                  session: PoolSession(name: pool.name, driver: driver, exporter: nil))
            }
            let credentials = try Secrets.credentials(pool)
            let exporter = try pool.ssh.map { RemoteDrivers.export(for: export, credentials: credentials, access: $0) }
                ?? ExportDrivers.driver(for: export, tgtControlPort: export.controlPort, credentials: credentials)
            try await exporter.probe()
            let targets = try await exporter.observe()
            let served = await Self.served(by: export, credentials: credentials,
                                           targets: targets.filter { $0.isOwned && $0.iqn.hasPrefix(export.iqnPrefix + ":") })
            return SystemRead(reading: .pool(PoolContents(observation: observation, targets: targets, served: served, capabilities: driver.capabilities)),
                              session: PoolSession(name: pool.name, driver: driver, exporter: exporter))
        }

        /// What the portal serves as LUN 1 of each target. A pool whose targets admit only named
        /// initiators is checked as the first of them (what a hypervisor logs in as), one that
        /// admits hosts by name as the first host its target admits; otherwise as virtform's own
        /// initiator name. With CHAP, the login uses the pool's accounts (a
        /// refused secret reads as "Authentication failure": the planner rotates the account).
        private static func served(by export: ISCSIExport, credentials: ExportCredentials?, targets: [ObservedTarget]) async -> [String: ServedLUN] {
            let portal = "\(export.portal.host):\(export.portal.port)"
            let chap = credentials.map {
                Initiator.CHAP(username: $0.initiator.username, password: $0.initiator.password,
                               target: $0.mutual.map { ($0.username, $0.password) })
            }
            return await withTaskGroup(of: (String, ServedLUN).self) { group in
                for target in targets {
                    // A pool that admits hosts by name is checked as a host the target admits
                    // (one that admits none is nobody's to check: the planner admits its host).
                    let name = export.admitHosts ? target.boundInitiators.first { $0.hasPrefix("iqn.") } : export.initiators.first ?? Initiator.defaultName
                    guard let name else { continue }
                    let initiator = Initiator(name: name, chap: chap)
                    group.addTask {
                        do {
                            let capacity = try await initiator.capacity(portal: portal, target: target.iqn, lun: 1)
                            return (target.iqn, .size(capacity.bytes))
                        } catch let error as ISCSIError {
                            return (target.iqn, .unreadable(error.reason))
                        } catch {
                            return (target.iqn, .unreadable("\(error)"))
                        }
                    }
                }
                return await group.reduce(into: [String: ServedLUN]()) { $0[$1.0] = $1.1 }
            }
        }
    }

    /// Projects, images, snapshots and LUNs through the pool's driver; one target per LUN
    /// through its export driver (the export server is an address of its own, changed one
    /// target at a time).
    struct PoolSession: SystemSession {
        let name: String
        let driver: any StorageDriver
        let exporter: (any ExportDriver)?
        var addresses: [SystemAddress] { exporter == nil ? [.pool(name)] : [.pool(name), .exportServer(name)] }

        func execute(_ changes: [Change], on address: SystemAddress, settings: PlanExecution.Settings) async throws {
            for change in changes {
                if address.kind == .exportServer, let exporter {
                    try await export(change, through: exporter)
                } else {
                    try await store(change)
                }
            }
        }

        private func store(_ change: Change) async throws {
            switch change.operation {
            case .createProject(let name):
                try await driver.createProject(name)
            case .deleteProject(let name):
                try await driver.deleteProject(name)
            case .createImage(let project, let name, let size, let source):
                if let source {
                    try await driver.importImage(project: project, name: name, source: source, size: size)
                } else {
                    try await driver.createImage(project: project, name: name, size: size ?? 0)
                }
            case .createSnapshot(let reference):
                try await driver.createSnapshot(reference)
            case .deleteSnapshot(let reference):
                try await driver.deleteSnapshot(reference)
            case .sealSnapshot(let reference):
                try await driver.sealSnapshot(reference)
            case .cloneVolume(let source, let project, let name, let size):
                try await driver.clone(from: source, project: project, name: name, size: size)
            case .growVolume(let project, let name, let size):
                try await driver.grow(project: project, name: name, to: size)
            case .deleteVolume(let project, let name):
                try await driver.deleteVolume(project: project, name: name)
            case .adoptMarks(let marks):
                try await driver.adopt(marks, unmarked: false)
            case .markImported(let marks):
                try await driver.adopt(marks, unmarked: true)
            case .removeHalfMade(let paths):
                try await driver.removeHalfMade(paths)
            default:
                throw CommandFailure.notFor(change, .pool(name))
            }
        }

        private func export(_ change: Change, through exporter: any ExportDriver) async throws {
            switch change.operation {
            case .exportVolume(let request):
                try await exporter.export([request])
            case .reexportVolume(let iqn, let request):
                try await exporter.unexport(iqn: iqn, force: false)
                try await exporter.export([request])
            case .unexportVolume(let iqn):
                try await exporter.unexport(iqn: iqn, force: false)
            case .secureTargets(let iqns, let rotate):
                try await exporter.secure(iqns, rotate: rotate)
            case .admitInitiators(let iqn, let add, let remove):
                try await exporter.admit(iqn: iqn, add: add, remove: remove)
            default:
                throw CommandFailure.notFor(change, .exportServer(name))
            }
        }
    }
}
