import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Libvirt
import Testing
import VirtformDHCP
import VirtformLab
import VirtformModel
import VirtformSystem

/// Why the whole-stack tests cannot run here, or nil.
let stackUnavailable: String? = {
    let missing = [HypervisorLab.unmetRequirements(), StorageLab.unmetRequirements(), DHCPLab.unmetRequirements()].compactMap { $0 }
    return missing.isEmpty ? nil : missing.joined(separator: "; ")
}()

/// plan, apply and drift over all three kinds of system at once: libvirt daemons (test
/// driver), a btrfs pool exported by tgtd and checked through libiscsi, and Kea in a network
/// namespace checked by a real DHCP client.
@Suite("Whole stack: hypervisors, storage, DHCP", .serialized,
       .enabled(if: stackUnavailable == nil, Comment(rawValue: stackUnavailable ?? "")))
struct StackTests {
    @Test func applyConvergesAndDriftIsSeenOnEveryKindOfSystem() async throws {
        try await StackSite.with { site in
            var (output, code) = await site.run(["plan", "--detailed-exitcode"])
            try #require(code == 2, "\(output)")
            for expected in ["+ StorageProject/appl  create", "+ Image/masters/base  create", "+ Snapshot/masters/base@v1  create",
                             "+ StorageVolume/appl/web-1  create", "+ ISCSITarget/appl/web-1  create", "+ NetworkBinding/web-1-public  create",
                             "+ VirtualMachine/appl/web-1  create"] {
                #expect(output.contains(expected), "\(expected) in:\n\(output)")
            }
            // The graph apply will run, as DOT and as Mermaid: the start waits for the domain's
            // definition, its reservation and (through the definition) its disk's export.
            (output, code) = await site.run(["graph"])
            #expect(code == 0 && output.hasPrefix("digraph virtform {"), "\(output)")
            #expect(output.contains("\"create VirtualMachine/appl/web-1\" -> \"start VirtualMachine/appl/web-1\";"), "\(output)")
            #expect(output.contains("\"write DHCPServer/kea\" -> \"start VirtualMachine/appl/web-1\";"), "\(output)")
            #expect(output.contains("\"create ISCSITarget/appl/web-1\" -> \"create VirtualMachine/appl/web-1\";"), "\(output)")
            (output, code) = await site.run(["graph", "--format", "mermaid"])
            #expect(code == 0 && output.hasPrefix("flowchart LR") && output.contains(" --> "), "\(output)")

            (output, code) = await site.run(["apply", "--auto-approve"])
            try #require(code == 0, "\(output)")
            (output, code) = await site.run(["plan", "--detailed-exitcode"])
            #expect(code == 0, "a freshly applied site must show no differences:\n\(output)")

            // The guest's MAC gets exactly its reservation from the real server.
            let lease = try await site.dhcp.requestLease(mac: StackSite.webMAC, subnet: 0)
            #expect(lease.address == "192.168.76.71")
            #expect(lease.hostname == "web-1")

            // Behind virtform's back: the target removed, the reservation deleted.
            let tgtadm = try #require(Executables.find("tgtadm"))
            let show = try await Command.run([tgtadm, "-C", "\(StackSite.controlPort)", "--lld", "iscsi", "--op", "show", "--mode", "target"])
            let tid = try #require(show.standardOutput.split(separator: "\n").first { $0.contains("appl.web-1") }
                .flatMap { $0.split(separator: " ").dropFirst().first }.map { String($0).trimmingCharacters(in: CharacterSet(charactersIn: ":")) })
            _ = try await Command.run([tgtadm, "-C", "\(StackSite.controlPort)", "--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", tid, "--force"])
            let driver = try DHCPDrivers.driver(for: site.dhcpServer)
            let seen = try await driver.observe(subnets: [try #require(IPv4Subnet(parsing: "192.168.76.0/24"))])
            let held = try #require(seen.endpoints.first?.reservations?.first { $0.owner?.binding == "web-1-public" })
            _ = try await driver.apply([.remove(held)], basedOn: seen.token)

            (output, code) = await site.run(["drift"])
            #expect(code == 2, "\(output)")
            #expect(output.contains("missing ISCSITarget/appl/web-1"), "\(output)")
            #expect(output.contains("missing NetworkBinding/web-1-public"), "\(output)")
            // The same for a CI system: a test case per managed resource, a failure per drift.
            (output, code) = await site.run(["drift", "--format", "junit"])
            #expect(code == 2)
            let report = try JUnitReading(output)
            #expect(report.cases.count == 8, "VM, binding, two projects, image, snapshot, LUN, target: \(report.cases)")
            #expect(report.failed == ["ISCSITarget/appl/web-1", "NetworkBinding/web-1-public"], "\(output)")
            #expect(report.attributes["failures"] == "2" && report.attributes["errors"] == "0" && report.attributes["tests"] == "8", "\(report.attributes)")

            (output, code) = await site.run(["apply", "--auto-approve"])
            #expect(code == 0, "\(output)")
            (output, code) = await site.run(["drift"])
            #expect(code == 0, "\(output)")

            // The LUN of the defined domain deleted behind virtform's back: its data is gone, so
            // cloning it again from the master is shown as such and waits for the operator's
            // consent; then it is cloned and exported again (tgt still serves the deleted file).
            try FileManager.default.removeItem(atPath: site.mountPoint + "/appl/web-1.img")
            (output, code) = await site.run(["drift"])
            #expect(code == 2, "\(output)")
            #expect(output.contains("missing StorageVolume/appl/web-1"), "\(output)")
            #expect(output.contains("changed ISCSITarget/appl/web-1"), "\(output)")
            (output, code) = await site.run(["apply", "--auto-approve"])
            #expect(code == 3, "blocked changes have an exit status of their own:\n\(output)")
            #expect(output.contains("recreate disk from master: its data is lost"), "\(output)")
            #expect(output.contains("stayed blocked"), "\(output)")
            (output, code) = await site.run(["apply", "--auto-approve", "--recreate-lost-disks"])
            #expect(code == 0, "\(output)")
            (output, code) = await site.run(["plan", "--detailed-exitcode"])
            #expect(code == 0, "\(output)")

            // A LUN grown behind virtform's back is a difference virtform will not undo.
            let grown = try FileHandle(forWritingTo: URL(fileURLWithPath: site.mountPoint + "/appl/web-1.img"))
            try grown.truncate(atOffset: 128 << 20)
            try grown.close()
            (output, code) = await site.run(["drift"])
            #expect(code == 1, "\(output)")
            #expect(output.contains("never shrinks a LUN"), "\(output)")
            try site.write(withWeb: true, diskSize: "128MiB")
            (output, code) = await site.run(["apply", "--auto-approve"])
            #expect(code == 0, "\(output)")
            #expect(output.contains("served size"), "the grown LUN is exported again:\n\(output)")
            (output, code) = await site.run(["plan", "--detailed-exitcode"])
            #expect(code == 0, "\(output)")

            // While its domain is protected, the LUN it uses stays, even with --allow-destroy.
            try site.write(withWeb: true, diskSize: "128MiB", protected: true)
            (output, code) = await site.run(["apply", "--auto-approve"])
            #expect(code == 0, "\(output)")
            try site.write(withWeb: false)
            (output, code) = await site.run(["plan", "--allow-destroy"])
            #expect(output.contains("VirtualMachine/appl/web-1 has deletion protection on; nothing it uses is deleted"), "\(output)")
            #expect(!output.contains("  - StorageVolume/appl/web-1  delete\n      64MiB") || output.contains("not applied"), "\(output)")
            try site.write(withWeb: true, diskSize: "128MiB", protected: false)
            (output, code) = await site.run(["apply", "--auto-approve"])
            #expect(code == 0, "\(output)")

            // The VM leaves the manifests: its domain, target, LUN and reservation go only with
            // --allow-destroy, the domain first.
            try site.write(withWeb: false)
            (output, code) = await site.run(["plan"])
            #expect(output.contains("deleting a LUN needs --allow-destroy"), "\(output)")
            (output, code) = await site.run(["apply", "--auto-approve", "--allow-destroy"])
            #expect(code == 0, "\(output)")
            (output, code) = await site.run(["plan", "--detailed-exitcode"])
            #expect(code == 0, "\(output)")
            #expect(!FileManager.default.fileExists(atPath: site.mountPoint + "/appl/web-1.img"))
        }
    }

    /// A scheduled drift check tells who changed what, from virtform's marks alone: the
    /// definition edited with virsh, or the guest stopped with it, is "changed outside
    /// virtform" (exit 2, a JUnit failure); a manifest edit not applied yet is "not applied
    /// yet" (exit 3, a JUnit skip). Each section of the text, the plan and its Markdown says which.
    @Test func driftTellsAChangeByHandFromAManifestNotAppliedYet() async throws {
        try await StackSite.with { site in
            try site.write(withWeb: true)
            var (output, code) = await site.run(["apply", "--auto-approve"])
            try #require(code == 0, "\(output)")
            let virshPath = try #require(Executables.find("virsh"))
            func virsh(_ arguments: String...) async throws -> String {
                let command = [virshPath, "-c", site.hosts[0].testURI] + arguments
                return try await Command.run(command).checked(command).standardOutput
            }

            // The manifest edited, not applied yet.
            try site.write(withWeb: true, memory: "96MiB")
            (output, code) = await site.run(["drift"])
            #expect(code == 3, "\(output)")
            #expect(output.contains("In the manifests, not applied yet:\n  changed VirtualMachine/appl/web-1"), "\(output)")
            #expect(!output.contains("Changed outside virtform"), "\(output)")
            (output, code) = await site.run(["drift", "--format", "junit"])
            var report = try JUnitReading(output)
            #expect(code == 3 && report.failed.isEmpty && report.skipped == ["VirtualMachine/appl/web-1"], "\(output)")
            (output, code) = await site.run(["drift", "--format", "json"])
            #expect(output.contains("\"cause\" : \"unapplied\"") && output.contains("\"changed_outside\" : false"), "\(output)")

            // Back to what was applied; the definition edited by hand (virsh dumpxml, edit, define).
            try site.write(withWeb: true)
            let definition = try await virsh("dumpxml", "--inactive", "appl:web-1")
            #expect(definition.contains("<memory unit='KiB'>65536</memory>"), "\(definition)")
            let edited = site.directory + "/edited.xml"
            try definition.replacingOccurrences(of: "<memory unit='KiB'>65536</memory>", with: "<memory unit='KiB'>131072</memory>")
                .write(toFile: edited, atomically: true, encoding: .utf8)
            _ = try await virsh("define", edited)
            (output, code) = await site.run(["drift"])
            #expect(code == 2, "\(output)")
            #expect(output.contains("Changed outside virtform since it was applied:\n  changed VirtualMachine/appl/web-1"), "\(output)")
            (output, code) = await site.run(["drift", "--format", "junit"])
            report = try JUnitReading(output)
            #expect(code == 2 && report.failed == ["VirtualMachine/appl/web-1"] && report.skipped.isEmpty, "\(output)")
            (output, code) = await site.run(["plan"])
            #expect(output.contains("memory: 128MiB (64MiB in use) → 64MiB") && output.contains("      changed outside virtform since it was applied"), "\(output)")
            (output, code) = await site.run(["plan", "--format", "markdown"])
            #expect(output.contains("#### Changed outside virtform since it was applied (1)\n\n- `update VirtualMachine/appl/web-1`"), "\(output)")
            (output, code) = await site.run(["apply", "--auto-approve"])
            #expect(code == 0, "\(output)")

            // The guest stopped by hand: outside. Stopped through the manifest: not applied yet,
            // and once applied, the stop is in the mark, so starting it by hand is outside again.
            _ = try await virsh("destroy", "appl:web-1")
            (output, code) = await site.run(["drift"])
            #expect(code == 2 && output.contains("Changed outside virtform since it was applied:\n  stopped VirtualMachine/appl/web-1"), "\(output)")
            try site.write(withWeb: true, power: "stopped")
            (output, code) = await site.run(["drift"])
            #expect(code == 0, "stopped, as the manifest now says:\n\(output)")
            try site.write(withWeb: true)
            (output, code) = await site.run(["drift"])
            #expect(code == 2, "virtform last left it running; stopped since:\n\(output)")
            (output, code) = await site.run(["apply", "--auto-approve"])
            #expect(code == 0, "\(output)")
            try site.write(withWeb: true, power: "stopped")
            (output, code) = await site.run(["drift"])
            #expect(code == 3 && output.contains("In the manifests, not applied yet:\n  running VirtualMachine/appl/web-1"), "\(output)")
            (output, code) = await site.run(["apply", "--auto-approve"])
            #expect(code == 0, "\(output)")
            _ = try await virsh("start", "appl:web-1")
            (output, code) = await site.run(["drift"])
            #expect(code == 2 && output.contains("Changed outside virtform since it was applied:\n  running VirtualMachine/appl/web-1"), "\(output)")
        }
    }

    /// A pool whose targets admit only the hypervisors' initiator names: virtform checks what
    /// the portal serves as one of them, so a freshly applied site shows no drift.
    @Test func targetsRestrictedToNamedInitiatorsShowNoDrift() async throws {
        try await StackSite.with { site in
            try site.write(withWeb: true, initiators: ["iqn.2026-11.io.virtform.stack:stack-h1"])
            var (output, code) = await site.run(["apply", "--auto-approve"])
            try #require(code == 0, "\(output)")
            (output, code) = await site.run(["drift"])
            #expect(code == 0, "\(output)")
            #expect(!output.contains("visible at the portal"), "\(output)")
        }
    }

    /// Live means live, on a real guest: a QEMU guest that boots a kernel from its iSCSI LUN
    /// (a master image imported from `GuestImage`) and runs the balloon driver gets a lowered
    /// memory, a second vCPU and a new interface while it runs, as `virsh dommemstat`,
    /// `vcpucount` and `domiflist` show; the interface is detached again (the guest's kernel
    /// lets go of it through ACPI), and the plan is clean after each step.
    @Test(.enabled(if: GuestImage.unmetRequirements() == nil, Comment(rawValue: GuestImage.unmetRequirements() ?? "")))
    func changesShownAsLiveReachTheRunningGuest() async throws {
        try await StackSite.with { site in
            let image = site.root + "/guest.img"
            try await GuestImage.build(at: image, scratch: site.root + "/guest-build")
            let directory = site.root + "/manifests-qemu"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let mac = "02:00:00:00:20:01"
            func write(memory: String, vcpus: Int, interface: Bool) throws {
                let text = site.manifests(site: "stack-a", prefix: "", web: nil, image: image, qemu: true) + """
                    ---
                    apiVersion: virtform.io/v1alpha1
                    kind: VirtualMachine
                    metadata: {name: guest}
                    spec:
                      project: appl
                      memory: \(memory)
                      vcpus: \(vcpus)
                      maxVcpus: 2
                      disk: {from: masters/base@v1}
                      interfaces: [\(interface ? "{network: public, mac: \"\(mac)\"}" : "")]
                      placement: {host: stack-h1}
                      power: running

                    """
                try text.write(toFile: directory + "/site.yaml", atomically: true, encoding: .utf8)
            }
            try write(memory: "160MiB", vcpus: 1, interface: false)
            var (output, code) = await runVirtform(["apply", "--auto-approve", directory])
            try #require(code == 0, "\(output)")
            // Booted, with the balloon driver reporting: its statistics appear.
            let virsh = try #require(Executables.find("virsh"))
            func virshSays(_ arguments: String...) async -> String {
                let command = [virsh, "-c", site.hosts[0].qemuURI] + arguments
                return (try? await Command.run(command).checked(command).standardOutput) ?? ""
            }
            var said = ""
            let booted = await poll(within: .seconds(180), every: .milliseconds(500)) {
                said = await virshSays("dommemstat", "appl:guest")
                return said.contains("available ")
            }
            try #require(booted, "the guest's balloon driver never reported: \(said)")

            // Less memory, a second vCPU and an interface: all three live, no restart.
            try write(memory: "112MiB", vcpus: 2, interface: true)
            (output, code) = await runVirtform(["apply", "--auto-approve", directory])
            #expect(code == 0, "\(output)")
            #expect(output.contains("memory: 160MiB → 112MiB (live)"), "\(output)")
            #expect(output.contains("vcpus: 1 (max 2) → 2 (live)"), "\(output)")
            #expect(output.contains("interfaces: none → user/\(mac) (live)"), "\(output)")
            #expect(output.contains("0 to restart") && !output.contains("restart VirtualMachine"), "\(output)")
            // The guest's balloon driver gives the memory back.
            var actual: String?
            let reached = await poll(within: .seconds(120), every: .milliseconds(500)) {
                actual = await virshSays("dommemstat", "appl:guest").split(separator: "\n").first { $0.hasPrefix("actual ") }.map(String.init)
                return actual == "actual \(112 << 10)"
            }
            #expect(reached, "virsh dommemstat says \(actual ?? "nothing")")
            said = await virshSays("vcpucount", "appl:guest", "--live", "--active")
            #expect(said.trimmingCharacters(in: .whitespacesAndNewlines) == "2", "virsh vcpucount says \(said)")
            said = await virshSays("domiflist", "appl:guest")
            #expect(said.contains(mac), "virsh domiflist says \(said)")
            // libvirt's live definition follows the balloon's events (QEMU sends at most one a
            // second); once it has, the plan is clean.
            var clean = await poll(within: .seconds(30), every: .milliseconds(500)) {
                (output, code) = await runVirtform(["plan", "--detailed-exitcode", directory])
                return code == 0
            }
            #expect(clean, "\(output)")

            // The interface taken away again: the guest's kernel lets go of it (ACPI hot-plug).
            try write(memory: "112MiB", vcpus: 2, interface: false)
            (output, code) = await runVirtform(["apply", "--auto-approve", directory])
            #expect(code == 0 && output.contains("(live)"), "\(output)")
            let detached = await poll(within: .seconds(60), every: .milliseconds(500)) {
                said = await virshSays("domiflist", "appl:guest")
                return !said.contains(mac)
            }
            #expect(detached, "virsh domiflist says \(said)")
            clean = await poll(within: .seconds(30), every: .milliseconds(500)) {
                (output, code) = await runVirtform(["plan", "--detailed-exitcode", directory])
                return code == 0
            }
            #expect(clean, "\(output)")
        }
    }

    /// What an apply killed at the worst moments leaves — a target made without its LUN, a
    /// project subvolume and a LUN file still under their temporary names — is the site's own
    /// unfinished work: plan shows it (no errors, nothing foreign), the next apply finishes or
    /// removes it, and then everything is clean and nothing hidden stays in the pool.
    @Test func workAKilledApplyLeftIsFinishedByTheNext() async throws {
        try await StackSite.with { site in
            var (output, code) = await site.run(["apply", "--auto-approve"])
            try #require(code == 0, "\(output)")
            let tgtadm = [try #require(Executables.find("tgtadm")), "-C", String(StackSite.controlPort), "--lld", "iscsi"]
            let btrfs = try #require(Executables.find("btrfs"))
            let iqn = "iqn.2026-11.io.virtform.stack:appl.web-1"
            let shown = try await Command.run(tgtadm + ["--op", "show", "--mode", "target"]).checked(tgtadm).standardOutput
            let tid = try #require(shown.split(separator: "\n").first { $0.hasSuffix(": \(iqn)") }?
                .split(separator: " ").dropFirst().first.map { String($0.dropLast()) })
            // The target made again without its LUN (the test driver's guest holds no iSCSI session).
            _ = try await Command.run(tgtadm + ["--op", "delete", "--mode", "target", "--tid", tid, "--force"]).checked(tgtadm)
            _ = try await Command.run(tgtadm + ["--op", "new", "--mode", "target", "--tid", tid, "-T", iqn]).checked(tgtadm)
            // A project subvolume and a LUN file under their temporary names, as a kill leaves them.
            let project = site.mountPoint + "/.virtform-tmp-@stack-a@spare-k1"
            _ = try await Command.run([btrfs, "subvolume", "create", project]).checked([btrfs])
            let file = site.mountPoint + "/appl/.virtform-tmp-@stack-a@web-2.img-x9"
            try Data(repeating: 7, count: 4096).write(to: URL(fileURLWithPath: file))
            // Another site's temporary is not this site's to remove.
            let theirs = site.mountPoint + "/.virtform-tmp-@stack-b@b-apps-z3"
            try Data().write(to: URL(fileURLWithPath: theirs))

            (output, code) = await site.run(["plan", "--detailed-exitcode"])
            #expect(code == 2, "\(output)")
            #expect(!output.contains("error") && !output.contains("left alone"), "\(output)")
            #expect(output.contains("ISCSITarget/appl/web-1  update") && output.contains("LUN 1: none (half-made"), "\(output)")
            #expect(output.contains("HalfMade/stack-pool  delete"), "\(output)")
            (output, code) = await site.run(["apply", "--auto-approve"])
            #expect(code == 0, "\(output)")
            (output, code) = await site.run(["plan", "--detailed-exitcode"])
            #expect(code == 0, "\(output)")
            #expect(!FileManager.default.fileExists(atPath: project) && !FileManager.default.fileExists(atPath: file))
            #expect(FileManager.default.fileExists(atPath: theirs))
            let after = try await Command.run(tgtadm + ["--op", "show", "--mode", "target"]).checked(tgtadm).standardOutput
            #expect(after.contains("Backing store path: \(site.mountPoint)/appl/web-1.img"), "\(after)")
        }
    }

    /// A target server or a DHCP server that freezes (SIGSTOP) mid-apply costs one deadline:
    /// the run ends with a failure that names it, and after the thaw one apply converges.
    @Test func aFrozenTargetServerOrDHCPServerCostsOneDeadline() async throws {
        let program = try #require(virtformExecutable(), "the virtform executable is built next to the tests")
        try await StackSite.with { site in
            func pid(_ file: String) throws -> Int32 {
                try #require(Int32((try String(contentsOfFile: file, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
            }
            let daemons = [("tgtd", try pid(site.root + "/storage/tgtd.pid"), "on ExportServer/stack-pool\n", "ExportServer/stack-pool"),
                           ("kea", try pid(site.dhcp.configuration.pidFile), "to DHCPServer/kea\n", "DHCPServer/kea")]
            for (name, daemon, trigger, system) in daemons {
                try site.write(withWeb: false)
                var (output, code) = await site.run(["apply", "--auto-approve", "--allow-destroy"])
                try #require(code == 0, "\(output)")
                try site.write(withWeb: true)
                let run = try await runVirtformChild(program, ["apply", "--auto-approve", "--operation-timeout", "3", site.directory],
                                                     trigger: trigger, onTrigger: { kill(daemon, SIGSTOP) }, cleanup: { kill(daemon, SIGCONT) })
                #expect(run.ended && run.triggered, "\(name): \(run.output)")
                #expect(run.status == 1, "\(name): \(run.output)")
                #expect(run.output.contains("did not finish within 3") && run.output.contains(system), "\(name): \(run.output)")
                (output, code) = await site.run(["apply", "--auto-approve"])
                #expect(code == 0, "\(name), after the thaw: \(output)")
                (output, code) = await site.run(["plan", "--detailed-exitcode"])
                #expect(code == 0, "\(name), after the thaw: \(output)")
            }
        }
    }

    /// A target server or a DHCP server killed (SIGKILL) mid-apply fails that system's actions,
    /// never virtform itself: the run ends with its summary and a failure naming the system;
    /// once the daemon is back (tgtd without its targets, Kea with what it saved) one apply
    /// converges.
    @Test func aTargetServerOrDHCPServerKilledMidApplyFailsOnlyItsActions() async throws {
        let program = try #require(virtformExecutable(), "the virtform executable is built next to the tests")
        try await StackSite.with { site in
            func pid(_ file: String) throws -> Int32 {
                try #require(Int32((try String(contentsOfFile: file, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
            }
            for (name, pidFile, trigger, system) in [("tgtd", site.root + "/storage/tgtd.pid", "on ExportServer/stack-pool\n", "ExportServer/stack-pool"),
                                                     ("kea", site.dhcp.configuration.pidFile, "to DHCPServer/kea\n", "DHCPServer/kea")] {
                try site.write(withWeb: false)
                var (output, code) = await site.run(["apply", "--auto-approve", "--allow-destroy"])
                try #require(code == 0, "\(output)")
                try site.write(withWeb: true)
                let daemon = try pid(pidFile)
                let run = try await runVirtformChild(program, ["apply", "--auto-approve", "--operation-timeout", "10", site.directory],
                                                     trigger: trigger, onTrigger: { kill(daemon, SIGKILL) }, cleanup: {})
                #expect(run.ended && run.triggered, "\(name): \(run.output)")
                #expect(run.status == 1, "\(name): virtform must fail the actions, not die (status \(run.status)):\n\(run.output)")
                #expect(run.output.contains("Apply: ") && run.output.contains(system), "\(name): \(run.output)")
                // Back up as the lab brings it (idempotent), then one apply.
                _ = try await site.storage.up()
                _ = try await site.dhcp.up()
                (output, code) = await site.run(["apply", "--auto-approve"])
                #expect(code == 0, "\(name), back up: \(output)")
                (output, code) = await site.run(["plan", "--detailed-exitcode"])
                #expect(code == 0, "\(name), back up: \(output)")
            }
        }
    }

    /// A plan run while a target server or DHCP server is frozen ends within its reading's
    /// deadline and reports that system as unreachable (it used to take 90 s for tgtd).
    @Test func aPlanWithAFrozenSystemEndsWithinItsDeadline() async throws {
        try await StackSite.with { site in
            var (output, code) = await site.run(["apply", "--auto-approve"])
            try #require(code == 0, "\(output)")
            func pid(_ file: String) throws -> Int32 {
                try #require(Int32((try String(contentsOfFile: file, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
            }
            for (daemon, system) in [(try pid(site.root + "/storage/tgtd.pid"), "StoragePool/stack-pool"),
                                     (try pid(site.dhcp.configuration.pidFile), "DHCPServer/kea")] {
                kill(daemon, SIGSTOP)
                let start = ContinuousClock.now
                (output, code) = await site.run(["plan", "--read-timeout", "1"])
                let took = start.duration(to: .now)
                kill(daemon, SIGCONT)
                #expect(code == 1, "\(output)")
                #expect(output.contains("\(system): could not be read") || output.contains("\(system) (kea-1): could not be read"), "\(output)")
                #expect(took < .seconds(10), "the plan took \(took)")
            }
            (output, code) = await site.run(["plan", "--detailed-exitcode"])
            #expect(code == 0, "after the thaw: \(output)")
        }
    }

    /// `plan` run again and again while an apply makes a site never mistakes the apply's
    /// unfinished work for a stranger's: no errors, no foreign objects, only changes still to
    /// make (it used to fail with "exists but is not virtform's" now and then).
    @Test func plansDuringAnApplySeeOnlyWorkInProgress() async throws {
        let program = try #require(virtformExecutable(), "the virtform executable is built next to the tests")
        try await StackSite.with { site in
            let sweep = KillSweep(site: site, program: program)
            let directory = site.root + "/busy"
            try sweep.write(directory, vms: (1...16).map { KillSweep.VM(name: "web-\($0)", mac: String(format: "02:00:00:00:40:%02x", $0), address: "192.168.76.\(100 + $0)") })
            let process = Process()
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = ["apply", "--auto-approve", "--parallelism", "1", directory]
            process.environment = ProcessInfo.processInfo.environment.merging(["VIRTFORM_BACKEND": testBackend(for: [directory])!]) { _, new in new }
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            var plans = 0
            var warned = false
            while process.isRunning && plans < 200 {
                let (output, code) = await runVirtform(["plan", directory])
                plans += 1
                warned = warned || output.contains("an apply of this site is running")
                #expect(code == 0 && !output.contains("error") && !output.contains("left alone"), "plan \(plans) during the apply:\n\(output)")
            }
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
            #expect(plans >= 3, "the apply ended before a third plan")
            #expect(warned, "no plan said that an apply runs")
            let (output, code) = await runVirtform(["plan", "--detailed-exitcode", directory])
            #expect(code == 0, "\(output)")
        }
    }

    /// Two sites with different names on the same hypervisor, pool, target server and Kea: each
    /// applies, each plans clean, neither sees the other's objects as its own, and one that
    /// drops everything deletes only what it made.
    @Test func twoSitesSideBySideNeverTouchEachOther() async throws {
        try await StackSite.with { site in
            let other = site.root + "/manifests-b"
            try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
            try site.writeSecondSite(to: other, withWeb: true)
            var (output, code) = await site.run(["apply", "--auto-approve"])
            try #require(code == 0, "\(output)")
            (output, code) = await runVirtform(["apply", "--auto-approve", other])
            try #require(code == 0, "\(output)")

            (output, code) = await site.run(["plan", "--detailed-exitcode", "--allow-destroy"])
            #expect(code == 0, "site A plans clean beside site B:\n\(output)")
            #expect(output.contains("site stack-b: "), "\(output)")
            (output, code) = await runVirtform(["plan", "--detailed-exitcode", "--allow-destroy", other])
            #expect(code == 0, "site B plans clean beside site A:\n\(output)")
            (output, code) = await runVirtform(["plan", "--format", "json", other])
            let plan = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
            let foreign = try #require(plan?["foreign"] as? [[String: Any]])
            #expect(Set(foreign.compactMap { $0["resource"] as? String }).isSuperset(of: [
                "VirtualMachine/appl/web-1", "StorageVolume/appl/web-1", "ISCSITarget/appl/web-1", "NetworkBinding/web-1-public",
            ]), "\(output)")
            #expect(foreign.allSatisfy { $0["site"] as? String == "stack-a" }, "\(output)")

            // Site B drops its VM: its domain, LUN, target and reservation go; site A's stay.
            try site.writeSecondSite(to: other, withWeb: false)
            (output, code) = await runVirtform(["apply", "--auto-approve", "--allow-destroy", other])
            #expect(code == 0, "\(output)")
            #expect(!output.contains("appl/web-1 "), "site B touched site A's objects:\n\(output)")
            #expect(FileManager.default.fileExists(atPath: site.mountPoint + "/appl/web-1.img"))
            #expect(!FileManager.default.fileExists(atPath: site.mountPoint + "/b-apps/web-1.img"))
            (output, code) = await site.run(["plan", "--detailed-exitcode"])
            #expect(code == 0, "site A is still as it was:\n\(output)")
        }
    }
}

/// A temporary lab of one hypervisor, a btrfs pool with its own tgtd, and Kea in its own
/// namespace, with manifests pointing at them. Everything is torn down at the end.
struct StackSite: Sendable {
    static let portalPort = 3340
    static let controlPort = 140
    static let webMAC = "02:00:00:00:10:01"

    let lab: HypervisorLab
    let hosts: [LabHost]
    let root: String
    let directory: String
    let mountPoint: String
    let dhcp: DHCPLab
    let dhcpServer: DHCPServer
    let storage: StorageLab
    /// With `agent`: the pool's machine reached over ssh (root, forced to `virtform agent`).
    var agent: LabSSHAccess? = nil

    /// `hosts` lab hypervisors (`stack-h1`, `stack-h2`, …; with more than one, a cluster
    /// `stack` over them all, spread). With `agent`, the pool and its export are driven through
    /// `virtform agent` over a real sshd (the lab's storage as another machine).
    static func with(hosts count: Int = 1, agent withAgent: Bool = false, _ body: @Sendable (StackSite) async throws -> Void) async throws {
        try await HypervisorLab.withTemporaryLab(hosts: count, userPrefix: "vfstackh") { lab, hosts in
            let root = lab.configuration.root
            let storage = StorageLab(configuration: StorageLabConfiguration(
                root: root + "/storage", mountPoint: root + "/pool", poolSize: 1 << 30, portalPort: portalPort,
                controlPort: controlPort, removePoolOnDown: true))
            let dhcp = DHCPLab(configuration: DHCPLabConfiguration(root: root + "/dhcp", namespace: "vfstack-dhcp",
                                                                   clientNamespacePrefix: "vfstack-c"))
            var failure: (any Error)?
            var keeper: Connection?
            var others: [Connection] = []
            do {
                _ = try await storage.up()
                _ = try await dhcp.up()
                // The test driver's own domain ("test", 8 GiB) would take a host's room; the
                // driver's state lasts while a connection is open, so one is kept for each host.
                for host in hosts.dropFirst() {
                    let other = try await Connection.open(uri: host.testURI)
                    others.append(other)
                    if let builtIn = try await other.domain(named: "test") {
                        try await builtIn.destroy()
                        try await builtIn.undefine()
                    }
                }
                let opened = try await Connection.open(uri: hosts[0].testURI)
                keeper = opened
                if let builtIn = try await opened.domain(named: "test") {
                    try await builtIn.destroy()
                    try await builtIn.undefine()
                }
                let directory = root + "/manifests"
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                let server = DHCPServer(meta: ObjectMeta(name: "kea"), driver: .kea,
                                        endpoints: [.init(name: "kea-1", controlSocket: dhcp.configuration.controlSocket)],
                                        provenance: Provenance(document: SourceLocation(file: "test", line: 1, column: 1)))
                var site = StackSite(lab: lab, hosts: hosts, root: root, directory: directory, mountPoint: root + "/pool", dhcp: dhcp,
                                     dhcpServer: server, storage: storage)
                if withAgent {
                    let program = try #require(virtformExecutable(), "the virtform executable is built next to the tests")
                    site.agent = try await SSHLab(configuration: lab.configuration, basePort: 0).upAgent(program: program, allow: [root + "/pool"])
                }
                try site.write(withWeb: true)
                try await body(site)
            } catch {
                failure = error
            }
            if withAgent { do { try await SSHLab(configuration: lab.configuration, basePort: 0).down() } catch { failure = failure ?? error } }
            await keeper?.close()
            for other in others { await other.close() }
            // QEMU guests are stopped while their disks' targets still answer (they die at once then).
            await withTaskGroup(of: Void.self) { group in
                for host in hosts {
                    group.addTask {
                        guard let connection = try? await Connection.open(uri: host.qemuURI) else { return }
                        for summary in (try? await connection.listAllDomains()) ?? [] where summary.state.isActive {
                            try? await summary.domain.destroy()
                        }
                        await connection.close()
                    }
                }
            }
            // Domains first (the lab undefines them), but targets and the pool go now.
            do { try await dhcp.down() } catch { failure = failure ?? error }
            do { try await storage.down() } catch { failure = failure ?? error }
            if let failure { throw failure }
        }
    }

    func run(_ arguments: [String]) async -> (output: String, exitCode: Int32) {
        await runVirtform(arguments + [directory])
    }

    /// The host, pool and DHCP server the site's manifests name (the same for a second site);
    /// `initiators` restricts the pool's targets to those initiator names.
    func systems(initiators: [String] = [], qemu: Bool = false, maintenance: Set<String> = [], bridgeless: Set<String> = [],
                 migration: String = "", cluster: String = "placement: {policy: spread}", chap: String = "",
                 hostInitiators: Bool = false) -> String {
        let restricted = initiators.isEmpty ? "" : ", initiators: [\(initiators.joined(separator: ", "))]"
        let driver = qemu ? "domainType: qemu\n  guestNetworking: user-mode" : "domainType: test"
        var text = ""
        for (i, host) in hosts.enumerated() {
            text += """
                apiVersion: virtform.io/v1alpha1
                kind: Host
                metadata: {name: stack-h\(i + 1)}
                spec:
                  uri: "\(qemu ? host.qemuURI : host.testURI)"
                  capacity: {memory: 8GiB, vcpus: 8}
                  bridges: [\(bridgeless.contains("stack-h\(i + 1)") ? "" : "fe0")]
                  migrationAddress: 127.0.0.1
                  maintenance: \(maintenance.contains("stack-h\(i + 1)"))
                  \(hostInitiators ? "initiatorName: iqn.2026-11.io.virtform.test:stack-h\(i + 1)" : "")
                  \(driver)
                ---

                """
        }
        if hosts.count > 1 {
            text += """
                apiVersion: virtform.io/v1alpha1
                kind: Cluster
                metadata: {name: stack}
                spec:
                  hosts: [\(hosts.indices.map { "stack-h\($0 + 1)" }.joined(separator: ", "))]
                  \(cluster)
                  migration: {\(migration)}
                ---

                """
        }
        return text + """
            apiVersion: virtform.io/v1alpha1
            kind: StoragePool
            metadata: {name: stack-pool}
            spec:
              driver: btrfs
              path: \(mountPoint)
              \(agent.map { "ssh: {target: root@127.0.0.1, port: \($0.port), identity: \($0.identity), knownHosts: \($0.knownHosts)}" } ?? "")
              export: {driver: tgt, portal: "127.0.0.1:\(Self.portalPort)", iqnPrefix: iqn.2026-11.io.virtform.stack, controlPort: \(Self.controlPort)\(restricted)\(chap.isEmpty ? "" : ", chap: \(chap)")}
            ---
            apiVersion: virtform.io/v1alpha1
            kind: DHCPServer
            metadata: {name: kea}
            spec:
              driver: kea
              endpoints: [{name: kea-1, controlSocket: "\(dhcp.configuration.controlSocket)"}]
            ---
            apiVersion: virtform.io/v1alpha1
            kind: Network
            metadata: {name: public}
            spec: {bridge: fe0, subnet: 192.168.76.0/24, dhcpServer: kea}

            """
    }

    /// Site `stack-b` on the same systems: its own projects, master, VM, MAC and address (and
    /// the same binding name, which the sites' marks keep apart).
    func writeSecondSite(to directory: String, withWeb: Bool) throws {
        try manifests(site: "stack-b", prefix: "b-", web: withWeb ? Web(mac: "02:00:00:00:10:02", address: "192.168.76.72", hostname: "b-web-1") : nil)
            .write(toFile: directory + "/site.yaml", atomically: true, encoding: .utf8)
    }

    func write(withWeb: Bool, diskSize: String? = nil, protected: Bool = false, initiators: [String] = [], memory: String = "64MiB",
               power: String = "running") throws {
        let web = withWeb ? Web(mac: Self.webMAC, address: "192.168.76.71", hostname: "web-1", diskSize: diskSize, protected: protected,
                                memory: memory, power: power) : nil
        try manifests(site: "stack-a", prefix: "", web: web, initiators: initiators)
            .write(toFile: directory + "/site.yaml", atomically: true, encoding: .utf8)
    }

    /// The guest `web-1` of a site, with its binding `web-1-public`.
    struct Web {
        var mac: String
        var address: String
        var hostname: String
        var diskSize: String?
        var protected = false
        var memory = "64MiB"
        var power = "running"
    }

    /// A site's manifests on the stack's systems: projects `<prefix>masters` and `<prefix>appl`
    /// (`b-apps` for the second site), the master `base@v1`, and `web-1` when given.
    /// `image` is the master's source (blank without one); `qemu` makes the host run real QEMU
    /// guests instead of the test driver's.
    func manifests(site: String, prefix: String, web: Web?, initiators: [String] = [], image: String? = nil, qemu: Bool = false,
                   maintenance: Set<String> = [], bridgeless: Set<String> = [], migration: String = "",
                   cluster: String = "placement: {policy: spread}", chap: String = "", hostInitiators: Bool = false) -> String {
        let (masters, apps) = (prefix + "masters", prefix.isEmpty ? "appl" : prefix + "apps")
        var text = """
            apiVersion: virtform.io/v1alpha1
            kind: Site
            metadata: {name: \(site)}
            spec: {}
            ---
            apiVersion: virtform.io/v1alpha1
            kind: StorageProject
            metadata: {name: \(masters)}
            spec: {pool: stack-pool}
            ---
            apiVersion: virtform.io/v1alpha1
            kind: StorageProject
            metadata: {name: \(apps)}
            spec: {pool: stack-pool}
            ---
            apiVersion: virtform.io/v1alpha1
            kind: Image
            metadata: {name: base}
            spec: {project: \(masters), size: 64MiB, snapshots: [v1]\(image.map { ", source: \"\($0)\"" } ?? "")}
            ---

            """ + systems(initiators: initiators, qemu: qemu, maintenance: maintenance, bridgeless: bridgeless, migration: migration,
                          cluster: cluster, chap: chap, hostInitiators: hostInitiators)
        if let web {
            text += """
                ---
                apiVersion: virtform.io/v1alpha1
                kind: VirtualMachine
                metadata: {name: web-1}
                spec:
                  project: \(apps)
                  type: hvm
                  memory: \(web.memory)
                  vcpus: 1
                  disk: {from: \(masters)/base@v1\(web.diskSize.map { ", size: \($0)" } ?? "")}
                  interfaces: [{network: public, mac: "\(web.mac)"}]
                  placement: {host: stack-h1}
                  power: \(web.power)
                  deletionProtection: \(web.protected)
                ---
                apiVersion: virtform.io/v1alpha1
                kind: NetworkBinding
                metadata: {name: web-1-public}
                spec: {vm: \(apps)/web-1, interface: public, address: \(web.address), hostname: \(web.hostname)}

                """
        }
        return text
    }
}

/// A JUnit report read back with Foundation's XML parser: it must be well-formed XML.
struct JUnitReading {
    var cases: [String] = []
    var failed: [String] = []
    var skipped: [String] = []
    var attributes: [String: String] = [:]

    init(_ text: String) throws {
        final class Delegate: NSObject, XMLParserDelegate {
            var reading = JUnitReading(empty: ())
            var current: String?
            func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                        attributes: [String: String] = [:]) {
                switch name {
                case "testsuites": reading.attributes = attributes
                case "testcase":
                    current = attributes["name"]
                    reading.cases.append(attributes["name"] ?? "?")
                case "failure": if let current, reading.failed.last != current { reading.failed.append(current) }
                case "skipped": if let current, reading.skipped.last != current { reading.skipped.append(current) }
                default: break
                }
            }
        }
        let parser = XMLParser(data: Data(text.utf8))
        let delegate = Delegate()
        parser.delegate = delegate
        guard parser.parse() else { throw CocoaError(.propertyListReadCorrupt, userInfo: ["text": text]) }
        self = delegate.reading
        failed.sort()
        skipped.sort()
    }

    private init(empty: Void) {}
}
