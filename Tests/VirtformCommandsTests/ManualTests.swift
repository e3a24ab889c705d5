import Foundation
import Testing
import VirtformSystem

/// The man page scripts/setup installs is made from the commands themselves and current: every
/// command and every long option the executable knows (its `--experimental-dump-help`, which
/// the manual generation reads) is in it.
@Suite("The installed man page")
struct ManualTests {
    static let page = "/usr/local/share/man/man1/virtform.1"

    @Test(.enabled(if: FileManager.default.fileExists(atPath: page), "scripts/setup installs it"))
    func namesEveryCommandAndOption() async throws {
        let executable = try #require(virtformExecutable())
        let command = [executable, "--experimental-dump-help"]
        let dump = try await Command.run(command).checked(command).standardOutput
        let root = try #require(try JSONSerialization.jsonObject(with: Data(dump.utf8)) as? [String: Any])
        let manual = try String(contentsOfFile: Self.page, encoding: .utf8)
        var checked = 0
        func walk(_ command: [String: Any], path: String) {
            for argument in command["arguments"] as? [[String: Any]] ?? [] where argument["shouldDisplay"] as? Bool != false {
                for name in argument["names"] as? [[String: Any]] ?? [] where name["kind"] as? String == "long" {
                    let option = "Fl -\(name["name"] as? String ?? "?")"
                    #expect(manual.contains(option), "\(path): \(option) is not in \(Self.page); run scripts/setup again")
                    checked += 1
                }
            }
            for sub in command["subcommands"] as? [[String: Any]] ?? [] {
                let name = sub["commandName"] as? String ?? "?"
                guard name != "help" else { continue }
                #expect(manual.contains(".It Em \(name)\n"), "\(path) \(name) is not in \(Self.page); run scripts/setup again")
                walk(sub, path: "\(path) \(name)")
            }
        }
        walk(try #require(root["command"] as? [String: Any]), path: "virtform")
        #expect(checked > 30, "the dump names \(checked) options")
    }
}
