import Foundation
import Libvirt
import Logging
import Synchronization
import VirtformHypervisor

/// Wakes the reconcile loop: a domain event, a lost connection, a shutdown. Rings are kept
/// until the loop waits next, so one that comes while a pass runs is not lost.
final class Doorbell: Sendable {
    private struct State {
        var pending: [String] = []
        var waiter: (id: Int, continuation: CheckedContinuation<Void, Never>)?
        var nextID = 0
    }

    private let state = Mutex(State())

    func ring(_ reason: String) {
        let waiter = state.withLock { state in
            state.pending.append(reason)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.continuation.resume()
    }

    /// What rang, waiting at most `duration` for a first ring (empty: nothing rang). The
    /// waiter is in place before the timer starts, and cancellation ends the wait too.
    func wait(for duration: Duration) async -> [String] {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state in
                    if !state.pending.isEmpty || Task.isCancelled { return true }
                    state.waiter = (id, continuation)
                    return false
                }
                if resumeNow {
                    continuation.resume()
                    return
                }
                Task { [weak self] in
                    try? await Task.sleep(for: duration)
                    self?.wake(id)
                }
            }
        } onCancel: {
            wake(id)
        }
        return take()
    }

    /// Everything that rang since the last look.
    func take() -> [String] {
        state.withLock { state in
            defer { state.pending = [] }
            return state.pending
        }
    }

    /// Ends wait `id`, if it is still the one waiting.
    private func wake(_ id: Int) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter, waiter.id == id else { return nil }
            state.waiter = nil
            return waiter.continuation
        }
        waiter?.resume()
    }
}

/// How long each host that cannot be read has been so, to decide when the loop may fence it:
/// after `observations` readings in a row that failed, spanning at least `duration` (a host
/// that answers once starts over).
struct HostWatch {
    var observations: Int
    var duration: Duration
    private var down: [String: (failures: Int, since: ContinuousClock.Instant)] = [:]

    init(observations: Int, duration: Duration) {
        self.observations = max(1, observations)
        self.duration = duration
    }

    /// One reading of every host: `reachable[host]`.
    mutating func observe(_ reachable: [String: Bool], at now: ContinuousClock.Instant) {
        for (host, up) in reachable {
            if up {
                down[host] = nil
            } else {
                let before = down[host]
                down[host] = ((before?.failures ?? 0) + 1, before?.since ?? now)
            }
        }
        for host in down.keys where reachable[host] == nil { down[host] = nil }
    }

    var suspect: Bool { !down.isEmpty }

    func fenceable(at now: ContinuousClock.Instant) -> Set<String> {
        Set(down.filter { $0.value.failures >= observations && now - $0.value.since >= duration }.map(\.key))
    }

    /// Why each host down so far may not be fenced yet.
    func waiting(at now: ContinuousClock.Instant) -> [String: String] {
        var reasons: [String: String] = [:]
        for (host, state) in down {
            let seconds = (now - state.since).components.seconds
            reasons[host] = "has failed \(state.failures) of \(observations) readings in a row over \(seconds) s of \(duration.components.seconds) s; it is fenced only after both"
        }
        return reasons
    }
}

/// The domain events of every kept hypervisor connection, each ringing the loop's doorbell.
/// A stream that ends (the connection was lost or closed) rings too, so the next pass reads
/// that host again.
final class EventWatch: Sendable {
    private let doorbell: Doorbell
    private let logger: Logger
    private let tasks = Mutex<[String: Task<Void, Never>]>([:])

    init(doorbell: Doorbell, logger: Logger) {
        self.doorbell = doorbell
        self.logger = logger
    }

    func watch(_ host: LibvirtHost) {
        let (doorbell, logger) = (self.doorbell, self.logger)
        let task = Task {
            do {
                let events = try await host.connection.domainLifecycleEvents()
                for await event in events {
                    logger.debug("domain event", metadata: ["host": "\(host.name)", "event": "\(event)"])
                    doorbell.ring("event on host \(host.name): \(event.domainName) \(event.kind)")
                }
                if !Task.isCancelled { doorbell.ring("host \(host.name): its connection ended") }
            } catch {
                logger.warning("no domain events from this host; it is read at each resync",
                               metadata: ["host": "\(host.name)", "error": "\(error)"])
            }
        }
        let replaced = tasks.withLock { tasks in
            defer { tasks[host.name] = task }
            return tasks[host.name]
        }
        replaced?.cancel()
    }

    /// Stops watching host `name` (its connection was let go).
    func stop(_ name: String) {
        tasks.withLock { $0.removeValue(forKey: name) }?.cancel()
    }

    func stopAll() {
        let all = tasks.withLock { tasks in
            defer { tasks = [:] }
            return Array(tasks.values)
        }
        for task in all { task.cancel() }
    }
}

/// What `/healthz` and `/readyz` answer.
final class ReconcileHealth: Sendable {
    private struct State {
        var passStarted: ContinuousClock.Instant?
        var passEnded: ContinuousClock.Instant?
        var ready = false
        var why = "the first pass has not ended yet"
    }

    private let state = Mutex(State())
    /// A pass longer than this, or no pass for this long, is a stuck loop.
    let stallAfter: Duration

    init(stallAfter: Duration) { self.stallAfter = stallAfter }

    func started() { state.withLock { $0.passStarted = .now } }

    func ended(ready: Bool, why: String) {
        state.withLock { state in
            state.passEnded = .now
            state.ready = ready
            state.why = why
        }
    }

    /// Alive: the loop passes (none running longer than `stallAfter`, one ended within it).
    var live: (ok: Bool, detail: String) {
        state.withLock { state in
            let now = ContinuousClock.now
            if let started = state.passStarted, state.passEnded.map({ $0 < started }) ?? true, now - started > stallAfter {
                return (false, "a pass has run for \((now - started).components.seconds) s")
            }
            if let ended = state.passEnded, now - ended > stallAfter {
                return (false, "no pass has ended for \((now - ended).components.seconds) s")
            }
            return (true, "ok")
        }
    }

    /// Ready: a pass has ended and the manifests it used were valid.
    var ready: (ok: Bool, detail: String) {
        state.withLock { ($0.ready, $0.ready ? "ok" : $0.why) }
    }
}
