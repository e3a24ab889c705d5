import Foundation

/// "Only one apply at a time per site", across processes and machines, with who holds it.
public protocol SiteLock: Sendable {
    /// Takes the site's lock for `holder`, trying until `timeout` has passed (zero: once), or
    /// throws `.locked` with the holder's facts. `onLost` is called if the lock is taken away
    /// while held (the session to the server ended, `lock release --force`): the apply stops
    /// starting anything new.
    func acquire(_ holder: LockHolder, timeout: Duration, onLost: @escaping @Sendable (String) -> Void) async throws -> any LockLease
    /// Who holds the lock now, without taking it.
    func status() async throws -> LockState
    /// Releases the lock `run` holds. A lock whose holder died is released anyway (only its
    /// record is left); a live holder's only with `force`, which ends the holder's process on
    /// this machine or its session on the server.
    func release(run: String, force: Bool) async throws -> String
}

/// A lock taken: release it when done (also released when the process or session ends).
public protocol LockLease: Sendable {
    var holder: LockHolder { get }
    /// Records the plan being applied in the holder's facts.
    func update(planDigest: String) async
    func release() async
}

/// Every run and every action's outcome.
public protocol RunJournal: Sendable {
    func begin(_ run: RunRecord) async throws
    func record(_ actions: [ActionRecord]) async throws
    func finish(_ run: RunRecord) async throws
    /// Newest first.
    func runs(_ query: RunQuery) async throws -> [RunRecord]
    func run(_ id: String) async throws -> RunRecord?
    /// In order.
    func actions(of run: String) async throws -> [ActionRecord]
    /// Marks the site's runs still recorded as running, other than `except`, as abandoned (their
    /// process died: a new apply only starts once their lock is free). Returns their ids.
    func abandonUnfinished(site: String, except: String) async throws -> [String]
}

/// A site's lock and journal, in one place.
public protocol StateBackend: SiteLock, RunJournal {
    /// Where it is, for messages, with any password left out.
    var location: String { get }
    func close() async
}

/// Where a site's lock and journal live, as `--backend`, `VIRTFORM_BACKEND` or the `Site`
/// document's `spec.backend` names it.
public enum BackendLocation: Sendable, Equatable, CustomStringConvertible {
    /// The embedded backend: an SQLite database and lock files in a directory of this machine.
    case embedded(directory: String)
    /// A PostgreSQL server: `postgres://user[:password]@host[:port]/database`.
    case postgres(PostgresURL)

    /// Parses `file:DIR`, an absolute or relative path, or a `postgres://` / `postgresql://`
    /// URL. A relative directory is taken from `base` (the directory of the Site document).
    public init(parsing text: String, base: String? = nil) throws {
        if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            self = .postgres(try PostgresURL(parsing: text))
            return
        }
        var path = text
        if path.hasPrefix("file://") { path.removeFirst("file://".count) } else if path.hasPrefix("file:") { path.removeFirst("file:".count) }
        guard !path.isEmpty, !path.contains("://") else {
            throw StateError(.refused, "backend \(Self.redacted(text)) is neither a directory (file:DIR) nor a postgres:// URL")
        }
        if !path.hasPrefix("/") {
            let from = base ?? FileManager.default.currentDirectoryPath
            path = (from as NSString).appendingPathComponent(path)
        }
        self = .embedded(directory: (path as NSString).standardizingPath)
    }

    /// The default without any configuration: `/var/lib/virtform` for root, else
    /// `$XDG_STATE_HOME/virtform` (or `~/.local/state/virtform`).
    public static func defaultLocation(environment: [String: String] = ProcessInfo.processInfo.environment) -> BackendLocation {
        if geteuid() == 0 { return .embedded(directory: "/var/lib/virtform") }
        if let state = environment["XDG_STATE_HOME"], state.hasPrefix("/") { return .embedded(directory: state + "/virtform") }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return .embedded(directory: home + "/.local/state/virtform")
    }

    public var description: String {
        switch self {
        case .embedded(let directory): "file:\(directory)"
        case .postgres(let url): url.description
        }
    }

    /// `text` with a URL's password replaced by `***`.
    public static func redacted(_ text: String) -> String {
        guard let scheme = text.range(of: "://") else { return text }
        let authority = text[scheme.upperBound...].prefix { $0 != "/" && $0 != "?" }
        guard let at = authority.lastIndex(of: "@") else { return text }
        let credentials = text[scheme.upperBound..<at]
        guard let colon = credentials.firstIndex(of: ":") else { return text }
        return String(text[..<colon]) + ":***" + String(text[at...])
    }
}

/// `postgres://user[:password]@host[:port]/database`; the password may also come from
/// `PGPASSWORD`. Shown without the password.
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    public var user: String
    public var password: String?
    public var host: String
    public var port: Int
    public var database: String

    public init(parsing text: String) throws {
        guard let components = URLComponents(string: text), let host = components.host, !host.isEmpty else {
            throw StateError(.refused, "backend \(BackendLocation.redacted(text)) is not a URL of the form postgres://user@host:port/database")
        }
        guard components.query == nil else {
            // sslmode and friends would be silently ignored: this virtform connects without TLS.
            throw StateError(.refused, "backend \(BackendLocation.redacted(text)): options after '?' are not supported (virtform connects without TLS)")
        }
        self.host = host
        port = components.port ?? 5432
        user = components.user.flatMap { $0.isEmpty ? nil : $0 } ?? "virtform"
        password = components.password
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        database = path.isEmpty ? user : path
    }

    public var description: String { "postgres://\(user)\(password == nil ? "" : ":***")@\(host):\(port)/\(database)" }
}

/// Opens the backend a location names, for one site.
public enum StateBackends {
    public static func open(_ location: BackendLocation, site: String,
                            environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> any StateBackend {
        switch location {
        case .embedded(let directory): return try await EmbeddedBackend.open(directory: directory, site: site)
        case .postgres(var url):
            if url.password == nil, let password = environment["PGPASSWORD"], !password.isEmpty { url.password = password }
            return try await PostgresBackend.connect(url, site: site)
        }
    }
}
