import VirtformModel
import VirtformPlanning

/// A graph node for a change outside the hypervisors (a LUN, an export, DHCP reservations), with
/// how it orders against the domains' own actions.
struct SideAction: Sendable {
    var id: String
    /// The system whose limit it counts against (`StoragePool/lab-pool`).
    var group: String
    var label: String
    var dependsOn: [String] = []
    /// VMs whose domain definition (create or update) waits for this action.
    var beforeDefine: [VMID] = []
    /// VMs whose start waits for this action.
    var beforeStart: [VMID] = []
    /// VMs whose domain deletion this action waits for.
    var afterDelete: [VMID] = []
    var run: @Sendable () async throws -> Void
}

/// What one kind of system besides the hypervisors (storage pools, DHCP servers) contributes to
/// a plan: its changes, its problems, the systems it could not read and the fingerprints of
/// what it saw; and, for apply, the nodes that carry the changes out.
struct SidePlan: Sendable {
    var changes: [Change] = []
    var problems: [Plan.Problem] = []
    var unreachable: [Plan.UnreachableHost] = []
    /// Resource → fingerprint of what was observed (`Plan.absent` for what is to be created).
    var fingerprints: [String: String] = [:]
    /// The nodes for those of `changes` that are to run (not blocked).
    var actions: @Sendable ([Change]) -> [SideAction] = { _ in [] }
}

extension VMID {
    /// The VM a `VirtualMachine/…` resource names.
    init?(resource: String) {
        guard resource.hasPrefix("VirtualMachine/") else { return nil }
        self.init(parsing: String(resource.dropFirst("VirtualMachine/".count)))
    }
}
