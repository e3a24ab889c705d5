/// What a long-running loop remembers of the actions that failed, by key: one that failed for a
/// reason retrying can help (a timeout, a daemon that did not answer) backs off, capped and
/// exponential with jitter; one that failed for a reason it cannot (a refusal, a bad request)
/// is parked until what it would do changes (its fingerprint: the manifests or the observation
/// moved on). Generic and pure: the caller supplies the time and the randomness.
public struct RetryBook<Key: Hashable & Sendable>: Sendable {
    public struct Backoff: Sendable, Equatable {
        /// The first retry's delay; each failure after doubles it, up to `cap`.
        public var base: Duration
        public var cap: Duration
        /// The share of each delay drawn at random (0.2: 80–100 % of it), so that many objects
        /// failing together do not retry together.
        public var jitter: Double

        public init(base: Duration = .seconds(5), cap: Duration = .seconds(300), jitter: Double = 0.2) {
            self.base = base
            self.cap = cap
            self.jitter = min(max(jitter, 0), 1)
        }

        /// The delay after `failures` failures in a row (1 for the first), with `random` in 0..<1.
        public func delay(after failures: Int, random: Double) -> Duration {
            var delay = base
            for _ in 1..<max(1, failures) {
                delay *= 2
                if delay >= cap { break }
            }
            delay = min(delay, cap)
            return delay * (1 - jitter * random)
        }
    }

    public enum State: Sendable, Equatable {
        /// Retried once `until` has passed.
        case backingOff(failures: Int, until: ContinuousClock.Instant, reason: String)
        /// Not retried while its fingerprint stays the same.
        case parked(reason: String)
    }

    private struct Entry: Sendable {
        var state: State
        var fingerprint: String
    }

    public var backoff: Backoff
    private var entries: [Key: Entry] = [:]

    public init(backoff: Backoff = Backoff()) { self.backoff = backoff }

    public var count: Int { entries.count }
    public var backingOff: Int { entries.values.count { if case .backingOff = $0.state { true } else { false } } }
    public var parked: Int { entries.values.count { if case .parked = $0.state { true } else { false } } }

    public func state(of key: Key) -> State? { entries[key]?.state }

    /// Records a failure of `key` whose action had `fingerprint`.
    public mutating func failed(_ key: Key, fingerprint: String, reason: String, retryable: Bool, now: ContinuousClock.Instant,
                                random: Double) {
        guard retryable else {
            entries[key] = Entry(state: .parked(reason: reason), fingerprint: fingerprint)
            return
        }
        var failures = 1
        if let entry = entries[key], entry.fingerprint == fingerprint, case .backingOff(let before, _, _) = entry.state { failures = before + 1 }
        entries[key] = Entry(state: .backingOff(failures: failures, until: now + backoff.delay(after: failures, random: random), reason: reason),
                             fingerprint: fingerprint)
    }

    public mutating func succeeded(_ key: Key) { entries[key] = nil }

    /// Why `key`, whose action has `fingerprint` now, is held back at `now`; nil when it may
    /// run. A changed fingerprint lets it go at once (and forgets the failures).
    public mutating func hold(_ key: Key, fingerprint: String, now: ContinuousClock.Instant) -> String? {
        guard let entry = entries[key] else { return nil }
        guard entry.fingerprint == fingerprint else {
            entries[key] = nil
            return nil
        }
        switch entry.state {
        case .parked(let reason):
            return "parked after a failure retrying cannot mend (\(reason)); it runs again when its manifest or what is observed changes"
        case .backingOff(let failures, let until, let reason):
            guard now < until else { return nil }
            let left = until - now
            return "backing off after \(failures) failure\(failures == 1 ? "" : "s") (\(reason)); retried in \(left.components.seconds + 1) s"
        }
    }

    /// Forgets every key `keep` rejects (objects that left the plan: converged or gone).
    public mutating func keepOnly(_ keep: (Key) -> Bool) {
        entries = entries.filter { keep($0.key) }
    }

    /// The earliest moment after `now` a key backing off may run again (one already due but not
    /// run — its system locked, its VM observed only — waits for an ordinary pass).
    public func nextRetry(after now: ContinuousClock.Instant) -> ContinuousClock.Instant? {
        entries.values.compactMap { if case .backingOff(_, let until, _) = $0.state, until > now { until } else { nil } }.min()
    }
}
