import ArgumentParser
import Foundation
import Logging
import Synchronization
import VirtformModel

/// How a long-running command logs (swift-log): one line per event on standard error, as text
/// for a terminal or as JSON lines for a log collector (journald, Loki, Elasticsearch).
enum LogFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case text, json
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

enum LogSetup {
    /// Sets the process's log handler once (swift-log allows one bootstrap per process; a second
    /// call, as in tests that run the command in-process twice, keeps the first).
    static func bootstrap(format: LogFormat, level: Logger.Level) {
        let done = bootstrapped.withLock { was in defer { was = true }; return was }
        guard !done else { return }
        LoggingSystem.bootstrap { label in
            var handler = LineLogHandler(label: label, format: format)
            handler.logLevel = level
            return handler
        }
    }

    private static let bootstrapped = Mutex(false)
}

/// One line per event on standard error, every value redacted: as JSON (`time`, `level`,
/// `logger`, `message`, then the metadata's keys) or as text
/// (`2026-12-07T23:01:02.345Z info reconcile: message key=value …`).
struct LineLogHandler: LogHandler {
    let label: String
    let format: LogFormat
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let keys = merged.keys.sorted()
        switch format {
        case .json:
            var fields: [(String, String)] = [("time", LogTime.now()), ("level", event.level.rawValue), ("logger", label), ("message", "\(event.message)")]
            for key in keys { fields.append((key, "\(merged[key]!)")) }
            let line = "{" + fields.map { JSONText.quoted($0.0) + ":" + JSONText.quoted(Redaction.redacted($0.1)) }.joined(separator: ",") + "}\n"
            LogTime.write(line)
        case .text:
            var line = "\(LogTime.now()) \(event.level.rawValue) \(label): \(event.message)"
            for key in keys {
                let value = "\(merged[key]!)"
                line += " \(key)=" + (value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) || value.isEmpty ? JSONText.quoted(value) : value)
            }
            LogTime.write(Redaction.escapingControls(Redaction.redacted(line)) + "\n")
        }
    }
}

/// JSON string literals, for the log lines (the rest of virtform encodes with `JSONEncoder`).
enum JSONText {
    static func quoted(_ text: String) -> String {
        var out = "\""
        out.reserveCapacity(text.utf8.count + 2)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

enum LogTime {
    private static let formatter: Mutex<ISO8601DateFormatter> = {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return Mutex(formatter)
    }()

    static func now() -> String { formatter.withLock { $0.string(from: Date()) } }

    static func write(_ line: String) { Output.writeAll(STDERR_FILENO, line) }
}
