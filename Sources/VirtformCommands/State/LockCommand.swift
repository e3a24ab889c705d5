import ArgumentParser
import Foundation
import VirtformState

/// `virtform lock status|release`: the site's apply lock, who holds it, and letting it go.
struct LockCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lock",
        abstract: "Show who holds the site's apply lock, or release it.",
        discussion: "A holder whose process (embedded backend) or session (PostgreSQL) ended has released the lock by itself; release is for the rest.",
        subcommands: [Status.self, Release.self]
    )

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Who holds the apply lock: run, user@machine, pid, CI job, plan, since when, last heartbeat. Exit status 0 when free, 2 when held.")

        @OptionGroup var target: StateSiteOptions

        @Flag(help: "Write JSON instead of text.")
        var json = false

        func run() async throws {
            let site = try target.resolve()
            let backend = try await target.backend.open(for: site)
            let state: LockState
            do {
                state = try await backend.status()
            } catch {
                await backend.close()
                throw CommandFailure("\(error)")
            }
            await backend.close()
            let output = Output.current
            if json {
                struct Document: Encodable {
                    var site: String
                    var backend: String
                    var held: Bool
                    var holder: LockHolder?
                    var staleHolder: LockHolder?
                }
                var document = Document(site: site.name, backend: backend.location, held: false)
                switch state {
                case .free(let stale): document.staleHolder = stale
                case .held(let holder):
                    document.held = true
                    document.holder = holder
                }
                output.line(try HistoryCommand.json(document))
            } else {
                switch state {
                case .free(nil):
                    output.line("The apply lock of site \(site.name) (\(backend.location)) is free.")
                case .free(let stale?):
                    output.line("The apply lock of site \(site.name) (\(backend.location)) is free; its last holder ended without releasing it:")
                    output.line(Self.indent(stale.describe()))
                    output.line("(`virtform lock release \(stale.run)` removes that record; `virtform history \(stale.run)` shows what it did.)")
                case .held(let holder?):
                    output.line("The apply lock of site \(site.name) (\(backend.location)) is held by")
                    output.line(Self.indent(holder.describe()))
                case .held(nil):
                    output.line("The apply lock of site \(site.name) (\(backend.location)) is held by a run that has not recorded itself yet.")
                }
            }
            if case .held = state { throw ExitCode(2) }
        }

        static func indent(_ text: String) -> String {
            text.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n")
        }
    }

    struct Release: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Release the apply lock that run RUN holds.",
            discussion: "Without --force only a lock whose holder is gone is cleared. With --force a live holder is ended: its process on this machine (embedded backend, SIGTERM: it ends at once, and the next apply converges as after any kill) or its session on the server (PostgreSQL, pg_terminate_backend: that apply stops starting anything new).")

        @Argument(help: "The run that holds the lock (as `virtform lock status` names it).")
        var run: String

        @Flag(help: "End a holder that is still alive.")
        var force = false

        @OptionGroup var target: StateSiteOptions

        func run() async throws {
            let site = try target.resolve()
            let backend = try await target.backend.open(for: site)
            do {
                let said = try await backend.release(run: run, force: force)
                await backend.close()
                Output.current.line(said.prefix(1).uppercased() + said.dropFirst() + ".")
            } catch {
                await backend.close()
                throw CommandFailure("\(error)")
            }
        }
    }
}
