import Foundation
import Libvirt

/// libvirt's in-process test driver: no daemon, state shared by every connection of this process
/// (so each test uses domain names of its own), gone when the process exits.
let testURI = "test:///default"

func uniqueName(_ prefix: String) -> String {
    "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
}

func domainXML(name: String, memoryMiB: Int = 64, vcpus: Int = 1) -> String {
    """
    <domain type='test'>
      <name>\(name)</name>
      <memory unit='MiB'>\(memoryMiB)</memory>
      <vcpu>\(vcpus)</vcpu>
      <os><type arch='x86_64'>hvm</type></os>
    </domain>
    """
}

struct TimedOut: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out: \(what)" }
}

/// Runs `body`, failing with `TimedOut` after `seconds`.
func withDeadline<T: Sendable>(
    _ seconds: Double, _ what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            throw TimedOut(what: what)
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}
