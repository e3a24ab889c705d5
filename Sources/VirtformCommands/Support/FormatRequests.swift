import ArgumentParser
import Foundation
import VirtformModel

/// One `--format FORMAT[=FILE]`: a format for standard output, or one written to a file, so a
/// CI job gets the text for its log and the files for its CI system from a single run:
/// `virtform plan --format markdown=plan.md --format json=plan.json`.
struct FormatRequest<Format>: ExpressibleByArgument, Sendable
where Format: RawRepresentable & CaseIterable & Sendable, Format.RawValue == String {
    var format: Format
    /// nil: standard output.
    var file: String?

    init(_ format: Format, file: String? = nil) {
        self.format = format
        self.file = file
    }

    init?(argument: String) {
        var name = Substring(argument)
        var file: String?
        if let equals = argument.firstIndex(of: "=") {
            name = argument[..<equals]
            file = String(argument[argument.index(after: equals)...])
            guard file?.isEmpty == false else { return nil }
        }
        guard let format = Format(rawValue: String(name)) else { return nil }
        self.init(format, file: file)
    }

    static var allValueStrings: [String] { Format.allCases.map(\.rawValue) }

    var defaultValueDescription: String { format.rawValue + (file.map { "=" + $0 } ?? "") }
}

/// What the `--format` options of one run ask for.
struct FormatRequests<Format>: Sendable where Format: RawRepresentable & CaseIterable & Sendable & Equatable, Format.RawValue == String {
    /// What standard output gets: the format given without a file, else `fallback`.
    var standardOutput: Format
    /// Every format given with a file, in the order given.
    var files: [(format: Format, path: String)]

    /// Refuses (exit 64) two formats for standard output, or one file named twice.
    init(_ requests: [FormatRequest<Format>], fallback: Format) throws {
        let toOutput = requests.filter { $0.file == nil }
        guard toOutput.count <= 1 else {
            throw ValidationError("--format without a file may be given once (standard output gets one format), not \(toOutput.map(\.format.rawValue).joined(separator: " and ")); write the others to files: --format FORMAT=FILE")
        }
        standardOutput = toOutput.first?.format ?? fallback
        files = requests.compactMap { request in request.file.map { (request.format, $0) } }
        var seen = Set<String>()
        for (_, path) in files where !seen.insert(path).inserted {
            throw ValidationError("--format names \(path) twice; give each format its own file")
        }
    }

    /// Whether `format` goes anywhere: to standard output or to a file.
    func wants(_ format: Format) -> Bool { standardOutput == format || files.contains { $0.format == format } }

    /// Writes each requested file with `render(format)`.
    func writeFiles(_ render: (Format) -> String) throws {
        for (format, path) in files { try Report.write(render(format), to: path) }
    }
}

enum Report {
    /// Writes a report (atomically, secrets in URIs redacted), failing with the path's name.
    static func write(_ text: String, to path: String) throws {
        do {
            try Redaction.redacted(text).write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw CommandFailure("failed to write \(path): \(error.localizedDescription)")
        }
    }
}
