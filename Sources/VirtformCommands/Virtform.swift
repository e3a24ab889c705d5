import ArgumentParser
import Foundation
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
        // Process-wide: a peer that dies mid-write (libvirtd, Kea, a program's pipe) fails that
        // write with EPIPE instead of killing virtform.
        signal(SIGPIPE, SIG_IGN)
    }

    public static let configuration = CommandConfiguration(
        commandName: "virtform",
        abstract: "Keep libvirt hypervisors, shared iSCSI storage and DHCP in the state your manifests describe.",
        version: virtformVersion,
        subcommands: [ValidateCommand.self, PlanCommand.self, ApplyCommand.self, DriftCommand.self, LabCommand.self,
                      ReconcileCommand.self, HistoryCommand.self, LockCommand.self, ImportCommand.self, SchemaCommand.self, GraphCommand.self, CompletionCommand.self, FmtCommand.self,
                      AgentCommand.self]
    )

    public init() {}

    /// The executable's whole run: parse, run, and on failure write the error through
    /// `Output` (redacted, like everything virtform writes) and exit with its code. Help and
    /// version requests exit 0 as ArgumentParser prints them.
    public static func run(_ arguments: [String]? = nil) async -> Never {
        do {
            var command = try parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            exit()
        } catch {
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if !message.isEmpty {
                let output = Output.standard
                if code == .success { output.write(message + "\n") } else { output.writeError(message + "\n") }
            }
            exit(withError: code == .success ? nil : ExitCode(code.rawValue))
        }
    }
}

public let virtformVersion = "0.1.0"
