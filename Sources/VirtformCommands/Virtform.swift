import ArgumentParser

/// The `virtform` command: its subcommands live one per file, grouped by what they act on.
public struct Virtform: AsyncParsableCommand {
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
