import ArgumentParser
import Foundation
import VirtformLab

/// `virtform lab`: the whole lab on this machine — one libvirt session daemon per hypervisor,
/// a btrfs pool served by a tgt iSCSI target, and a Kea DHCP server in a network namespace.
struct LabCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "Bring up, inspect or remove the local lab: libvirt hypervisors, a btrfs pool with a tgt iSCSI target, a Kea DHCP server (needs root).",
        subcommands: [LabUp.self, LabDown.self, LabStatus.self, LabFence.self]
    )
}

struct LabUp: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Start the lab's hypervisors, storage pool, iSCSI target and DHCP server (idempotent: what runs is kept).")

    @OptionGroup var options: LabOptions

    @Option(help: "How many hypervisors.")
    var hosts = 3

    func validate() throws {
        guard hosts >= 1 else { throw ValidationError("--hosts must be at least 1, not \(hosts)") }
    }

    func run() async throws {
        let output = Output.current
        let withStorage = !options.noStorage
        let withDHCP = !options.noDhcp
        if let missing = LabRequirements.unmet(storage: withStorage, dhcp: withDHCP, ssh: options.transport == "ssh") {
            output.errorLine("error: \(missing)")
            throw ExitCode(1)
        }
        let lab: Lab
        do {
            let recorded = try LabSettings.recorded(at: options.root)
            var settings = options.settings(over: recorded ?? LabSettings())
            // Daemons of this lab may run with the recorded settings: changing them now would
            // start a second set beside them, which `lab down` could not find.
            settings.storage = withStorage
            settings.dhcp = withDHCP
            if let recorded {
                var comparable = settings
                comparable.storage = recorded.storage
                comparable.dhcp = recorded.dhcp
                // The transport names no daemon of the others: sshds are found by their directory.
                comparable.transport = recorded.transport
                comparable.sshBasePort = recorded.sshBasePort
                let previous = Lab(root: options.root, settings: recorded, recorded: true)
                if comparable != recorded, await previous.anythingRuns() {
                    throw LabCommandError(
                        "the lab under \(options.root) runs with other settings (\(Self.describe(recorded))); "
                            + "take it down with `virtform lab down --root \(options.root)` first, or leave those options out")
                }
                if comparable == recorded {
                    // Parts left out now but running from an earlier `lab up` stay part of the lab.
                    if !withStorage, recorded.storage, await previous.storageRuns() { settings.storage = true }
                    if !withDHCP, recorded.dhcp, await previous.dhcpRuns() { settings.dhcp = true }
                }
            }
            let candidate = Lab(root: options.root, settings: settings, recorded: true)
            if let problem = candidate.foreignDaemons(hosts: hosts) { throw LabCommandError(problem) }
            if withDHCP, FileManager.default.fileExists(atPath: "/run/netns/\(settings.dhcpNamespace)"), !candidate.dhcpMayRun {
                throw LabCommandError("network namespace \(settings.dhcpNamespace) exists but this lab (under \(options.root)) did not make it; "
                                      + "another lab may use it: give this lab its own --dhcp-namespace")
            }
            // Recorded before anything starts, so `lab down` finds a half-made lab too.
            try settings.record(at: options.root)
            lab = candidate
        } catch let error as LabCommandError {
            output.errorLine("error: \(error)")
            throw ExitCode(1)
        }

        var report = LabReport(output: output)
        await upHosts(lab, &report)
        if withStorage {
            do {
                let status = try await lab.storage.up()
                Self.reportStorage(status, lab.storageConfiguration, &report)
                if lab.settings.overSSH {
                    // The storage machine as a remote one: root may run only this `virtform agent`.
                    let program = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
                    let agent = try await lab.ssh.upAgent(program: program, allow: [lab.storageConfiguration.mountPoint])
                    report.line(.up, "pool over ssh", "sshd pid \(agent.pid) on 127.0.0.1:\(agent.port): root may run only `\(program) agent --allow \(lab.storageConfiguration.mountPoint)`")
                }
            } catch {
                report.line(.failed, "pool and iSCSI target", "\(error)")
            }
        } else {
            report.line(.skipped, "pool and iSCSI target", "left out (--no-storage)")
        }
        if withDHCP {
            do {
                let pid = try await lab.dhcp.up()
                report.line(.up, "DHCP server", Self.describeDHCP(pid: pid, lab.dhcpConfiguration))
            } catch {
                report.line(.failed, "DHCP server", "\(error)")
            }
        } else {
            report.line(.skipped, "DHCP server", "left out (--no-dhcp)")
        }
        if report.failures > 0 {
            output.errorLine("lab up: \(report.failures) part(s) failed; `virtform lab status --root \(options.root)` shows what runs, `virtform lab down --root \(options.root)` removes it")
            throw ExitCode(1)
        }
    }

    private func upHosts(_ lab: Lab, _ report: inout LabReport) async {
        var started: [LabHost]
        do {
            started = try await lab.hypervisors.up(hosts: hosts)
        } catch {
            report.line(.failed, "hosts", "\(error)")
            return
        }
        if lab.settings.overSSH {
            do {
                started = try await lab.ssh.up(started)
            } catch {
                report.line(.failed, "hosts over ssh", "\(error)")
                return
            }
        }
        for host in started {
            do {
                // libvirt's test driver keeps its domains only while a connection is open; one keeper
                // per host holds a connection for the lab's life so that separate commands see the same state.
                try LabKeeper.ensure(for: host, root: options.root)
                report.line(.up, "host \(host.name)", "libvirtd pid \(host.pid) as \(host.user), socket \(host.socketPath)")
                if let ssh = host.ssh { report.line(.up, "host \(host.name) over ssh", Self.describeSSH(ssh)) }
            } catch {
                report.line(.failed, "host \(host.name)", "\(error)")
            }
        }
        let hostsFile = (options.root as NSString).appendingPathComponent("hosts.yaml")
        do {
            try LabKeeper.hostEntries(started).write(toFile: hostsFile, atomically: true, encoding: .utf8)
            report.output.line(lab.settings.overSSH
                ? "        Host entries for these hosts over ssh: \(hostsFile) (examples/lab-over-ssh/hosts.yaml matches the default 3-host lab)."
                : "        Host entries for these hosts: \(hostsFile) (manifests/hosts.yaml matches the default 3-host lab).")
        } catch {
            report.line(.failed, "hosts", "failed to write \(hostsFile): \(error.localizedDescription)")
        }
    }

    static func describe(_ settings: LabSettings) -> String {
        "--user-prefix \(settings.userPrefix) --iscsi-port \(settings.iscsiPort) --tgt-control-port \(settings.tgtControlPort) "
            + "--dhcp-namespace \(settings.dhcpNamespace) --transport \(settings.transport ?? "unix")"
            + (settings.overSSH ? " --ssh-base-port \(settings.sshBasePort ?? 2220)" : "")
    }

    static func describeSSH(_ ssh: LabSSHAccess) -> String {
        "sshd pid \(ssh.pid) on 127.0.0.1:\(ssh.port): \(ssh.uri()) with key \(ssh.identity), known hosts \(ssh.knownHosts)"
    }

    static func reportStorage(_ status: StorageLabStatus, _ configuration: StorageLabConfiguration, _ report: inout LabReport) {
        if let device = status.poolDevice {
            report.line(.up, "pool", "btrfs in \(configuration.poolImage) on \(device), mounted at \(configuration.mountPoint)")
        } else {
            report.line(.down, "pool", "not mounted at \(configuration.mountPoint)")
        }
        if let pid = status.tgtdPID {
            report.line(.up, "iSCSI target", "tgtd pid \(pid), portal \(status.portal), control port \(status.controlPort)")
        } else {
            report.line(.down, "iSCSI target", "tgtd is not running (no live PID in \(configuration.pidFile))")
        }
    }

    static func describeDHCP(pid: Int32, _ configuration: DHCPLabConfiguration) -> String {
        "\(configuration.server == .kea ? "kea-dhcp4" : "dnsmasq") pid \(pid) in netns \(configuration.namespace), control socket \(configuration.controlSocket), "
            + "subnets \(configuration.subnets.map(\.cidr).joined(separator: ", "))"
    }
}

/// `virtform lab fence HOST`: the lab's stand-in for a fencing device (IPMI power off): the
/// host's daemon and guests are killed at once, as a power loss would. For `Host.spec.fence`.
struct LabFence: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fence",
        abstract: "Power a lab host off, as a fencing device would: its libvirt daemon and guests are killed at once (lab up brings it back).")

    @OptionGroup var options: LabOptions

    @Argument(help: "The lab host, e.g. lab-h1.")
    var host: String

    func run() async throws {
        let lab = try options.openLab()
        guard try await lab.hypervisors.fence(host) else {
            throw CommandFailure("the lab under \(options.root) has no host \(host)")
        }
        Output.current.line("fenced \(host): its libvirt daemon and guests were killed")
    }
}

struct LabDown: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down",
        abstract: "Stop every part of the lab and remove its runtime files (idempotent; the pool's file and the logs stay).")

    @OptionGroup var options: LabOptions

    func run() async throws {
        let output = Output.current
        let lab = try options.openLab()
        var report = LabReport(output: output)

        // The hosts' sshds, then the hosts: their guests use the iSCSI target's LUNs.
        if lab.sshMayRun {
            await report.attempt("hosts' sshds", .down, "stopped with their sessions, \(lab.ssh.directory) removed") {
                try await lab.ssh.down()
            }
        }
        if let problem = lab.foreignDaemons(hosts: nil) {
            report.line(.failed, "hosts", "left alone: \(problem)")
        } else {
            LabKeeper.stopAll(root: options.root)
            await report.attempt("hosts", .down, "libvirt daemons and guests stopped, runtime files removed (logs kept)") {
                try await lab.hypervisors.down()
            }
        }

        if options.noStorage {
            report.line(.skipped, "pool and iSCSI target", "left alone (--no-storage)")
        } else if !lab.storageMayRun {
            report.line(.down, "pool and iSCSI target", "not started under \(options.root)")
        } else if let problem = lab.foreignTgtd() {
            report.line(.failed, "pool and iSCSI target", "left alone: \(problem)")
        } else {
            let storage = lab.storageConfiguration
            await report.attempt("pool and iSCSI target", .down,
                                 "tgtd stopped, pool unmounted from \(storage.mountPoint) (\(storage.poolImage) kept)") {
                try await lab.storage.down()
            }
        }

        if options.noDhcp {
            report.line(.skipped, "DHCP server", "left alone (--no-dhcp)")
        } else if !lab.dhcpMayRun {
            report.line(.down, "DHCP server", "not started under \(options.root)")
        } else {
            let dhcp = lab.dhcpConfiguration
            await report.attempt("DHCP server", .down,
                                 "\(dhcp.server == .kea ? "kea-dhcp4" : "dnsmasq") stopped, netns \(dhcp.namespace) and \(dhcp.directory) removed") {
                try await lab.dhcp.down()
            }
        }

        if report.failures > 0 {
            output.errorLine("lab down: \(report.failures) part(s) failed to go down; fix what is named above and run it again")
            throw ExitCode(1)
        }
    }
}

struct LabStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show whether each part of the lab is up: hosts, pool, iSCSI target, DHCP server. Exit 1 if any is not.")

    @OptionGroup var options: LabOptions

    func run() async throws {
        let output = Output.current
        let lab = try options.openLab()
        var report = LabReport(output: output)
        var allUp = true

        let statuses = await lab.hypervisors.status()
        if statuses.isEmpty {
            allUp = false
            report.line(.down, "hosts", "no lab hosts under \(options.root)")
        }
        for status in statuses {
            switch status.state {
            case .up(let host):
                report.line(.up, "host \(status.name)", "libvirtd pid \(host.pid) as \(host.user), socket \(host.socketPath)")
                if lab.settings.overSSH {
                    if let ssh = try? await lab.ssh.access(status.index) {
                        report.line(.up, "host \(status.name) over ssh", LabUp.describeSSH(ssh))
                    } else {
                        allUp = false
                        report.line(.down, "host \(status.name) over ssh", "its sshd is not running")
                    }
                }
            case .down(let reason):
                allUp = false
                report.line(.down, "host \(status.name)", reason)
            case .unknown(let reason):
                allUp = false
                report.line(.unknown, "host \(status.name)", reason)
            }
        }

        // A lab brought up with --no-storage / --no-dhcp is not down for lacking those parts.
        if options.noStorage || (lab.recorded && !lab.settings.storage) {
            report.line(.skipped, "pool and iSCSI target", options.noStorage ? "not checked (--no-storage)" : "not part of this lab (started with --no-storage)")
        } else {
            let status = await lab.storage.status()
            if !status.isUp { allUp = false }
            LabUp.reportStorage(status, lab.storageConfiguration, &report)
        }

        if options.noDhcp || (lab.recorded && !lab.settings.dhcp) {
            report.line(.skipped, "DHCP server", options.noDhcp ? "not checked (--no-dhcp)" : "not part of this lab (started with --no-dhcp)")
        } else {
            switch await lab.dhcp.status() {
            case .up(let pid): report.line(.up, "DHCP server", LabUp.describeDHCP(pid: pid, lab.dhcpConfiguration))
            case .down(let reason):
                allUp = false
                report.line(.down, "DHCP server", reason)
            case .unknown(let reason):
                allUp = false
                report.line(.unknown, "DHCP server", reason)
            }
        }
        if !allUp { throw ExitCode(1) }
    }
}
