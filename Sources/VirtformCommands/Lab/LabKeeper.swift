import ArgumentParser
import Foundation
import VirtformLab

/// Keeps one connection to each lab host's test driver open (see `LabUp`).
enum LabKeeper {
    static func pidFile(_ root: String, _ host: String) -> String {
        (root as NSString).appendingPathComponent("\(host)/keeper.pid")
    }

    static func ensure(for host: LabHost, root: String) throws {
        let file = pidFile(root, host.name)
        if let text = try? String(contentsOfFile: file, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
            kill(pid, 0) == 0 {
            return
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/virsh")
        process.arguments = ["-q", "-c", host.testURI, "event", "--all", "--loop"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw CommandFailure("failed to start the test-driver keeper for \(host.name) (virsh): \(error.localizedDescription)")
        }
        try "\(process.processIdentifier)\n".write(toFile: file, atomically: true, encoding: .utf8)
        // The test driver starts with a demo domain named `test` (8 GiB, running). It is the lab's
        // own daemon, so the lab removes it; otherwise it would fill every lab host's capacity.
        // Until the keeper's connection is open, a removal is forgotten when virsh disconnects,
        // so retry until a fresh connection no longer sees it (bounded).
        let deadline = Date().addingTimeInterval(10)
        repeat {
            _ = virsh(host, ["destroy", "test"])
            _ = virsh(host, ["undefine", "test"])
            if let names = virsh(host, ["list", "--all", "--name"]), !names.split(separator: "\n").contains("test") { return }
            Thread.sleep(forTimeInterval: 0.1)
        } while Date() < deadline
        throw CommandFailure("failed to prepare \(host.name)'s test driver: its built-in domain `test` keeps coming back")
    }

    /// Runs virsh against the host's test driver; its standard output, or nil when it failed.
    private static func virsh(_ host: LabHost, _ arguments: [String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/virsh")
        process.arguments = ["-q", "-c", host.testURI] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return process.terminationStatus == 0 ? String(decoding: data, as: UTF8.self) : nil
    }

    static func stopAll(root: String) {
        for host in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
            let file = pidFile(root, host)
            if let text = try? String(contentsOfFile: file, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                kill(pid, SIGTERM)
            }
            try? FileManager.default.removeItem(atPath: file)
        }
    }

    /// Host manifests for the lab, pointing at the daemons just started.
    /// The host's `uri` (and `ssh`) lines: over its sshd when the lab runs one (libvirt's
    /// libssh client, checked against the lab's known_hosts), else its daemon's socket.
    private static func uri(_ host: LabHost) -> String {
        guard let ssh = host.ssh else { return "  uri: \(host.qemuURI)" }
        return """
              uri: \(ssh.uri())
              ssh: {identity: \(ssh.identity), knownHosts: \(ssh.knownHosts)}
            """
    }

    static func hostEntries(_ hosts: [LabHost]) -> String {
        hosts.map { host in
            """
            apiVersion: virtform.io/v1alpha1
            kind: Host
            metadata:
              name: \(host.name)
              labels:
                segment: \(host.index % 2 == 1 ? "odd" : "even")
            spec:
            \(uri(host))
              capacity: {memory: 1GiB, vcpus: 4, maxGuests: 4}
              bridges: [fe0, be0]
              migrationAddress: 127.0.0.1
              domainType: qemu
              guestNetworking: user-mode

            """
        }.joined(separator: "---\n")
    }
}
