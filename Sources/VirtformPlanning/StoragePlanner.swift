import VirtformModel

/// What the storage planner needs to know from the rest of the site.
struct StorageContext {
    /// IQNs of the disks of every domain that stays defined after this plan.
    var definedDisks: Set<String>
    /// IQNs of the disks of running domains.
    var runningDisks: Set<String>
    /// Why nothing the VM uses may be deleted now (protection, a host that could not be read);
    /// nil when it may.
    var deletionGuard: (VMID) -> String?
    /// VMs whose domain is defined somewhere: a missing LUN of theirs held data.
    var definedVMs: Set<VMID>
    var options: Planner.Options
    /// Where each VM's guest is and goes, for pools that admit hosts by name.
    var admission: [VMID: Admission] = [:]
    /// Whether some host could not be read (a guest of unknown whereabouts may run there).
    var anyHostUnreachable = false
    /// Each host's `initiatorName`, where it has one.
    var initiatorNames: [String: String] = [:]
}

/// The hosts whose initiator names a VM's target admits: `before` while this plan runs (its
/// host, and its destination when it moves), `after` once it has (`move` is the id of the move).
struct Admission {
    var before: Set<String>
    var after: Set<String>
    var move: String?
}

/// Turns one pool's desired and observed state into changes: projects, master images and their
/// snapshots, one LUN per VM disk (a clone of its snapshot) and one iSCSI target per LUN.
/// Dependencies inside storage are decided here: project → image → snapshot → clone → export;
/// target deletion → LUN deletion → snapshot → image → project deletion.
struct StoragePlanner {
    let site: Site
    let pool: StoragePool
    let contents: PoolContents
    let context: StorageContext
    /// Resource → the site its mark names (nil: an earlier virtform's), for objects of other sites.
    let foreign: [String: String?]

    private(set) var changes: [Change] = []
    private(set) var problems: [Plan.Problem] = []
    /// CHAP: owned targets that lack the pool's accounts, and those whose portal refused the
    /// secrets (they were rotated in the manifest's source, or changed on the server).
    private var chapUnbound: [String] = []
    private var chapRefused: [String] = []
    private(set) var fingerprints: [String: String] = [:]
    /// Resource → id of the change planned for it.
    private var planned: [String: String] = [:]

    init(site: Site, pool: StoragePool, contents: PoolContents, context: StorageContext, foreign: [Plan.ForeignObject] = []) {
        self.foreign = Dictionary(foreign.map { ($0.resource, $0.site) }, uniquingKeysWith: { first, _ in first })
        self.site = site
        self.pool = pool
        self.contents = contents
        self.context = context
    }

    private var observation: PoolObservation { contents.observation }
    private var system: SystemAddress { .pool(pool.name) }
    private var exportSystem: SystemAddress { .exportServer(pool.name) }
    private var options: Planner.Options { context.options }

    private func ids(_ resources: [String]) -> [String] { resources.compactMap { planned[$0] } }

    /// Why an object the manifests want is left alone: whose it is.
    private func whose(_ resource: String) -> String {
        switch foreign[resource] {
        case .some(.some(let other)): "site \(other) owns it"
        case .some(.none): "an earlier virtform marked it without a site, and its project is not declared here"
        case .none: "virtform did not make it"
        }
    }

    private mutating func add(_ change: Change, fingerprint: String, after resources: [String] = []) {
        var change = change
        change.dependsOn = ids(resources)
        changes.append(change)
        fingerprints[change.resource] = fingerprint
        planned[change.resource] = change.id
    }

    mutating func plan() {
        let projects = site.projects.filter { $0.pool == pool.name }
        let projectNames = Set(projects.map(\.name))
        // What an interrupted apply of this site left under temporary names goes first; a
        // project is deleted only after it. Other sites' are theirs to remove.
        let halfMade = observation.halfMade.filter { $0.site == site.name }.map(\.path)
        if !halfMade.isEmpty {
            add(Change(action: .delete, resource: "HalfMade/\(pool.name)", system: system, operation: .removeHalfMade(paths: halfMade),
                       reason: "an apply of this site stopped while making them (or is making them now); they never became objects",
                       summary: "\(halfMade.count) temporar\(halfMade.count == 1 ? "y" : "ies"): \(halfMade.prefix(4).joined(separator: ", "))\(halfMade.count > 4 ? ", …" : "")"),
                fingerprint: halfMade.joined(separator: ","))
        }
        defer {
            if let id = planned["HalfMade/\(pool.name)"] {
                for i in changes.indices {
                    if case .deleteProject = changes[i].operation { changes[i].dependsOn.append(id) }
                }
            }
        }

        for project in projects {
            let resource = "StorageProject/\(project.name)"
            guard let seen = observation.project(project.name) else {
                add(Change(action: .create, resource: resource, system: system, operation: .createProject(name: project.name),
                           after: ResourceState(project: .init(name: project.name)),
                           reason: "declared in \(project.provenance.document.file)", summary: "\(pool.driver.rawValue) project \(project.name)"),
                    fingerprint: Plan.absent)
                continue
            }
            if !seen.ownership.isOwned {
                problems.append(Plan.Problem(resource: resource, message: "a project \(project.name) exists on \(pool.name) but \(whose(resource)); it is left alone"))
            }
        }

        planImages(projectNames: projectNames)

        var wantedVolumes = Set<String>()
        var wantedTargets = Set<String>()
        for vm in site.virtualMachines where projectNames.contains(vm.project) {
            guard let disk = vm.disk else { continue }
            wantedVolumes.insert("\(vm.project)/\(vm.name)")
            planVolume(vm, disk)
            if let export = pool.export {
                let iqn = export.iqn(project: vm.project, volume: vm.name)
                wantedTargets.insert(iqn)
                planExport(vm, iqn: iqn)
            }
        }
        planCHAP()
        planLeftovers(projectNames: projectNames, wantedVolumes: wantedVolumes, wantedTargets: wantedTargets)
    }

    /// The target admits the names of the VM's hosts: the missing ones added (before the guest
    /// moves, so that it can log in from its destination), the others removed — a moving
    /// guest's old host only after the move, by a change that waits for it.
    private mutating func planAdmission(resource: String, iqn: String, target: ObservedTarget, before: Set<String>, after: Set<String>, move: String?) {
        // Names and addresses (`ALL`, an IP: an export made before it admitted hosts) alike are
        // compared; only names are ever added.
        let bound = Set(target.boundInitiators)
        let adding = before.subtracting(bound)
        // While any host could not be read, nothing is taken away: the guest may run there.
        let removing = context.anyHostUnreachable ? [] : bound.subtracting(move == nil ? after : before)
        func list(_ names: Set<String>) -> String { names.isEmpty ? "none" : names.sorted().joined(separator: ", ") }
        if !adding.isEmpty || !removing.isEmpty {
            var change = Change(action: .update, resource: resource, system: exportSystem,
                                operation: .admitInitiators(iqn: iqn, add: adding.sorted(), remove: removing.sorted()),
                                fields: [FieldChange(field: "initiators", before: list(bound), after: list(bound.union(adding).subtracting(removing)), effect: .applied)],
                                reason: move == nil ? "the target admits the host that runs its guest" : "the guest moves: its destination is admitted first")
            change.id += " (initiators)"
            add(change, fingerprint: "acl \(list(bound))")
        }
        if let move, !before.subtracting(after).isEmpty, !context.anyHostUnreachable {
            var change = Change(action: .update, resource: resource, system: exportSystem,
                                operation: .admitInitiators(iqn: iqn, add: [], remove: before.subtracting(after).sorted()),
                                fields: [FieldChange(field: "initiators", before: list(before), after: list(after), effect: .applied)],
                                reason: "the guest moved: its former host is no longer admitted")
            change.id += " after the move"
            change.dependsOn = [move]
            changes.append(change)
        }
    }

    /// One change for the pool's CHAP accounts: bound to the targets that lack them, made anew
    /// when the portal refused the secrets. Values are never shown: a rotation is "changed".
    private mutating func planCHAP() {
        guard let chap = pool.export?.chap, !(chapUnbound.isEmpty && chapRefused.isEmpty) else { return }
        let rotate = !chapRefused.isEmpty
        var fields: [FieldChange] = []
        if rotate {
            fields.append(FieldChange(field: "CHAP secret of \(chap.initiator.username)", before: Redaction.placeholder,
                                      after: "\(Redaction.placeholder), changed (from \(chap.initiator.secret))", effect: .applied))
        }
        if !chapUnbound.isEmpty {
            fields.append(FieldChange(field: "CHAP accounts bound", before: "none on \(chapUnbound.count) target(s)",
                                      after: ([chap.initiator.username] + (chap.mutual.map { ["\($0.username) (mutual)"] } ?? [])).joined(separator: ", "),
                                      effect: .applied))
        }
        let iqns = Array(Set(chapUnbound + (rotate ? chapRefused : []))).sorted()
        var change = Change(action: .update, resource: "ISCSIAccount/\(pool.name)/\(chap.initiator.username)", system: exportSystem,
                            operation: .secureTargets(iqns: iqns, rotate: rotate), fields: fields,
                            reason: rotate ? "the portal refused the CHAP secret: it was rotated" : "the pool's targets must ask for CHAP")
        change.cause = .unapplied
        add(change, fingerprint: iqns.joined(separator: ","))
    }

    // MARK: Images and snapshots

    private mutating func planImages(projectNames: Set<String>) {
        for image in site.images where projectNames.contains(image.project) {
            let resource = "Image/\(image.uniqueName)"
            let seen = observation.volume(project: image.project, name: image.meta.name)
            let (project, name, size) = (image.project, image.meta.name, image.size?.bytes)
            if let seen {
                let before = ResourceState(volume: .init(project: project, name: name, size: seen.size, source: image.source))
                if !seen.ownership.isOwned, let size, seen.size != size {
                    problems.append(Plan.Problem(resource: resource, message: "the image holds \(ByteSize(bytes: seen.size)), the manifest says \(ByteSize(bytes: size)), and \(whose(resource)); it is left alone"))
                    continue
                }
                if let size, seen.size < size {
                    add(Change(action: .update, resource: resource, system: system, operation: .growVolume(project: project, name: name, size: size),
                               before: before, after: ResourceState(volume: .init(project: project, name: name, size: size, source: image.source)),
                               fields: [FieldChange(field: "size", before: "\(ByteSize(bytes: seen.size))", after: "\(ByteSize(bytes: size))", effect: .applied)],
                               reason: "differs from the manifest"),
                        fingerprint: "\(seen.size)", after: ["StorageProject/\(project)"])
                } else if let size, seen.size > size {
                    problems.append(Plan.Problem(resource: resource, message: "the image holds \(ByteSize(bytes: seen.size)); the manifest says \(ByteSize(bytes: size)), and virtform never shrinks a volume"))
                }
            } else {
                let how = image.source.map { "imported from \($0)" } ?? "blank"
                // Known before anything runs: a driver that cannot import blocks the change here.
                let cannot = image.source != nil && !contents.capabilities.canImport
                    ? "the \(pool.driver.rawValue) driver of pool \(pool.name) cannot import images; create the master on the pool by hand, or declare it without `source`"
                    : nil
                add(Change(action: .create, resource: resource, system: system,
                           operation: .createImage(project: project, name: name, size: size, source: image.source),
                           after: ResourceState(volume: .init(project: project, name: name, size: size, source: image.source)),
                           reason: "declared in \(image.provenance.document.file)", blocked: cannot,
                           summary: "\(how), \(size.map { "\(ByteSize(bytes: $0))" } ?? "its source's size")"),
                    fingerprint: Plan.absent, after: ["StorageProject/\(project)"])
            }
            let imageIQN = pool.export?.iqn(project: image.project, volume: image.meta.name)
            for snapshotName in image.snapshots {
                let reference = SnapshotReference(project: image.project, image: image.meta.name, snapshot: snapshotName)
                if let seen = observation.snapshot(reference) {
                    if !seen.sealed && seen.ownership.isOwned {
                        add(Change(action: .update, resource: "Snapshot/\(reference)", system: system, operation: .sealSnapshot(reference: reference),
                                   before: ResourceState(snapshot: .init(reference: reference, size: seen.size)),
                                   after: ResourceState(snapshot: .init(reference: reference, size: seen.size)),
                                   fields: [FieldChange(field: "read-only", before: "no (an apply stopped before sealing it)", after: "yes", effect: .applied)],
                                   reason: "a master's snapshot must not change under its clones"),
                            fingerprint: "unsealed")
                    }
                    continue
                }
                let running = imageIQN.map { context.runningDisks.contains($0) } ?? false
                add(Change(action: .create, resource: "Snapshot/\(reference)", system: system, operation: .createSnapshot(reference: reference),
                           after: ResourceState(snapshot: .init(reference: reference, size: nil)),
                           reason: "declared in \(image.provenance.document.file)",
                           blocked: running ? "a running guest uses \(image.uniqueName); snapshot it when the guest has shut down" : nil,
                           summary: "read-only snapshot of \(image.uniqueName)"),
                    fingerprint: Plan.absent, after: [resource])
            }
        }
    }

    // MARK: LUNs and targets

    private mutating func planVolume(_ vm: VirtualMachine, _ disk: VirtualMachine.Disk) {
        let resource = "StorageVolume/\(vm.project)/\(vm.name)"
        let source = disk.source
        let snapshotSize = observation.snapshot(source)?.size
            ?? site.images.first { $0.project == source.project && $0.meta.name == source.image }?.size?.bytes
        let size = disk.size?.bytes ?? snapshotSize
        let (project, name) = (vm.project, vm.name)
        let desired = ResourceState(volume: .init(project: project, name: name, size: size, origin: source))
        guard let seen = observation.volume(project: vm.project, name: vm.name) else {
            let method = (observation.cloneMethod ?? contents.capabilities.cloneMethod).map { $0 == .sparseCopy ? "sparse copy (no reflinks on this filesystem)" : $0.rawValue } ?? "clone"
            var change = Change(action: .create, resource: resource, system: system,
                                operation: .cloneVolume(source: source, project: project, name: name, size: disk.size?.bytes),
                                after: desired, reason: "disk of VirtualMachine/\(vm.id)",
                                summary: "\(size.map { "\(ByteSize(bytes: $0)) " } ?? "")LUN, \(method) of \(source)")
            if context.definedVMs.contains(vm.id) {
                // The domain is there and its disk is not: whatever the guest wrote is gone.
                change.reason = "recreate disk from master: its data is lost (the LUN of the defined domain \(vm.id.domainName) is missing)"
                change.changeClass = .replace
                if !options.recreateLostDisks {
                    change.blocked = "the VM's LUN is gone and a new clone holds none of its data; pass --recreate-lost-disks to clone it again"
                }
            }
            add(change, fingerprint: Plan.absent, after: ["StorageProject/\(project)", "Snapshot/\(source)", "Image/\(source.project)/\(source.image)"])
            return
        }
        guard seen.ownership.isOwned else {
            if vm.meta.importedFrom != nil, foreign[resource] == nil {
                // `virtform import`: the LUN of the VM's name, which nobody marked, becomes its own.
                let mark = OwnershipMark(kind: .lun, name: "\(project)/\(name)", origin: source)
                add(Change(action: .update, resource: resource, system: system, operation: .markImported(marks: [mark]),
                           before: ResourceState(volume: .init(project: project, name: name, size: seen.size, origin: nil)), after: desired,
                           fields: [FieldChange(field: "mark", before: "none", after: "site \(site.name)'s, from \(source)", effect: .applied)],
                           reason: "import: the LUN is marked as VirtualMachine/\(vm.id)'s"),
                    fingerprint: "\(seen.size)|")
                return
            }
            problems.append(Plan.Problem(resource: resource, message: "\(vm.project)/\(vm.name) exists on \(pool.name) but \(whose(resource)); it is left alone"))
            return
        }
        let before = ResourceState(volume: .init(project: project, name: name, size: seen.size, origin: seen.origin))
        let fingerprint = "\(seen.size)|\(seen.origin?.description ?? "")"
        if let origin = seen.origin, origin != source {
            add(Change(action: .update, resource: resource, system: system, operation: .manual, before: before, after: desired,
                       fields: [FieldChange(field: "origin", before: origin.description, after: source.description, effect: .applied)],
                       reason: "differs from the manifest",
                       blocked: "a clone cannot change its origin; remove the VM's disk (or the VM) and apply, then add it back"),
                fingerprint: fingerprint)
        } else if let size, seen.size < size {
            add(Change(action: .update, resource: resource, system: system, operation: .growVolume(project: project, name: name, size: size),
                       before: before, after: desired,
                       fields: [FieldChange(field: "size", before: "\(ByteSize(bytes: seen.size))", after: "\(ByteSize(bytes: size))", effect: .applied)],
                       reason: "differs from the manifest"),
                fingerprint: fingerprint)
        } else if let size, seen.size > size {
            problems.append(Plan.Problem(resource: resource, message: "the LUN holds \(ByteSize(bytes: seen.size)); the manifest says \(ByteSize(bytes: size)), and virtform never shrinks a LUN"))
        }
    }

    private mutating func planExport(_ vm: VirtualMachine, iqn: String) {
        let resource = "ISCSITarget/\(vm.project)/\(vm.name)"
        let volumeResource = "StorageVolume/\(vm.project)/\(vm.name)"
        let backing = pool.backingPath(project: vm.project, volume: vm.name)
        // A pool that admits hosts by name: the initiator names of the VM's hosts.
        let admitting = pool.export?.admitHosts == true
        // Where the guest runs is not known (its host unread, its domain not marked yet): the
        // target's admissions stay as they are.
        let known = context.admission[vm.id]
        let admission = known ?? Admission(before: [], after: [], move: nil)
        func names(_ hosts: Set<String>) -> Set<String> { Set(hosts.compactMap { context.initiatorNames[$0] }) }
        let request = ExportRequest(project: vm.project, volume: vm.name, backingPath: backing,
                                    initiators: admitting ? names(admission.before).sorted() : nil)
        let desired = ResourceState(target: .init(iqn: iqn, backingPath: backing))
        guard let target = contents.targets?.first(where: { $0.iqn == iqn }) else {
            add(Change(action: .create, resource: resource, system: exportSystem, operation: .exportVolume(request: request), after: desired,
                       reason: "disk of VirtualMachine/\(vm.id)", summary: "target \(iqn), LUN 1 → \(backing)"),
                fingerprint: Plan.absent, after: [volumeResource])
            return
        }
        guard target.isOwned else {
            // `virtform import`: a target of the VM's name serving its LUN is owned once the LUN is marked.
            if vm.meta.importedFrom != nil, foreign[resource] == nil, target.luns.first(where: { $0.lun == 1 })?.backingPath == backing { return }
            problems.append(Plan.Problem(resource: resource, message: "target \(iqn) exists but \(foreign[resource] == nil ? "is not virtform's" : whose(resource)); it is left alone"))
            return
        }
        // What the portal serves must be the LUN, whole: the check a hypervisor would otherwise make at boot.
        let volumeSize = observation.volume(project: vm.project, name: vm.name)?.size
        let lun = target.luns.first { $0.lun == 1 }
        var fields: [FieldChange] = []
        if lun == nil {
            fields.append(FieldChange(field: "LUN 1", before: "none (half-made: an apply was interrupted while exporting it, or is exporting it now)",
                                      after: backing, effect: .applied))
        }
        if let lun {
            if lun.backingPath != backing {
                fields.append(FieldChange(field: "backing", before: lun.backingPath, after: backing, effect: .applied))
            } else if !lun.backingExists {
                // tgt still serves the deleted file it holds open, not the LUN that replaces it.
                fields.append(FieldChange(field: "backing", before: "\(backing) (deleted)", after: backing, effect: .applied))
            }
        }
        let volumeChange = changes.last { $0.resource == volumeResource }
        let resizing = volumeChange?.action == .update
        if volumeChange?.action == .create && fields.isEmpty {
            // The LUN is cloned again: the target still serves the file it held open.
            fields.append(FieldChange(field: "backing", before: "\(backing) (gone)", after: backing, effect: .applied))
        }
        if admitting, lun != nil, known != nil {
            planAdmission(resource: resource, iqn: iqn, target: target, before: names(admission.before), after: names(admission.after),
                          move: admission.move)
        }
        if let chap = pool.export?.chap, lun != nil {
            if !target.accounts.contains(chap.initiator.username) || (chap.mutual.map { target.outgoingAccount != $0.username } ?? false) {
                chapUnbound.append(iqn)
            }
        }
        switch contents.served[iqn] {
        case .size(let bytes) where volumeSize != nil && bytes != volumeSize! && !resizing:
            fields.append(FieldChange(field: "served size", before: "\(ByteSize(bytes: bytes))", after: "\(ByteSize(bytes: volumeSize!))", effect: .applied))
        case .unreadable(let reason) where pool.export?.chap != nil && reason.contains("Authentication failure"):
            // The target is fine; the secrets it holds are not the manifest's (planCHAP).
            chapRefused.append(iqn)
        case .unreadable(let reason):
            fields.append(FieldChange(field: "visible at the portal", before: "no (\(reason))", after: "yes", effect: .applied))
        default:
            break
        }
        if resizing && fields.isEmpty {
            // A grown LUN is served at its old size until its target is made again.
            fields.append(FieldChange(field: "served size", before: "the old size", after: "the grown size", effect: .applied))
        }
        guard !fields.isEmpty else { return }
        let blocked = target.connectedInitiators.isEmpty ? nil
            : "initiators are connected (\(target.connectedInitiators.joined(separator: ", "))); it is exported again when the guest has stopped"
        add(Change(action: .update, resource: resource, system: exportSystem, operation: .reexportVolume(iqn: iqn, request: request),
                   before: ResourceState(target: .init(iqn: iqn, tid: target.tid, backingPath: lun?.backingPath)), after: desired,
                   fields: fields, reason: "the target does not serve the LUN as it is", blocked: blocked),
            fingerprint: "tid \(target.tid)", after: [volumeResource])
    }

    // MARK: What virtform made and the manifests no longer want

    private mutating func planLeftovers(projectNames: Set<String>, wantedVolumes: Set<String>, wantedTargets: Set<String>) {
        let declaredImages = Set(site.images.map(\.uniqueName))
        let declaredSnapshots = Set(site.images.flatMap { image in
            image.snapshots.map { SnapshotReference(project: image.project, image: image.meta.name, snapshot: $0) }
        })
        func destroyGate(_ what: String) -> String? { options.allowDestroy ? nil : "\(what) needs --allow-destroy" }

        if let export = pool.export, let targets = contents.targets {
            for target in targets where target.isOwned && !wantedTargets.contains(target.iqn) {
                guard let (project, volume) = target.volume(prefix: export.iqnPrefix) else { continue }
                let vm = VMID(project: project, name: volume)
                let resource = "ISCSITarget/\(project)/\(volume)"
                // Connected initiators of a guest deleted in this plan are gone by the time the
                // target is removed (it waits for the deletion); tgt refuses otherwise.
                let blocked = destroyGate("unexporting") ?? context.deletionGuard(vm)
                    ?? (context.definedDisks.contains(target.iqn) ? "a defined domain still uses \(target.iqn)" : nil)
                add(Change(action: .delete, resource: resource, system: exportSystem, operation: .unexportVolume(iqn: target.iqn),
                           before: ResourceState(target: .init(iqn: target.iqn, tid: target.tid, backingPath: target.luns.first?.backingPath)),
                           reason: "virtform exported it and no VM disk needs it any more", blocked: blocked,
                           summary: "target \(target.iqn) (tid \(target.tid))"),
                    fingerprint: "tid \(target.tid)")
            }
        }

        for project in observation.projects {
            // LUNs.
            for volume in project.volumes where volume.ownership.mark?.kind == .lun && !wantedVolumes.contains("\(project.name)/\(volume.name)") {
                let vm = VMID(project: project.name, name: volume.name)
                let iqn = pool.export?.iqn(project: project.name, volume: volume.name)
                let blocked = destroyGate("deleting a LUN") ?? context.deletionGuard(vm)
                    ?? (iqn.map { context.definedDisks.contains($0) } == true ? "a defined domain still uses it" : nil)
                add(Change(action: .delete, resource: "StorageVolume/\(project.name)/\(volume.name)", system: system,
                           operation: .deleteVolume(project: project.name, name: volume.name),
                           before: ResourceState(volume: .init(project: project.name, name: volume.name, size: volume.size, origin: volume.origin)),
                           reason: "virtform cloned it and no VM disk needs it any more", blocked: blocked,
                           summary: "\(ByteSize(bytes: volume.size)) LUN\(volume.origin.map { " cloned from \($0)" } ?? "")"),
                    fingerprint: "\(volume.size)|\(volume.origin?.description ?? "")",
                    after: ["ISCSITarget/\(project.name)/\(volume.name)"])
            }
            // Snapshots: blocked while a LUN that stays was cloned from them.
            for snapshot in project.snapshots where snapshot.ownership.isOwned && !declaredSnapshots.contains(snapshot.reference) {
                let clones = observation.projects.flatMap(\.volumes).filter { $0.origin == snapshot.reference }
                let staying = clones.filter { planned["StorageVolume/\($0.project)/\($0.name)"] == nil }
                let resource = "Snapshot/\(snapshot.reference)"
                let blocked = destroyGate("deleting a snapshot")
                    ?? (staying.isEmpty ? nil : "LUNs cloned from it remain (\(staying.map { "\($0.project)/\($0.name)" }.joined(separator: ", ")))")
                add(Change(action: .delete, resource: resource, system: system, operation: .deleteSnapshot(reference: snapshot.reference),
                           before: ResourceState(snapshot: .init(reference: snapshot.reference, size: snapshot.size)),
                           reason: "virtform made it and it is no longer in the manifests", blocked: blocked,
                           summary: "read-only snapshot \(snapshot.reference)"),
                    fingerprint: "\(snapshot.size)", after: clones.map { "StorageVolume/\($0.project)/\($0.name)" })
            }
            // Images: blocked while a snapshot of theirs stays.
            for volume in project.volumes where volume.ownership.mark?.kind == .image && !declaredImages.contains("\(project.name)/\(volume.name)") {
                let snapshots = project.snapshots.filter { $0.reference.image == volume.name }
                let staying = snapshots.filter { planned["Snapshot/\($0.reference)"] == nil }
                let blocked = destroyGate("deleting an image")
                    ?? (staying.isEmpty ? nil : "snapshots of it remain (\(staying.map(\.reference.description).joined(separator: ", ")))")
                add(Change(action: .delete, resource: "Image/\(project.name)/\(volume.name)", system: system,
                           operation: .deleteVolume(project: project.name, name: volume.name),
                           before: ResourceState(volume: .init(project: project.name, name: volume.name, size: volume.size)),
                           reason: "virtform made it and it is no longer in the manifests", blocked: blocked,
                           summary: "\(ByteSize(bytes: volume.size)) master image"),
                    fingerprint: "\(volume.size)", after: snapshots.map { "Snapshot/\($0.reference)" })
            }
        }

        // Projects: blocked while anything inside stays.
        for project in observation.projects where project.ownership.isOwned && !projectNames.contains(project.name) {
            let inside = project.volumes.map { ($0.ownership.mark?.kind == .image ? "Image/" : "StorageVolume/") + "\(project.name)/\($0.name)" }
                + project.snapshots.map { "Snapshot/\($0.reference)" }
            let staying = inside.filter { resource in changes.first { $0.resource == resource && $0.action == .delete } == nil }
            let blocked = destroyGate("deleting a project")
                ?? (staying.isEmpty ? nil : "it still holds \(staying.count) volume\(staying.count == 1 ? "" : "s") or snapshot\(staying.count == 1 ? "" : "s") that stay")
            add(Change(action: .delete, resource: "StorageProject/\(project.name)", system: system, operation: .deleteProject(name: project.name),
                       before: ResourceState(project: .init(name: project.name)),
                       reason: "virtform made it and it is no longer in the manifests", blocked: blocked, summary: "project \(project.name)"),
                fingerprint: "\(inside.count)", after: inside)
        }
    }
}

extension PoolContents {
    /// What of the pool is this site's: objects whose mark names the site, and objects whose
    /// mark names no site (an earlier virtform's) in a project the site declares. Everything
    /// else that carries a mark is another site's: shown as not virtform's in the returned view,
    /// and listed, never touched.
    /// `adopted` lists the marks without a site that the site takes as its own (a target's
    /// site is its LUN's, so targets are adopted with their LUNs).
    func ownedBy(site: String, declaredProjects: Set<String>, pool: StoragePool)
        -> (view: PoolContents, foreign: [Plan.ForeignObject], adopted: [OwnershipMark])
    {
        var view = self
        var foreign: [Plan.ForeignObject] = []
        var adopted: [OwnershipMark] = []
        func ours(_ markSite: String?, project: String, _ mark: OwnershipMark? = nil) -> Bool {
            if markSite == site { return true }
            if markSite == nil && declaredProjects.contains(project) {
                if let mark { adopted.append(mark) }
                return true
            }
            return false
        }
        let system = SystemAddress.pool(pool.name)
        for (p, project) in observation.projects.enumerated() {
            if let mark = project.ownership.mark, !ours(mark.site, project: project.name, mark) {
                foreign.append(Plan.ForeignObject(resource: "StorageProject/\(project.name)", system: system, site: mark.site))
                view.observation.projects[p].ownership = .unowned
            }
            for (v, volume) in project.volumes.enumerated() {
                guard let mark = volume.ownership.mark, !ours(mark.site, project: project.name, mark) else { continue }
                let kind = mark.kind == .image ? "Image" : "StorageVolume"
                foreign.append(Plan.ForeignObject(resource: "\(kind)/\(project.name)/\(volume.name)", system: system, site: mark.site))
                view.observation.projects[p].volumes[v].ownership = .unowned
            }
            for (s, snapshot) in project.snapshots.enumerated() {
                guard let mark = snapshot.ownership.mark, !ours(mark.site, project: project.name, mark) else { continue }
                foreign.append(Plan.ForeignObject(resource: "Snapshot/\(snapshot.reference)", system: system, site: mark.site))
                view.observation.projects[p].snapshots[s].ownership = .unowned
            }
        }
        if let export = pool.export, let targets {
            // A half-made target (no LUN) is the work of the site that owns the project its name
            // holds: this site's own unfinished export, never a stranger's.
            let ownProjects = Set(view.observation.projects.filter { $0.ownership.isOwned }.map(\.name))
            for (t, target) in targets.enumerated() where target.halfMade && !target.isOwned {
                guard let project = target.volume(prefix: export.iqnPrefix)?.project, ownProjects.contains(project) else { continue }
                view.targets![t].isOwned = true
                view.targets![t].site = site
            }
            for (t, target) in view.targets!.enumerated() where target.isOwned {
                let project = target.volume(prefix: export.iqnPrefix)?.project ?? ""
                guard !ours(target.site, project: project) else { continue }
                let name = target.volume(prefix: export.iqnPrefix).map { "\($0.project)/\($0.volume)" } ?? target.iqn
                foreign.append(Plan.ForeignObject(resource: "ISCSITarget/\(name)", system: .exportServer(pool.name), site: target.site))
                view.targets![t].isOwned = false
            }
        }
        return (view, foreign, adopted)
    }
}
