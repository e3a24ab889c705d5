import Testing
import VirtformHypervisor

/// The decisions of a live migration's watcher, on a made-up clock: a job whose data left stops
/// shrinking is aborted after the no-progress limit, one that keeps moving only past its
/// completion limit; what is left going up again (memory dirtied and sent again) is not progress.
@Suite("Migration watch")
struct MigrationWatchTests {
    static let start = ContinuousClock.now
    static func at(_ seconds: Double) -> ContinuousClock.Instant { start + .milliseconds(Int(seconds * 1000)) }
    static let limits = LibvirtHost.MigrationLimits(uri: nil, completion: .seconds(60), noProgress: .seconds(5))

    @Test func noProgressAbortsAfterItsLimit() {
        var watch = LibvirtHost.MigrationWatch(limits: Self.limits, started: Self.start)
        #expect(watch.look(remaining: 100, at: Self.at(1)) == nil)
        #expect(watch.look(remaining: 80, at: Self.at(2)) == nil)
        // Stuck at 80, or going up again: no progress since second 2.
        #expect(watch.look(remaining: 80, at: Self.at(4)) == nil)
        #expect(watch.look(remaining: 95, at: Self.at(6.5)) == nil)
        #expect(watch.look(remaining: 90, at: Self.at(7.5)) == "no progress for 5.0 s")
    }

    @Test func aMigrationThatKeepsMovingIsAbortedOnlyPastItsCompletionLimit() {
        var watch = LibvirtHost.MigrationWatch(limits: Self.limits, started: Self.start)
        var remaining: UInt64 = 1_000_000
        for second in stride(from: 1.0, through: 60, by: 1) {
            remaining -= 1000
            #expect(watch.look(remaining: remaining, at: Self.at(second)) == nil, "second \(second)")
        }
        #expect(watch.look(remaining: remaining - 1000, at: Self.at(60.5)) == "it took longer than 60 s (the limit for its memory)")
    }

    @Test func aJobNotReadYetStillCountsAgainstTheLimits() {
        var watch = LibvirtHost.MigrationWatch(limits: Self.limits, started: Self.start)
        #expect(watch.look(remaining: nil, at: Self.at(3)) == nil)
        #expect(watch.look(remaining: nil, at: Self.at(5.5)) == "no progress for 5.0 s")
    }
}
