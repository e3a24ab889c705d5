import VirtformModel
import VirtformPlanning
import VirtformSystem

/// Reads every system a site names, all at once and each within a deadline: every system of
/// every kind in `SystemKinds.all`. A system that cannot be read is reported as such, never as
/// empty.
enum SiteReader {
    struct Result: Sendable {
        var observation: SiteObservation
        var systems: ConnectedSystems
        /// How long each system took to read (or to fail), for the reconcile loop's metrics.
        var durations: [SystemAddress: Duration] = [:]
    }

    /// `timeout` bounds each connection; a system's whole reading has three times as long.
    static func read(site: Site, timeout: Duration, context: ReadContext = ReadContext()) async -> Result {
        // A struct, not a tuple: Swift 6.3 miscompiles (-O) tuples returned from task-group
        // children when part of the tuple is known before a suspension (swiftlang/swift#91911).
        struct Outcome: Sendable {
            var address: SystemAddress
            var read: Swift.Result<SystemRead, SystemReadFailure>
            var duration: Duration
        }
        let drivers = SystemKinds.all.flatMap { $0.drivers(for: site, context: context) }
        let outcomes = await withTaskGroup(of: Outcome.self) { group in
            for driver in drivers {
                group.addTask {
                    let started = ContinuousClock.now
                    do {
                        let read = try await withDeadline(timeout * 3, "reading \(driver.address.kind == .host ? "host " : "")\(driver.address)") {
                            try await driver.read(timeout: timeout)
                        }
                        return Outcome(address: driver.address, read: .success(read), duration: .now - started)
                    } catch {
                        return Outcome(address: driver.address, read: .failure(SystemReadFailure(reason: "\(error)")), duration: .now - started)
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        var observation = SiteObservation(hosts: ObservedSite(hosts: [:]))
        var systems = ConnectedSystems()
        var durations: [SystemAddress: Duration] = [:]
        for outcome in outcomes {
            durations[outcome.address] = outcome.duration
            observation.record(outcome.read.map(\.reading), for: outcome.address)
            if case .success(let read) = outcome.read { systems.add(read.session) }
        }
        return Result(observation: observation, systems: systems, durations: durations)
    }
}
