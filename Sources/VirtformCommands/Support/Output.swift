import ArgumentParser
import Foundation
import VirtformModel

/// Where a command writes. Commands never call `print` directly, so tests can capture what they
/// say and whether it would be coloured.
public struct Output: Sendable {
    private let sink: @Sendable (String) -> Void
    private let errorSink: @Sendable (String) -> Void
    /// Colour and other terminal niceties are used only on a terminal, and never with NO_COLOR set.
    public var useColor: Bool

    /// `write` and `writeError` receive everything already redacted: passwords in URIs never
    /// reach a terminal, a pipe, a file or a test's capture (`Redaction`).
    public init(write: @escaping @Sendable (String) -> Void, writeError: @escaping @Sendable (String) -> Void, useColor: Bool) {
        self.sink = write
        self.errorSink = writeError
        self.useColor = useColor
    }

    public func write(_ text: String) { sink(Redaction.redacted(text)) }
    public func writeError(_ text: String) { errorSink(Redaction.redacted(text)) }

    /// Each call is one `write(2)` of the whole text (a line as it happens, even into a pipe),
    /// without the copy into `Data` that `FileHandle` makes: apply writes two lines per action.
    public static let standard = Output(
        write: { text in writeAll(STDOUT_FILENO, text) },
        writeError: { text in writeAll(STDERR_FILENO, text) },
        useColor: isatty(STDOUT_FILENO) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
    )

    @TaskLocal public static var current = Output.standard

    /// For text rendered into a file: no colour (it writes nothing itself).
    public static let plain = Output(write: { _ in }, writeError: { _ in }, useColor: false)

    static func writeAll(_ descriptor: Int32, _ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Foundation.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return  // a closed pipe or a full disk: nothing more to say there
                }
                offset += written
            }
        }
    }

    public func line(_ text: String = "") { write(text + "\n") }
    public func errorLine(_ text: String) { writeError(text + "\n") }

    public func paint(_ text: String, _ color: Color) -> String {
        useColor ? "\u{1B}[\(color.rawValue)m\(text)\u{1B}[0m" : text
    }

    public enum Color: String, Sendable {
        case red = "31"
        case green = "32"
        case yellow = "33"
        case cyan = "36"
        case bold = "1"
        case dim = "2"
    }
}

/// Output formats shared by the commands that report.
public enum ReportFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case text
    case json
}
