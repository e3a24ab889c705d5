import Dispatch
import Testing
import VirtformSystem

@Suite("Deadlines")
struct DeadlineTests {
    @Test func aBodyThatIgnoresCancellationDoesNotHoldTheCallerPastTheDeadline() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        // Resumes after 3 s whatever happens, as a blocking C call on a thread of its own would.
        await #expect(throws: SystemError.self) {
            try await withDeadline(.milliseconds(100), "a stuck call") {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    DispatchQueue.global().asyncAfter(deadline: .now() + 3) { continuation.resume() }
                }
            }
        }
        #expect(clock.now - start < .seconds(2), "returned at the deadline, not when the body ended")
    }

    @Test func aBodyThatFinishesInTimeGivesItsResultOrItsError() async throws {
        #expect(try await withDeadline(.seconds(5), "quick") { 42 } == 42)
        struct Failure: Error {}
        await #expect(throws: Failure.self) { try await withDeadline(.seconds(5), "failing") { throw Failure() } }
    }
}
