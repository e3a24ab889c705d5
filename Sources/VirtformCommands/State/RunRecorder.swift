import Foundation
import Synchronization
import VirtformExecution
import VirtformModel
import VirtformPlanning
import VirtformState

/// Writes one run into the journal as it goes: the run when it starts, each action when it
/// ends (in the background, in order, so a slow journal never holds an action up), and the
/// outcome at the end. A journal that stops answering costs a warning, never the apply.
final class RunRecorder: Sendable {
    let journal: any RunJournal
    private let state: Mutex<(record: RunRecord, sequence: Int, started: [String: Date])>
    private let warn = WarnOnce()
    private let queue: AsyncStream<[ActionRecord]>.Continuation
    private let writer: Task<Void, Never>

    init(journal: any RunJournal, record: RunRecord) {
        self.journal = journal
        state = Mutex((record, 0, [:]))
        let (stream, continuation) = AsyncStream.makeStream(of: [ActionRecord].self)
        queue = continuation
        let warn = self.warn
        writer = Task {
            for await batch in stream {
                do { try await journal.record(batch) } catch { warn(error) }
            }
        }
    }

    var record: RunRecord { state.withLock { $0.record } }

    /// The actions the executor never started, recorded as such when the run finishes.
    var notStarted: [String] {
        get { pending.withLock { $0 } }
        set { pending.withLock { $0 = newValue } }
    }
    private let pending = Mutex<[String]>([])

    /// Says once that the journal cannot be written; the apply goes on.
    final class WarnOnce: Sendable {
        private let warned = Mutex(false)
        func callAsFunction(_ error: any Error) {
            let first = warned.withLock { was in
                defer { was = true }
                return !was
            }
            if first { Output.current.errorLine("warning: the run history could not be written (\(error)); the apply goes on") }
        }
    }

    /// Records the run's start.
    func begin() async {
        do { try await journal.begin(record) } catch { warn(error) }
    }

    func update(_ change: (inout RunRecord) -> Void) {
        state.withLock { change(&$0.record) }
    }

    /// One executor event: an ended action is queued for the journal.
    func observe(_ event: Executor.Event<String>) {
        let now = Date()
        let action: ActionRecord? = state.withLock { current in
            func next(_ id: String, _ outcome: ActionRecord.Outcome, _ message: String?) -> ActionRecord {
                current.sequence += 1
                return ActionRecord(run: current.record.id, sequence: current.sequence, action: id, outcome: outcome,
                                    startedAt: current.started.removeValue(forKey: id), finishedAt: now, message: message)
            }
            switch event {
            case .started(let id, _):
                current.started[id] = now
                return nil
            case .succeeded(let id, _): return next(id, .succeeded, nil)
            case .failed(let id, let error): return next(id, .failed, Redaction.escapingControls(error))
            case .skipped(let id, let cause): return next(id, .skipped, "\(cause) failed")
            }
        }
        if let action { queue.yield([action]) }
    }

    /// Records what never started, then the run's end; waits for the journal.
    func finish(outcome: RunOutcome, message: String? = nil, notStarted: [String] = []) async {
        let (record, pending): (RunRecord, [ActionRecord]) = state.withLock { current in
            var pending: [ActionRecord] = []
            for id in notStarted {
                current.sequence += 1
                pending.append(ActionRecord(run: current.record.id, sequence: current.sequence, action: id, outcome: .notStarted))
            }
            current.record.outcome = outcome
            current.record.finishedAt = Date()
            if let message { current.record.message = String(Redaction.escapingControls(message).prefix(1000)) }
            return (current.record, pending)
        }
        if !pending.isEmpty { queue.yield(pending) }
        queue.finish()
        await writer.value
        do { try await journal.finish(record) } catch { warn(error) }
    }

    /// The digest a plan is known by in the history and the lock's holder.
    static func digest(_ plan: Plan) -> String {
        "plan-" + StableHash.of(PlanRenderer.json(plan)).hex
    }
}
