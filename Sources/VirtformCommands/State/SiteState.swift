import ArgumentParser
import Foundation
import VirtformModel
import VirtformState

/// `--backend`: where the site's apply lock and run history live.
struct BackendOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Where the apply lock and the run history live: file:DIR or postgres://user@host:port/database.",
        discussion: "Without it: $VIRTFORM_BACKEND, else the Site document's spec.backend, else an SQLite database in /var/lib/virtform (root) or $XDG_STATE_HOME/virtform. A PostgreSQL password comes from PGPASSWORD."))
    var backend: String?

    /// The location for `site`: the option, the environment, the Site document, the default.
    func location(for site: Site, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> BackendLocation {
        do {
            if let backend { return try BackendLocation(parsing: backend) }
            if let backend = environment["VIRTFORM_BACKEND"], !backend.isEmpty { return try BackendLocation(parsing: backend) }
            if let declaration = site.declarations.first, let backend = declaration.backend {
                let file = declaration.provenance.document.file
                let base = file.isEmpty ? nil : (file as NSString).deletingLastPathComponent
                return try BackendLocation(parsing: backend, base: base.map { $0.isEmpty ? "." : $0 })
            }
            return BackendLocation.defaultLocation(environment: environment)
        } catch let error as StateError {
            throw ValidationError(error.message)
        }
    }

    /// Opens the site's backend, or fails naming where it was looked for.
    func open(for site: Site) async throws -> any StateBackend {
        let location = try location(for: site)
        do {
            return try await StateBackends.open(location, site: site.name)
        } catch let error as StateError {
            throw CommandFailure(error.message)
        }
    }
}

extension BackendOptions {
    /// For commands that only read (plan, drift): the backend, or why it cannot be used, as a
    /// warning for the plan — a backend that is down never stops a plan.
    func openForReading(for site: Site) async -> (backend: (any StateBackend)?, warning: String?) {
        do {
            return (try await StateBackends.open(try location(for: site), site: site.name), nil)
        } catch let error as StateError {
            return (nil, "the apply lock and run history cannot be read: \(error.message)")
        } catch {
            return (nil, "the apply lock and run history cannot be read: \(error)")
        }
    }
}

/// The site `lock` and `history` act on: from the manifests when there are any, or named.
struct StateSiteOptions: ParsableArguments {
    @Option(name: .customLong("manifests"), help: "Manifest files or directories naming the site and its backend. Default: manifests, when it exists.")
    var manifests: [String] = []

    @Option(help: "The site's name, instead of the manifests' Site document.")
    var site: String?

    @OptionGroup var backend: BackendOptions

    /// The site: loaded from the manifests (only its `Site` document matters), or just a name.
    func resolve() throws -> Site {
        var result = Site()
        let paths = manifests.isEmpty ? (FileManager.default.fileExists(atPath: "manifests") ? ["manifests"] : []) : manifests
        if !paths.isEmpty { result = try SiteOptions.parse(paths).load() }
        if let site { result.name = site }
        return result
    }
}
