import VirtformModel

/// Why each change of a plan is there: changed outside virtform since it was applied, or the
/// manifests changed and were not applied yet (`ChangeCause`). Told from the marks alone: a
/// domain's mark holds the digest of the definition virtform wrote, the power state it gave
/// the guest and the host it defined it on; a reservation's mark the digest of what virtform
/// reserved; and an object missing while the objects of the same VM virtform made with it are
/// there was removed behind virtform's back.
///
/// The hypervisor planner decides for domains it can tell by their own mark; this pass
/// decides the rest, across systems.
enum ChangeCauses {
    /// `defined`: the declared VMs whose domain was found on a host that was read.
    static func assign(_ plan: inout Plan, site: Site, defined: Set<VMID>) {
        var bindings: [VMID: [String]] = [:]
        for binding in site.bindings { bindings[binding.vm, default: []].append(binding.meta.name) }
        // What this plan creates: a VM's disk being made again means it is missing.
        var created = Set<String>()
        for change in plan.changes where change.action == .create { created.insert(change.resource) }
        var volumeCause: [VMID: ChangeCause] = [:]
        for i in plan.changes.indices {
            let change = plan.changes[i]
            let cause: ChangeCause
            switch change.operation {
            case .defineDomain(let spec, _, false, _):
                // A domain to define anew while its disk or one of its reservations is there (no
                // change makes it, and every pool and DHCP server was read): undefined by hand, or
                // an apply stopped before defining it; the marks cannot tell which. A VM with
                // neither leaves no trace once undefined: it reads as new.
                guard let vm = change.vm, plan.unreachable.allSatisfy({ $0.system.kind == .host }) else { continue }
                let diskThere = !spec.disks.isEmpty && !created.contains("StorageVolume/\(vm)")
                let reservationThere = (bindings[vm] ?? []).contains { !created.contains("NetworkBinding/\($0)") }
                guard diskThere || reservationThere else { continue }
                cause = .unknown
            case .defineDomain, .startDomain, .stopDomain, .restartDomain, .deleteDomain, .migrateDomain:
                continue  // decided by the hypervisor planner from the domain's own mark
            case .fenceHost:
                cause = .outside  // the host stopped answering
            case .cloneVolume:
                // The LUN of a domain that is defined is gone: removed outside virtform.
                cause = change.subjectVM.map { defined.contains($0) } == true ? .outside : .unapplied
                if let vm = change.subjectVM { volumeCause[vm] = cause }
            case .exportVolume:
                guard let vm = change.subjectVM else { continue }
                cause = volumeCause[vm] ?? (defined.contains(vm) ? .outside : .unapplied)
            case .reexportVolume:
                // Made again because its LUN is cloned or grown by this plan: the same cause; otherwise
                // the target no longer serves what virtform set up.
                cause = change.subjectVM.flatMap { volumeCause[$0] } ?? .outside
            case .growVolume, .manual:
                // virtform grows LUNs and never shrinks them; a larger size, or another origin
                // (which the LUN's mark records), is the manifest's.
                cause = .unapplied
                if let vm = change.subjectVM { volumeCause[vm] = .unapplied }
            case .reservation(let edit):
                switch edit {
                case .add:
                    // A reservation removed by hand leaves no trace; for a VM whose domain is not
                    // there yet, the whole VM is new.
                    cause = change.subjectVM.map { defined.contains($0) } == true ? .unknown : .unapplied
                case .change(let from, _) where from.owner == nil:
                    cause = .unapplied  // `virtform import`: marking a reservation virtform did not make
                case .change(let from, _):
                    cause = change.fields.isEmpty ? .outside  // HA peers disagree: one was edited by hand
                        : from.untouched.map { $0 ? .unapplied : .outside } ?? .unknown
                case .remove:
                    cause = .unapplied
                }
            case .createProject, .createImage, .createSnapshot, .deleteProject, .deleteSnapshot, .deleteVolume, .unexportVolume,
                 .adoptMarks, .markImported, .importDomain, .removeHalfMade, .finishDHCPWrite, .sealSnapshot, .secureTargets, .defineSecret, .admitInitiators:
                // What the manifests add or no longer want, and virtform's own unfinished work.
                cause = .unapplied
            }
            plan.changes[i].cause = cause
        }
    }
}
