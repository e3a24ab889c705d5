import ArgumentParser
import Foundation
import VirtformRemote

/// `virtform agent`: the far side of a pool or dnsmasq server with `spec.ssh`. Reads one
/// request (JSON) from standard input, runs it with the local driver, writes the reply (JSON)
/// to standard output. Meant to be the forced command of virtform's key on that machine:
/// `command="virtform agent --allow /srv/pool",restrict ssh-ed25519 AAAA…` in authorized_keys.
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Serve one request of a remote virtform on this machine (run by ssh; reads JSON on stdin, writes JSON on stdout).",
        discussion: "A storage pool or dnsmasq server whose manifest has spec.ssh is driven through this command on its machine. Make it the forced command of virtform's key there, with --allow naming the pool's folder and the hosts file's directory: the key can then do nothing else.")

    @Option(name: .customLong("allow"), help: ArgumentHelp("A directory requests may name (a pool's folder, a hosts file's directory); repeat it for more. Without it, any.", valueName: "dir"))
    var allowed: [String] = []

    @Option(name: .customLong("allow-dataset"), help: ArgumentHelp("A zfs dataset requests may name (with what is below it); repeat it for more. With --allow and without it, zfs is refused.", valueName: "dataset"))
    var allowedDatasets: [String] = []

    func validate() throws {
        for directory in allowed where !directory.hasPrefix("/") {
            throw ValidationError("--allow takes absolute directories, not '\(directory)'")
        }
    }

    func run() async throws {
        let input = FileHandle.standardInput.readDataToEndOfFile()
        let reply = await Agent(allowed: allowed, allowedDatasets: allowedDatasets).reply(to: input)
        FileHandle.standardOutput.write(reply)
    }
}
