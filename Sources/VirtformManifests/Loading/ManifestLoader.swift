import Dispatch
import Foundation
import VirtformModel

/// What loading a set of manifest paths produced.
public struct LoadResult: Sendable {
    public var site: Site
    /// Every problem found, sorted by file, line and column.
    public var diagnostics: [Diagnostic]
    /// The manifest files that were read, in load order.
    public var files: [String]
    /// A digest of each file's bytes as read (`StableHash` and length), same order as `files`;
    /// empty for a file that could not be read.
    public var digests: [String] = []
    /// True when site-wide checks were skipped because some file could not be read whole.
    public var skippedSiteChecks: Bool

    public var isValid: Bool { !diagnostics.hasErrors }
}

/// Loads manifests from files and directories into a validated `Site`.
public enum ManifestLoader {
    /// Larger files are refused unread; a site of 10,000 VMs is about 6 MiB of YAML.
    public static let maxFileSize = 32 << 20
    public static let extensions: Set<String> = ["yaml", "yml"]

    /// Reads every path (a file, or a directory searched recursively for `*.yaml`/`*.yml` in
    /// byte order of their paths, skipping hidden entries), checks every document and then the
    /// site as a whole. Never throws: every problem becomes a diagnostic.
    public static func load(paths: [String]) -> LoadResult {
        var diagnostics: [Diagnostic] = []
        var files: [String] = []
        for path in paths {
            let (found, problem) = discover(path)
            if let problem {
                diagnostics.append(problem)
            } else if found.isEmpty {
                diagnostics.append(Diagnostic(.warning, at: whole(path), message: "no *.yaml or *.yml files in this directory"))
            }
            files += found
        }
        // Each file's text is read and checked on its own, in parallel; the results are merged in order.
        let perFile = parallelMap(files) { readFile($0) }
        var site = Site()
        site.reserveCapacity(for: perFile.map(\.site))
        var stoppedEarly = false
        for result in perFile {
            site.merge(result.site)
            diagnostics += result.diagnostics
            stoppedEarly = stoppedEarly || result.stoppedEarly
        }
        if !stoppedEarly {
            diagnostics += SiteValidator.validate(site)
        }
        diagnostics.sort()
        return LoadResult(site: site, diagnostics: diagnostics, files: files, digests: perFile.map(\.digest), skippedSiteChecks: stoppedEarly)
    }

    /// Checks the documents of one in-memory text, as if it were the file `name`.
    public static func load(text: String, name: String = "<input>") -> LoadResult {
        let result = read(Array(text.utf8), file: name)
        var diagnostics = result.diagnostics
        if !result.stoppedEarly { diagnostics += SiteValidator.validate(result.site) }
        diagnostics.sort()
        return LoadResult(site: result.site, diagnostics: diagnostics, files: [name], skippedSiteChecks: result.stoppedEarly)
    }

    struct FileResult: Sendable {
        var site = Site()
        var diagnostics: [Diagnostic] = []
        var stoppedEarly = false
        var digest = ""
    }

    /// `StableHash` of the bytes, then their count: what a saved plan records of each file.
    public static func digest(_ bytes: [UInt8]) -> String {
        var hash = StableHash()
        hash.feed(bytes: bytes)
        return "\(hash.hex)-\(bytes.count)"
    }

    static func readFile(_ path: String) -> FileResult {
        let size: Int
        do {
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            guard attributes[.type] as? FileAttributeType == .typeRegular else {
                return FileResult(diagnostics: [Diagnostic(at: whole(path), message: "not a regular file")], stoppedEarly: true)
            }
            size = (attributes[.size] as? Int) ?? 0
        } catch {
            return FileResult(diagnostics: [Diagnostic(at: whole(path), message: "cannot read: \(describe(error))")], stoppedEarly: true)
        }
        guard size <= maxFileSize else {
            return FileResult(diagnostics: [Diagnostic(at: whole(path),
                message: "file is \(ByteSize(bytes: UInt64(size))), larger than the \(ByteSize(bytes: UInt64(maxFileSize))) a manifest file may be; split it into several files")],
                stoppedEarly: true)
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            return FileResult(diagnostics: [Diagnostic(at: whole(path), message: "cannot read the file")], stoppedEarly: true)
        }
        let bytes = [UInt8](data)
        var result = read(bytes, file: path)
        result.digest = digest(bytes)
        return result
    }

    static func read(_ bytes: [UInt8], file: String) -> FileResult {
        let composed = YAMLComposer.compose(bytes, file: file)
        var reader = DocumentReader(file: file)
        for document in composed.documents { reader.read(document) }
        return FileResult(site: reader.site, diagnostics: composed.diagnostics + reader.diagnostics,
                          stoppedEarly: composed.stoppedEarly)
    }

    // MARK: - Finding files

    /// The manifest files `paths` name, as `load` reads them, and the problems finding them.
    public static func files(in paths: [String]) -> (files: [String], problems: [Diagnostic]) {
        var files: [String] = []
        var problems: [Diagnostic] = []
        for path in paths {
            let (found, problem) = discover(path)
            if let problem { problems.append(problem) }
            files += found
        }
        return (files, problems)
    }

    private static func discover(_ path: String) -> (files: [String], problem: Diagnostic?) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            return ([], Diagnostic(at: whole(path), message: "no such file or directory"))
        }
        guard isDirectory.boolValue else { return ([path], nil) }
        guard let enumerator = FileManager.default.enumerator(atPath: path) else {
            return ([], Diagnostic(at: whole(path), message: "cannot list the directory"))
        }
        var found: [String] = []
        while let relative = enumerator.nextObject() as? String {
            let name = (relative as NSString).lastPathComponent
            if name.hasPrefix(".") {
                enumerator.skipDescendants()
                continue
            }
            guard extensions.contains((name as NSString).pathExtension) else { continue }
            let full = path.hasSuffix("/") ? path + relative : path + "/" + relative
            var entryIsDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: full, isDirectory: &entryIsDirectory), !entryIsDirectory.boolValue {
                found.append(full)
            }
        }
        return (found.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }, nil)
    }

    /// A location that means "the file as a whole" (rendered without line and column).
    static func whole(_ path: String) -> SourceLocation { SourceLocation(file: path, line: 0, column: 0) }

    private static func describe(_ error: Error) -> String {
        (error as NSError).localizedFailureReason ?? (error as NSError).localizedDescription
    }
}

/// `map` over the cores; order is kept.
func parallelMap<T: Sendable, R: Sendable>(_ items: [T], _ transform: @Sendable (T) -> R) -> [R] {
    guard items.count > 1 else { return items.map(transform) }
    let results = ResultSlots<R>(count: items.count)
    DispatchQueue.concurrentPerform(iterations: items.count) { i in
        results.set(i, transform(items[i]))
    }
    return results.values
}

/// Write-once slots filled from several threads.
private final class ResultSlots<R: Sendable>: @unchecked Sendable {
    private var slots: [R?]
    private let lock = NSLock()

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func set(_ i: Int, _ value: R) {
        lock.lock()
        slots[i] = value
        lock.unlock()
    }

    var values: [R] {
        lock.lock()
        defer { lock.unlock() }
        return slots.map { $0! }
    }
}
