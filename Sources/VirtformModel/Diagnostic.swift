/// One problem found in the manifests, with the place it was found.
public struct Diagnostic: Hashable, Sendable, Comparable {
    public enum Severity: String, Sendable, Hashable, Codable {
        case error
        case warning
    }

    public var severity: Severity
    public var location: SourceLocation
    /// `Kind/name` of the object, when the problem belongs to one.
    public var object: String?
    /// The field path inside the document, e.g. `spec.interfaces[1].network`; empty for the document itself.
    public var field: String
    public var message: String
    /// A replacement the user most likely meant (a misspelt key, kind or name).
    public var suggestion: String?

    public init(
        _ severity: Severity = .error, at location: SourceLocation, object: String? = nil,
        field: String = "", message: String, suggestion: String? = nil
    ) {
        self.severity = severity
        self.location = location
        self.object = object
        self.field = field
        self.message = message
        self.suggestion = suggestion
    }

    public static func < (a: Diagnostic, b: Diagnostic) -> Bool {
        if a.location != b.location { return a.location < b.location }
        if a.field != b.field { return a.field < b.field }
        return a.message < b.message
    }
}

extension Array where Element == Diagnostic {
    public var hasErrors: Bool { contains { $0.severity == .error } }
}
