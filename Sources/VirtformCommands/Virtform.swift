import ArgumentParser
import Libvirt

/// The `virtform` command: its subcommands live one per file, grouped by what they act on.
public struct Virtform: AsyncParsableCommand {
    /// Process-wide setup for the `virtform` executable, before any command runs: no command
    /// needs libvirt's domain events, and without the event loop every RPC runs on its calling
    /// thread alone. A site with remote hosts turns it back on for their keepalive
    /// (`Reconciliation.make`); the benchmarks in docs/performance.md are all local, without it.
    /// Tests that run commands in-process keep the loop for the suites that watch events.
    public static func prepareProcess() {
        LibvirtRuntime.setEventLoopEnabled(false)
    }

    public static let configuration = CommandConfiguration(
        commandName: "virtform",
        abstract: "Keep libvirt hypervisors, shared iSCSI storage and DHCP in the state your manifests describe.",
        version: virtformVersion,
        subcommands: [ValidateCommand.self, PlanCommand.self, ApplyCommand.self, DriftCommand.self, LabCommand.self,
                      SchemaCommand.self]
    )

    public init() {}
}

public let virtformVersion = "0.1.0"
