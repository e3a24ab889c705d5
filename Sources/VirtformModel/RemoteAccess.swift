/// The files an SSH client uses to reach another machine: the private key it logs in with and
/// the known_hosts file that machine's host key must be in. Paths are absolute: a manifest's
/// relative paths are resolved against its own directory when it is loaded.
public struct SSHClientFiles: Hashable, Sendable {
    public var identity: String?
    public var knownHosts: String?

    public init(identity: String? = nil, knownHosts: String? = nil) {
        self.identity = identity
        self.knownHosts = knownHosts
    }
}

/// Another machine reached with OpenSSH's client to run `virtform agent` there (a storage
/// appliance, a dnsmasq server): the agent is given its request on standard input, so the
/// remote command line is always the same fixed words, never built from manifest values.
public struct SSHAccess: Hashable, Sendable, Codable {
    /// `user@host`.
    public var target: String
    public var port: Int?
    public var identity: String?
    public var knownHosts: String?
    /// The program run there, `virtform` by default (an authorized_keys `command=` may force it).
    public var agent: String?

    public init(target: String, port: Int? = nil, identity: String? = nil, knownHosts: String? = nil, agent: String? = nil) {
        self.target = target
        self.port = port
        self.identity = identity
        self.knownHosts = knownHosts
        self.agent = agent
    }

    /// `host:port` for messages.
    public var address: String { "\(target.split(separator: "@").last.map(String.init) ?? target):\(port ?? 22)" }
}

extension Host {
    /// libvirt's SSH transport named by the URI's scheme (`qemu+libssh://…` → `libssh`), nil for
    /// any other transport.
    public var sshTransport: String? {
        guard let colon = uri.firstIndex(of: ":"), uri[colon...].hasPrefix("://"), let plus = uri[..<colon].firstIndex(of: "+") else { return nil }
        let transport = uri[uri.index(after: plus)..<colon].lowercased()
        return ["ssh", "libssh", "libssh2"].contains(transport) ? transport : nil
    }

    /// The URI virtform opens: `uri` with `spec.ssh`'s files as libvirt's query parameters
    /// (`keyfile`, `known_hosts`, and `sshauth=privkey` for libssh, so that only the key is
    /// tried). Plans and messages show `uri`.
    public var connectionURI: String {
        guard let ssh, sshTransport != nil else { return uri }
        var parameters: [String] = []
        if let identity = ssh.identity { parameters.append("keyfile=" + Self.escaped(identity)) }
        if let knownHosts = ssh.knownHosts { parameters.append("known_hosts=" + Self.escaped(knownHosts)) }
        if ssh.identity != nil, sshTransport != "ssh", !uri.contains("sshauth=") { parameters.append("sshauth=privkey") }
        guard !parameters.isEmpty else { return uri }
        return uri + (uri.contains("?") ? "&" : "?") + parameters.joined(separator: "&")
    }

    /// `text` as a URI query value: letters, digits and `/._-~` stay, the rest is %-escaped.
    static func escaped(_ text: String) -> String {
        var result = ""
        for byte in text.utf8 {
            let scalar = Unicode.Scalar(byte)
            if ("0"..."9").contains(scalar) || ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || "/._-~".unicodeScalars.contains(scalar) {
                result.unicodeScalars.append(scalar)
            } else {
                result += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return result
    }
}

private extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

/// Where a secret comes from: an environment variable or a file of the machine virtform runs
/// on. Only the reference is in manifests, plans, JSON and messages — never the value, which
/// is read when a system is read or changed (`(sensitive)` wherever it would be shown).
public struct SecretRef: Hashable, Sendable, Codable, CustomStringConvertible {
    public enum Source: Hashable, Sendable, Codable {
        case environment(String)
        case file(String)
    }
    public var source: Source

    public init(_ source: Source) { self.source = source }

    /// `$NAME` or `file PATH`: what to set, never what it holds.
    public var description: String {
        switch source {
        case .environment(let name): "$\(name)"
        case .file(let path): "file \(path)"
        }
    }

    /// As the manifest writes it: `{"env": NAME}` or `{"file": PATH}`.
    private enum CodingKeys: String, CodingKey { case env, file }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if let name = try container.decodeIfPresent(String.self, forKey: .env) {
            source = .environment(name)
        } else {
            source = .file(try container.decode(String.self, forKey: .file))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch source {
        case .environment(let name): try container.encode(name, forKey: .env)
        case .file(let path): try container.encode(path, forKey: .file)
        }
    }
}

/// CHAP for a pool's iSCSI targets: the account the hypervisors log in with, and optionally
/// the one the target answers with (mutual CHAP).
public struct CHAPSettings: Hashable, Sendable, Codable {
    public struct Account: Hashable, Sendable, Codable {
        public var username: String
        public var secret: SecretRef
        public init(username: String, secret: SecretRef) {
            self.username = username
            self.secret = secret
        }
    }
    public var initiator: Account
    public var mutual: Account?

    public init(initiator: Account, mutual: Account? = nil) {
        self.initiator = initiator
        self.mutual = mutual
    }
}

extension ISCSIExport {
    /// The usage of the libvirt secret holding the CHAP secret on each host: named after the
    /// export and its account, so that domains' `<auth>` find it.
    public var secretUsage: String { "virtform:\(iqnPrefix):\(chap?.initiator.username ?? "")" }
}
