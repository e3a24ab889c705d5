import Testing
import VirtformExecution

@Suite("Retry book and drain")
struct RetryBookTests {
    @Test func backoffDoublesUpToItsCapWithJitter() {
        let backoff = RetryBook<String>.Backoff(base: .seconds(5), cap: .seconds(60), jitter: 0.2)
        #expect(backoff.delay(after: 1, random: 0) == .seconds(5))
        #expect(backoff.delay(after: 2, random: 0) == .seconds(10))
        #expect(backoff.delay(after: 4, random: 0) == .seconds(40))
        #expect(backoff.delay(after: 9, random: 0) == .seconds(60))
        #expect(backoff.delay(after: 1, random: 1) == .seconds(4))
    }

    @Test func aTransientFailureBacksOffAndATerminalOneParksUntilItsFingerprintChanges() {
        var book = RetryBook<String>(backoff: .init(base: .seconds(5), cap: .seconds(60), jitter: 0))
        let now = ContinuousClock.now
        book.failed("a", fingerprint: "f1", reason: "timeout", retryable: true, now: now, random: 0)
        #expect(book.hold("a", fingerprint: "f1", now: now + .seconds(1))?.contains("backing off after 1 failure") == true)
        #expect(book.hold("a", fingerprint: "f1", now: now + .seconds(6)) == nil)
        book.failed("a", fingerprint: "f1", reason: "timeout", retryable: true, now: now + .seconds(6), random: 0)
        #expect(book.state(of: "a") == .backingOff(failures: 2, until: now + .seconds(16), reason: "timeout"))
        #expect(book.nextRetry(after: now) == now + .seconds(16))
        #expect(book.nextRetry(after: now + .seconds(20)) == nil, "one already due is no reason to wake")

        book.failed("b", fingerprint: "g1", reason: "refused", retryable: false, now: now, random: 0)
        #expect(book.hold("b", fingerprint: "g1", now: now + .seconds(3600))?.contains("parked") == true)
        #expect(book.parked == 1 && book.backingOff == 1)
        #expect(book.hold("b", fingerprint: "g2", now: now) == nil, "a changed manifest or observation lets it go")
        #expect(book.state(of: "b") == nil)
        book.succeeded("a")
        #expect(book.count == 0)
    }

    @Test func aDrainedRunLetsRunningNodesFinishAndStartsNothingNew() async throws {
        let drain = Executor.Drain()
        var builder = ActionGraph<String>.Builder()
        builder.add("first", label: "first") {
            drain.request()
            try await Task.sleep(for: .milliseconds(50))
            // Not cancelled: it finishes its work.
            try Task.checkCancellation()
        }
        builder.add("second", label: "second", dependsOn: ["first"]) {}
        let summary = await Executor.run(try builder.build(), limits: .init(global: 1, perKey: 1), drain: drain)
        #expect(summary["first"] == .succeeded)
        #expect(summary["second"] == .notStarted)
        #expect(summary.wasCancelled)
    }
}
