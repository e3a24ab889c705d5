import Foundation
import Synchronization
import Testing
import VirtformLab
import VirtformModel
import VirtformStorage
import VirtformSystem

/// Why the tests with a real pool and tgtd cannot run here, or nil.
let storageUnavailable = StorageLab.unmetRequirements()

/// Each fixture gets its own portal and control port, so tests run in parallel and never meet
/// the reference lab (3260, control port 0). This suite uses 3280-3299 and 80-99.
private let nextSlot = Atomic<Int>(0)

struct StorageEnvironment: Sendable {
    let lab: StorageLabConfiguration
    let pool: FileTreeDriver
    let export: TgtExportDriver
    let iqnPrefix = "iqn.2026-11.io.virtform.test"
}

enum StorageFixture {
    /// A fresh btrfs pool (in a temporary root) and tgtd, torn down when `body` ends, also when it throws.
    static func with<T: Sendable>(
        initiators: [String] = [], poolSize: UInt64 = 2 << 30, _ body: @Sendable (StorageEnvironment) async throws -> T
    ) async throws -> T {
        let slot = nextSlot.add(1, ordering: .relaxed).oldValue % 20
        let root = try makeTemporaryRoot("vftest-storage")
        let configuration = StorageLabConfiguration(
            root: root, mountPoint: "\(root)/pool", poolSize: poolSize, portalPort: 3280 + slot, controlPort: 80 + slot,
            removePoolOnDown: true)
        let lab = StorageLab(configuration: configuration)
        let outcome: Result<T, any Error>
        do {
            try await lab.up()
            let export = ISCSIExport(driver: .tgt, portal: HostPort(host: "127.0.0.1", port: configuration.portalPort),
                                     iqnPrefix: "iqn.2026-11.io.virtform.test", initiators: initiators)
            let environment = StorageEnvironment(
                lab: configuration,
                pool: FileTreeDriver(flavor: .btrfs, poolName: "test-pool", path: configuration.mountPoint),
                export: TgtExportDriver(export: export, controlPort: configuration.controlPort))
            outcome = .success(try await body(environment))
        } catch {
            outcome = .failure(error)
        }
        let teardown = await Result { try await lab.down() }
        try? FileManager.default.removeItem(atPath: root)
        let value = try outcome.get()
        try teardown.get()
        return value
    }
}

func makeTemporaryRoot(_ prefix: String) throws -> String {
    var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
    guard let pointer = mkdtemp(&template) else { throw CocoaError(.fileWriteUnknown) }
    return String(cString: pointer)
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}

/// Writes `count` bytes of a pattern at `offset` of the file at `path`.
func writePattern(_ path: String, offset: UInt64, count: Int, byte: UInt8 = 0x5a) throws {
    let fd = open(path, O_WRONLY)
    guard fd >= 0 else { throw CocoaError(.fileWriteUnknown) }
    defer { close(fd) }
    let data = [UInt8](repeating: byte, count: count)
    let written = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, count, off_t(offset)) }
    guard written == count else { throw CocoaError(.fileWriteUnknown) }
    fsync(fd)
}

/// Runs a program and fails the test if it fails.
@discardableResult
func sh(_ arguments: [String]) async throws -> CommandResult {
    try await LocalCommandRunner().run(arguments).checked(arguments)
}

/// A recording stand-in for a machine: answers each command from `replies` (by exact command
/// line; default: success with no output) and remembers every command line.
final class RecordingRunner: CommandRunner, @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [String] = []
    private let replies: [String: CommandResult]

    init(_ replies: [String: CommandResult] = [:]) {
        self.replies = replies
    }

    var commands: [String] { lock.withLock { recorded } }

    func run(_ arguments: [String]) async throws -> CommandResult {
        let line = arguments.joined(separator: " ")
        lock.withLock { recorded.append(line) }
        return replies[line] ?? CommandResult(status: 0)
    }
}

let mib: UInt64 = 1 << 20
let gib: UInt64 = 1 << 30
