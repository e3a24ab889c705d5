import ISCSI
import VirtformModel
import VirtformPlanning
import VirtformStorage

/// Storage in a plan. For every pool the manifests use: projects, master images and their
/// snapshots, one LUN per VM disk (a clone of its snapshot) and one iSCSI target per LUN.
/// Observation reads the pool, the target server and — through libiscsi — what the portal
/// really serves. Changes are grouped under `StoragePool/<name>` and ordered: project → image →
/// snapshot → clone → export → domain definition; and domain deletion → unexport → LUN
/// deletion → project deletion.
enum StorageSide {
    /// What the pools the site uses hold, read at the same time as the hypervisors.
    struct Reading: Sendable {
        fileprivate var pools: [PoolReading]
    }

    static func read(site: Site) async -> Reading {
        let used = Set(site.projects.map(\.pool))
        let pools = await withTaskGroup(of: PoolReading.self) { group in
            for pool in site.pools where used.contains(pool.name) {
                group.addTask { await PoolReading.read(pool) }
            }
            return await group.reduce(into: []) { $0.append($1) }.sorted { $0.pool.name < $1.pool.name }
        }
        return Reading(pools: pools)
    }

    /// The storage changes, given what the pools hold and which domains use their LUNs.
    static func plan(_ reading: Reading, site: Site, domains: ObservedSite, options: Planner.Options) -> SidePlan {
        let readings = reading.pools
        var result = SidePlan()
        var planners: [PoolPlanner] = []
        for reading in readings {
            guard let observation = reading.observation, let driver = reading.driver else {
                result.unreachable.append(Plan.UnreachableHost(host: "StoragePool/\(reading.pool.name)", reason: reading.error ?? "no answer"))
                continue
            }
            var planner = PoolPlanner(site: site, pool: reading.pool, driver: driver, exporter: reading.exporter,
                                      observation: observation, targets: reading.targets, served: reading.served,
                                      domains: domains, options: options)
            planner.plan()
            result.changes += planner.changes
            result.problems += planner.problems
            result.fingerprints.merge(planner.fingerprints) { first, _ in first }
            planners.append(planner)
        }
        let finished = planners
        result.actions = { runnable in
            let ids = Set(runnable.map(\.resource))
            return finished.flatMap { $0.actions(for: ids) }
        }
        return result
    }
}

/// One pool as read: its objects, its export server's targets and, for each of our targets,
/// the size the portal reports (or why it could not be read).
private struct PoolReading: Sendable {
    var pool: StoragePool
    var driver: (any StorageDriver)?
    var exporter: (any ExportDriver)?
    var observation: PoolObservation?
    var targets: [ObservedTarget] = []
    var served: [String: Result<UInt64, ISCSIError>] = [:]
    var error: String?

    static func read(_ pool: StoragePool) async -> PoolReading {
        var reading = PoolReading(pool: pool)
        do {
            let driver = try StorageDrivers.driver(for: pool)
            try await driver.probe()
            reading.driver = driver
            reading.observation = try await driver.observe()
            if let export = pool.export {
                let exporter = try ExportDrivers.driver(for: export, tgtControlPort: export.controlPort)
                try await exporter.probe()
                reading.exporter = exporter
                reading.targets = try await exporter.observe()
                let portal = "\(export.portal.host):\(export.portal.port)"
                let ours = reading.targets.filter { $0.isOwned && $0.iqn.hasPrefix(export.iqnPrefix + ":") }
                reading.served = await withTaskGroup(of: Served.self) { group in
                    for target in ours {
                        group.addTask {
                            do {
                                let capacity = try await Initiator().capacity(portal: portal, target: target.iqn, lun: 1)
                                return Served(iqn: target.iqn, result: .success(capacity.bytes))
                            } catch let error as ISCSIError {
                                return Served(iqn: target.iqn, result: .failure(error))
                            } catch {
                                return Served(iqn: target.iqn, result: .failure(ISCSIError(operation: "read capacity", reason: "\(error)")))
                            }
                        }
                    }
                    return await group.reduce(into: [:]) { $0[$1.iqn] = $1.result }
                }
            }
        } catch {
            reading.error = "\(error)"
            reading.observation = nil
        }
        return reading
    }

    private struct Served: Sendable {
        var iqn: String
        var result: Result<UInt64, ISCSIError>
    }
}

/// Turns one pool's desired and observed state into changes, and changes into graph nodes.
private struct PoolPlanner {
    let site: Site
    let pool: StoragePool
    let driver: any StorageDriver
    let exporter: (any ExportDriver)?
    let observation: PoolObservation
    let targets: [ObservedTarget]
    let served: [String: Result<UInt64, ISCSIError>]
    let domains: ObservedSite
    let options: Planner.Options

    var changes: [Change] = []
    var problems: [Plan.Problem] = []
    var fingerprints: [String: String] = [:]
    /// Resource → the node that carries it out (built lazily for the runnable ones).
    private var steps: [String: Step] = [:]

    private struct Step {
        var dependsOn: [String] = []
        var beforeDefine: [VMID] = []
        var afterDelete: [VMID] = []
        var run: @Sendable () async throws -> Void
    }

    init(site: Site, pool: StoragePool, driver: any StorageDriver, exporter: (any ExportDriver)?, observation: PoolObservation,
         targets: [ObservedTarget], served: [String: Result<UInt64, ISCSIError>], domains: ObservedSite, options: Planner.Options) {
        self.site = site
        self.pool = pool
        self.driver = driver
        self.exporter = exporter
        self.observation = observation
        self.targets = targets
        self.served = served
        self.domains = domains
        self.options = options
    }

    var system: String { "StoragePool/\(pool.name)" }

    /// IQNs of the disks of every domain that stays defined after this plan (all but managed
    /// domains whose VM left the manifests and will be deleted), and of the running ones.
    private var disksInUse: (defined: Set<String>, running: Set<String>) {
        let declared = Set(site.virtualMachines.map(\.id))
        var defined = Set<String>()
        var running = Set<String>()
        for domain in domains.domains {
            let deleted = domain.ownership.map { !declared.contains($0.vm) && !$0.deletionProtection && options.allowDestroy } ?? false
            for disk in domain.spec.disks {
                if !deleted { defined.insert(disk.target) }
                if domain.state == .running { running.insert(disk.target) }
            }
        }
        return (defined, running)
    }

    private mutating func add(_ change: Change, fingerprint: String, step: Step?) {
        changes.append(change)
        fingerprints[change.resource] = fingerprint
        if let step { steps[change.resource] = step }
    }

    mutating func plan() {
        let projects = site.projects.filter { $0.pool == pool.name }
        let projectNames = Set(projects.map(\.name))
        let driver = driver
        let inUse = disksInUse

        // Projects.
        for project in projects {
            let resource = "StorageProject/\(project.name)"
            guard let seen = observation.project(project.name) else {
                let name = project.name
                add(Change(action: .create, resource: resource, host: system, reason: "declared in \(project.provenance.document.file)",
                           summary: "\(pool.driver.rawValue) project \(name)"),
                    fingerprint: Plan.absent, step: Step { try await driver.createProject(name) })
                continue
            }
            if !seen.ownership.isOwned {
                problems.append(Plan.Problem(resource: resource, message: "a project \(project.name) exists on \(pool.name) but virtform did not make it; it is left alone"))
            }
        }

        // Master images and their snapshots.
        for image in site.images where projectNames.contains(image.project) {
            let resource = "Image/\(image.uniqueName)"
            let parents = ["StorageProject/\(image.project)"].filter { steps[$0] != nil }
            let seen = observation.volume(project: image.project, name: image.meta.name)
            let (project, name, size, source) = (image.project, image.meta.name, image.size?.bytes, image.source)
            if let seen {
                if let size, seen.size < size {
                    add(Change(action: .update, resource: resource, host: system,
                               fields: [FieldChange(field: "size", before: "\(ByteSize(bytes: seen.size))", after: "\(ByteSize(bytes: size))", live: true)],
                               reason: "differs from the manifest"),
                        fingerprint: "\(seen.size)", step: Step(dependsOn: parents) { try await driver.grow(project: project, name: name, to: size) })
                } else if let size, seen.size > size {
                    problems.append(Plan.Problem(resource: resource, message: "the image holds \(ByteSize(bytes: seen.size)); the manifest says \(ByteSize(bytes: size)), and virtform never shrinks a volume"))
                }
            } else {
                let how = source.map { "imported from \($0)" } ?? "blank"
                add(Change(action: .create, resource: resource, host: system, reason: "declared in \(image.provenance.document.file)",
                           summary: "\(how), \(size.map { "\(ByteSize(bytes: $0))" } ?? "its source's size")"),
                    fingerprint: Plan.absent,
                    step: Step(dependsOn: parents) {
                        if let source {
                            try await driver.importImage(project: project, name: name, source: source, size: size)
                        } else {
                            try await driver.createImage(project: project, name: name, size: size ?? 0)
                        }
                    })
            }
            let imageIQN = exporter?.iqn(project: image.project, volume: image.meta.name)
            for snapshotName in image.snapshots {
                let reference = SnapshotReference(project: image.project, image: image.meta.name, snapshot: snapshotName)
                guard observation.snapshot(reference) == nil else { continue }
                let snapshotResource = "Snapshot/\(reference)"
                let running = imageIQN.map { inUse.running.contains($0) } ?? false
                add(Change(action: .create, resource: snapshotResource, host: system, reason: "declared in \(image.provenance.document.file)",
                           blocked: running ? "a running guest uses \(image.uniqueName); snapshot it when the guest has shut down" : nil,
                           summary: "read-only snapshot of \(image.uniqueName)"),
                    fingerprint: Plan.absent,
                    step: Step(dependsOn: [resource].filter { steps[$0] != nil }) { try await driver.createSnapshot(reference) })
            }
        }

        // One LUN per VM disk, and its export.
        var wanted = Set<String>()
        var wantedTargets = Set<String>()
        for vm in site.virtualMachines where projectNames.contains(vm.project) {
            guard let disk = vm.disk else { continue }
            wanted.insert("\(vm.project)/\(vm.name)")
            planVolume(vm, disk)
            if let exporter {
                let iqn = exporter.iqn(project: vm.project, volume: vm.name)
                wantedTargets.insert(iqn)
                planExport(vm, iqn: iqn, exporter: exporter, inUse: inUse)
            }
        }

        // What virtform made and the manifests no longer want.
        if let exporter {
            for target in targets where target.isOwned && target.iqn.hasPrefix(exporter.iqnPrefix + ":") && !wantedTargets.contains(target.iqn) {
                guard let (project, volume) = target.volume(prefix: exporter.iqnPrefix), projectNames.contains(project) || observation.project(project) != nil else { continue }
                let resource = "ISCSITarget/\(project)/\(volume)"
                let iqn = target.iqn
                // Connected initiators of a guest deleted in this plan are gone by the time the
                // target is removed (it waits for the deletion); tgt refuses otherwise.
                let blocked: String? = !options.allowDestroy ? "unexporting needs --allow-destroy"
                    : inUse.defined.contains(iqn) ? "a defined domain still uses \(iqn)" : nil
                add(Change(action: .delete, resource: resource, host: system, reason: "virtform exported it and no VM disk needs it any more",
                           blocked: blocked, summary: "target \(iqn) (tid \(target.tid))"),
                    fingerprint: "tid \(target.tid)",
                    step: Step(afterDelete: [VMID(project: project, name: volume)]) { try await exporter.unexport(iqn: iqn, force: false) })
            }
        }
        for project in observation.projects {
            for volume in project.volumes where volume.ownership.mark?.kind == .lun && !wanted.contains("\(project.name)/\(volume.name)") {
                let resource = "StorageVolume/\(project.name)/\(volume.name)"
                let iqn = exporter?.iqn(project: project.name, volume: volume.name)
                let blocked: String? = !options.allowDestroy ? "deleting a LUN needs --allow-destroy"
                    : iqn.map { inUse.defined.contains($0) } == true ? "a defined domain still uses it" : nil
                let (projectName, volumeName) = (project.name, volume.name)
                add(Change(action: .delete, resource: resource, host: system, reason: "virtform cloned it and no VM disk needs it any more",
                           blocked: blocked, summary: "\(ByteSize(bytes: volume.size)) LUN\(volume.origin.map { " cloned from \($0)" } ?? "")"),
                    fingerprint: "\(volume.size)|\(volume.origin?.description ?? "")",
                    step: Step(dependsOn: ["ISCSITarget/\(project.name)/\(volume.name)"].filter { steps[$0] != nil },
                               afterDelete: [VMID(project: project.name, name: volume.name)]) {
                        try await driver.deleteVolume(project: projectName, name: volumeName)
                    })
            }
        }
        for project in observation.projects where project.ownership.isOwned && !projectNames.contains(project.name) {
            let resource = "StorageProject/\(project.name)"
            let name = project.name
            let contents = project.volumes.count + project.snapshots.count
            add(Change(action: .delete, resource: resource, host: system, reason: "virtform made it and it is no longer in the manifests",
                       blocked: options.allowDestroy ? nil : "deleting a project\(contents > 0 ? " with \(contents) volumes and snapshots" : "") needs --allow-destroy",
                       summary: "project \(name)"),
                fingerprint: "\(contents)",
                step: Step(dependsOn: steps.keys.filter { $0.hasPrefix("StorageVolume/\(name)/") }.sorted()) { try await driver.deleteProject(name) })
        }
    }

    private mutating func planVolume(_ vm: VirtualMachine, _ disk: VirtualMachine.Disk) {
        let driver = driver
        let resource = "StorageVolume/\(vm.project)/\(vm.name)"
        let source = disk.source
        let snapshotSize = observation.snapshot(source)?.size
            ?? site.images.first { $0.project == source.project && $0.meta.name == source.image }?.size?.bytes
        let size = disk.size?.bytes ?? snapshotSize
        let (project, name) = (vm.project, vm.name)
        guard let seen = observation.volume(project: vm.project, name: vm.name) else {
            let parents = ["StorageProject/\(vm.project)", "Snapshot/\(source)", "Image/\(source.project)/\(source.image)"].filter { steps[$0] != nil }
            let method = observation.cloneMethod.map { $0 == .sparseCopy ? "sparse copy (no reflinks on this filesystem)" : $0.rawValue } ?? "clone"
            add(Change(action: .create, resource: resource, host: system, reason: "disk of VirtualMachine/\(vm.id)",
                       summary: "\(size.map { "\(ByteSize(bytes: $0)) " } ?? "")LUN, \(method) of \(source)"),
                fingerprint: Plan.absent,
                step: Step(dependsOn: parents, beforeDefine: [vm.id]) {
                    try await driver.clone(from: source, project: project, name: name, size: disk.size?.bytes)
                })
            return
        }
        guard seen.ownership.isOwned else {
            problems.append(Plan.Problem(resource: resource, message: "\(vm.project)/\(vm.name) exists on \(pool.name) but virtform did not make it; it is left alone"))
            return
        }
        if let origin = seen.origin, origin != source {
            add(Change(action: .update, resource: resource, host: system,
                       fields: [FieldChange(field: "origin", before: origin.description, after: source.description, live: false)],
                       reason: "differs from the manifest",
                       blocked: "a clone cannot change its origin; remove the VM's disk (or the VM) and apply, then add it back"),
                fingerprint: "\(seen.size)|\(origin)", step: nil)
        } else if let size, seen.size < size {
            add(Change(action: .update, resource: resource, host: system,
                       fields: [FieldChange(field: "size", before: "\(ByteSize(bytes: seen.size))", after: "\(ByteSize(bytes: size))", live: true)],
                       reason: "differs from the manifest"),
                fingerprint: "\(seen.size)|\(seen.origin?.description ?? "")",
                step: Step { try await driver.grow(project: project, name: name, to: size) })
        } else if let size, seen.size > size {
            problems.append(Plan.Problem(resource: resource, message: "the LUN holds \(ByteSize(bytes: seen.size)); the manifest says \(ByteSize(bytes: size)), and virtform never shrinks a LUN"))
        }
    }

    private mutating func planExport(_ vm: VirtualMachine, iqn: String, exporter: any ExportDriver, inUse: (defined: Set<String>, running: Set<String>)) {
        let resource = "ISCSITarget/\(vm.project)/\(vm.name)"
        let volumeResource = "StorageVolume/\(vm.project)/\(vm.name)"
        let backing = driver.backingPath(project: vm.project, volume: vm.name)
        let request = ExportRequest(project: vm.project, volume: vm.name, backingPath: backing)
        let after = [volumeResource].filter { steps[$0] != nil }
        guard let target = targets.first(where: { $0.iqn == iqn }) else {
            add(Change(action: .create, resource: resource, host: system, reason: "disk of VirtualMachine/\(vm.id)",
                       summary: "target \(iqn), LUN 1 → \(backing)"),
                fingerprint: Plan.absent,
                step: Step(dependsOn: after, beforeDefine: [vm.id]) { try await ExportQueue.shared.run { try await exporter.export([request]) } })
            return
        }
        guard target.isOwned else {
            problems.append(Plan.Problem(resource: resource, message: "target \(iqn) exists but is not virtform's; it is left alone"))
            return
        }
        // What the portal serves must be the LUN, whole: the check a hypervisor would otherwise make at boot.
        let volumeSize = observation.volume(project: vm.project, name: vm.name)?.size
        var fields: [FieldChange] = []
        if let lun = target.luns.first(where: { $0.lun == 1 }) {
            if lun.backingPath != backing {
                fields.append(FieldChange(field: "backing", before: lun.backingPath, after: backing, live: false))
            } else if !lun.backingExists {
                // tgt still serves the deleted file it holds open, not the LUN that replaces it.
                fields.append(FieldChange(field: "backing", before: "\(backing) (deleted)", after: backing, live: false))
            }
        }
        let resizing = steps[volumeResource] != nil
        switch served[iqn] {
        case .success(let bytes) where volumeSize != nil && bytes != volumeSize! && !resizing:
            fields.append(FieldChange(field: "served size", before: "\(ByteSize(bytes: bytes))", after: "\(ByteSize(bytes: volumeSize!))", live: false))
        case .failure(let error):
            fields.append(FieldChange(field: "visible at the portal", before: "no (\(error.reason))", after: "yes", live: false))
        default:
            break
        }
        if resizing && fields.isEmpty {
            // A grown LUN is served at its old size until its target is made again.
            fields.append(FieldChange(field: "served size", before: "the old size", after: "the grown size", live: false))
        }
        guard !fields.isEmpty else { return }
        let blocked = target.connectedInitiators.isEmpty ? nil
            : "initiators are connected (\(target.connectedInitiators.joined(separator: ", "))); it is exported again when the guest has stopped"
        add(Change(action: .update, resource: resource, host: system, fields: fields, reason: "the target does not serve the LUN as it is",
                   blocked: blocked),
            fingerprint: "tid \(target.tid)",
            step: Step(dependsOn: after, beforeDefine: [vm.id]) {
                try await ExportQueue.shared.run {
                    try await exporter.unexport(iqn: iqn, force: false)
                    try await exporter.export([request])
                }
            })
    }

    /// The graph nodes for the runnable changes among this pool's.
    func actions(for runnable: Set<String>) -> [SideAction] {
        changes.filter { runnable.contains($0.resource) && $0.host == system }.compactMap { change in
            guard let step = steps[change.resource] else { return nil }
            return SideAction(id: "\(change.action.rawValue) \(change.resource)", group: system,
                              label: "\(change.action.rawValue) \(change.resource) on \(system)",
                              dependsOn: step.dependsOn.filter(runnable.contains).compactMap { dependency in
                                  changes.first { $0.resource == dependency }.map { "\($0.action.rawValue) \($0.resource)" }
                              },
                              beforeDefine: step.beforeDefine, afterDelete: step.afterDelete, run: step.run)
        }
    }
}

/// Target changes on one server are made one at a time: target ids are chosen from a listing,
/// so two exports at once could pick the same one.
private actor ExportQueue {
    static let shared = ExportQueue()
    private var tail: Task<Void, Never>?

    func run(_ body: @escaping @Sendable () async throws -> Void) async throws {
        let previous = tail
        let task = Task<Result<Void, any Error>, Never> {
            await previous?.value
            do { try await body(); return .success(()) } catch { return .failure(error) }
        }
        tail = Task { _ = await task.value }
        try await task.value.get()
    }
}
