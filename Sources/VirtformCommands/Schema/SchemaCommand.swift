import ArgumentParser
import Foundation
import VirtformManifests

/// `virtform schema`: the manifest language as JSON Schema, for editors.
struct SchemaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schema",
        abstract: "Print the JSON Schema of the manifest language (for yaml-language-server and other editors)."
    )

    @Option(name: .shortAndLong, help: "Write the schema to this file instead of standard output.")
    var out: String?

    func run() async throws {
        let schema = JSONSchema.render()
        if let out {
            do {
                try schema.write(toFile: out, atomically: true, encoding: .utf8)
            } catch {
                throw CommandFailure("failed to write the schema to \(out): \(error.localizedDescription)")
            }
        } else {
            Output.current.write(schema)
        }
    }
}
