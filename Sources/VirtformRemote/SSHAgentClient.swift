import Foundation
import VirtformModel
import VirtformSystem

/// Sends one request to `virtform agent` on another machine with OpenSSH's client and returns
/// its reply. The command line is fixed — `ssh [options] TARGET -- AGENT agent` — and the
/// request travels on standard input, so no manifest value is ever parsed by a remote shell.
/// Host keys are checked strictly (`StrictHostKeyChecking=yes`, the access's known_hosts file
/// when it names one); a dead link is noticed by `ServerAlive*` (5 s, 3 probes).
public struct SSHAgentClient: Sendable {
    public let access: SSHAccess
    /// What the reply is awaited for at most (a clone of a large image, a dnsmasq reload).
    public let timeout: Duration

    public init(access: SSHAccess, timeout: Duration = .seconds(300)) {
        self.access = access
        self.timeout = timeout
    }

    /// The argument vector run on this machine.
    public var arguments: [String] {
        var arguments = [Executables.find("ssh") ?? "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                         "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "ConnectTimeout=10",
                         "-o", "LogLevel=ERROR", "-T"]
        if let port = access.port { arguments += ["-p", "\(port)"] }
        if let identity = access.identity { arguments += ["-i", identity, "-o", "IdentitiesOnly=yes"] }
        if let knownHosts = access.knownHosts { arguments += ["-o", "UserKnownHostsFile=\(knownHosts)", "-o", "GlobalKnownHostsFile=/dev/null"] }
        // `--` ends ssh's options; the two words after the target are all the remote side runs.
        arguments += ["--", access.target, access.agent ?? "virtform", "agent"]
        return arguments
    }

    /// Sends `request`, returns the agent's result, or throws its failure (as the driver's own
    /// error type when `translate` knows it).
    public func call<Result: Codable & Sendable>(_ request: AgentRequest, _ type: Result.Type = Result.self) async throws -> Result {
        let input = try JSONEncoder().encode(request)
        let outcome = try await Command.run(arguments, input: input, timeout: timeout)
        // 255: ssh itself failed (connection, host key, authentication).
        if outcome.status == 255 || outcome.standardOutput.isEmpty {
            throw AgentFailure(domain: "agent", code: "unreachable", message: describeSSHFailure(outcome))
        }
        let reply: AgentReply<Result>
        do {
            reply = try JSONDecoder().decode(AgentReply<Result>.self, from: Data(outcome.standardOutput.utf8))
        } catch {
            throw AgentFailure(domain: "agent", code: "unreachable",
                               message: "the agent on \(access.target) answered something unreadable (exit \(outcome.status), \(outcome.standardOutput.utf8.count) bytes; is `virtform agent` what its key runs there?)")
        }
        if let failure = reply.failure { throw failure }
        guard let result = reply.result else {
            throw AgentFailure(domain: "agent", code: "unreachable", message: "the agent on \(access.target) gave no result")
        }
        return result
    }

    /// ssh's own failure in one line that names the machine (and the known_hosts file when the
    /// host key was the problem).
    func describeSSHFailure(_ outcome: CommandResult) -> String {
        let said = outcome.standardError.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let text = said.joined(separator: " ")
        let file = access.knownHosts ?? "~/.ssh/known_hosts"
        if text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") || text.contains("Host key for") && text.contains("has changed") {
            return "the SSH host key of \(access.address) differs from the one in \(file): compare its fingerprint with the machine's own, then replace its line"
        }
        if text.contains("No ED25519 host key is known") || text.contains("No RSA host key is known") || text.contains("No ECDSA host key is known")
            || text.contains("Host key verification failed") {
            return "the SSH host key of \(access.address) is unknown or changed: it is not in \(file) as it is now; compare its fingerprint with the machine's own and add it"
        }
        if said.isEmpty { return "ssh to \(access.target) ended with status \(outcome.status) and no answer from the agent" }
        return "ssh to \(access.target) failed (status \(outcome.status)): \(said.suffix(3).joined(separator: "; "))"
    }
}
