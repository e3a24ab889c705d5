import Foundation
import VirtformSystem

#if canImport(Glibc)
    import Glibc
#endif

/// A throw-away PostgreSQL server for the state backend's tests: Debian's postgresql, a new
/// cluster in a fresh directory under /tmp (`initdb`, trust authentication, superuser
/// `virtform`), listening on a free loopback port only, its socket in that directory. Run as
/// the `postgres` user when this process is root (initdb refuses root). Stopped by the
/// postmaster's own PID (fast shutdown, then SIGKILL) and its directory removed.
public final class PostgresLab: Sendable {
    public let root: String
    public let port: Int
    public let pid: Int32
    /// The superuser of the cluster.
    public let user = "virtform"

    /// A URL of this server for `--backend`, on database `database`.
    public func url(database: String = "postgres") -> String { "postgres://\(user)@127.0.0.1:\(port)/\(database)" }

    private init(root: String, port: Int, pid: Int32) {
        self.root = root
        self.port = port
        self.pid = pid
    }

    /// The directory of Debian's PostgreSQL programs (the newest version installed), or nil.
    public static func binaries() -> String? {
        let base = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).compactMap(Int.init).sorted()
        for version in versions.reversed() where FileManager.default.isExecutableFile(atPath: "\(base)/\(version)/bin/initdb") {
            return "\(base)/\(version)/bin"
        }
        return nil
    }

    /// Why the lab cannot run here (no postgresql package, no postgres user to run it as), or nil.
    public static var unavailableReason: String? {
        guard binaries() != nil else { return "PostgreSQL is not installed (Debian package postgresql)" }
        if geteuid() == 0, (try? SystemUser.lookup("postgres")) == nil { return "there is no postgres user to run the server as" }
        return nil
    }

    /// Starts a server, runs `body`, and stops it, also when `body` throws.
    public static func with<T: Sendable>(_ body: @Sendable (PostgresLab) async throws -> T) async throws -> T {
        let lab = try await start()
        let outcome: Result<T, any Error>
        do { outcome = .success(try await body(lab)) } catch { outcome = .failure(error) }
        await lab.stop()
        return try outcome.get()
    }

    public static func start() async throws -> PostgresLab {
        guard let bin = binaries() else { throw LabError("PostgreSQL is not installed (Debian package postgresql)") }
        var template = Array("/tmp/vftest-pg-XXXXXX".utf8CString)
        guard let pointer = mkdtemp(&template) else { throw LabError("failed to create a directory for PostgreSQL: \(String(cString: strerror(errno)))") }
        let root = String(cString: pointer)
        let asPostgres = geteuid() == 0
        func command(_ arguments: [String]) -> [String] { asPostgres ? ["/usr/sbin/runuser", "-u", "postgres", "--"] + arguments : arguments }
        do {
            if asPostgres {
                guard let owner = try SystemUser.lookup("postgres") else { throw LabError("there is no postgres user to run the server as") }
                try FileSystem.setOwnerAndMode(root, mode: 0o700, owner: owner)
            }
            let initdb = command([bin + "/initdb", "-D", root + "/data", "-U", "virtform", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            let result = try await Command.run(initdb, timeout: .seconds(120))
            guard result.status == 0 else { throw LabError("initdb failed (exit \(result.status)): \(result.standardError)") }
            // A free port: the kernel picks one, and it is given to the server at once (another
            // program could take it in between; the start is then tried on another).
            var lastError: (any Error)?
            for _ in 0..<3 {
                let port = try LoopbackPort.free()
                let options = "-p \(port) -k \(root) -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
                let start = command([bin + "/pg_ctl", "-D", root + "/data", "-l", root + "/server.log", "-w", "-t", "60", "-o", options, "start"])
                let status = try await DaemonLauncher.run(start, logFile: root + "/pg_ctl.log", timeout: .seconds(90))
                if status == 0, let pid = postmasterPID(root) {
                    return PostgresLab(root: root, port: port, pid: pid)
                }
                if let pid = postmasterPID(root) { await stopPostmaster(pid) }
                let log = (try? String(contentsOfFile: root + "/server.log", encoding: .utf8)) ?? ""
                lastError = LabError("PostgreSQL did not start on port \(port) (pg_ctl exit \(status)): \(log.suffix(600))")
            }
            throw lastError ?? LabError("PostgreSQL did not start")
        } catch {
            try? FileManager.default.removeItem(atPath: root)
            throw error
        }
    }

    /// Stops the server by its PID and removes its directory.
    public func stop() async {
        await Self.stopPostmaster(pid)
        try? FileManager.default.removeItem(atPath: root)
    }

    private static func stopPostmaster(_ pid: Int32) async {
        // SIGINT is PostgreSQL's fast shutdown: clients are disconnected, not waited for.
        guard Processes.isRunning(pid) else { return }
        kill(pid, SIGINT)
        if await poll(within: .seconds(30), every: .milliseconds(50), { !Processes.isRunning(pid) }) { return }
        kill(pid, SIGKILL)
        _ = await poll(within: .seconds(5), every: .milliseconds(50)) { !Processes.isRunning(pid) }
    }

    private static func postmasterPID(_ root: String) -> Int32? {
        guard let text = try? String(contentsOfFile: root + "/data/postmaster.pid", encoding: .utf8) else { return nil }
        return text.split(separator: "\n").first.flatMap { Int32($0.trimmingCharacters(in: .whitespaces)) }
    }
}
