import Foundation
import Synchronization
import VirtformSystem

/// The real `virtform` executable run as a child, with something done to the systems the moment
/// its output shows a given progress line (a fault driven by the apply's own progress, not by
/// timing). Returns what it printed, its exit status (128 + N when a signal ended it), whether
/// it ended within `within`, and whether the trigger was seen. `cleanup` runs once the child has ended (or was given up on),
/// before it is reaped: thaw what `onTrigger` froze there. With `interrupt`, the child is also
/// sent SIGINT (Ctrl-C) at the trigger.
func runVirtformChild(
    _ program: String, _ arguments: [String], trigger: String, within: Duration = .seconds(90), interrupt: Bool = false,
    environment: [String: String]? = nil, onTrigger: @escaping @Sendable () -> Void, cleanup: @Sendable () -> Void
) async throws -> (output: String, status: Int32, ended: Bool, triggered: Bool) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: program)
    process.arguments = arguments
    if let environment {
        process.environment = environment
    } else if let backend = testBackend(for: arguments) {
        process.environment = ProcessInfo.processInfo.environment.merging(["VIRTFORM_BACKEND": backend]) { _, new in new }
    }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    let said = Mutex("")
    let triggered = Mutex(false)
    try process.run()
    let child = process.processIdentifier
    let readerDone = Mutex(false)
    let reader = Thread {
        defer { readerDone.withLock { $0 = true } }
        while true {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { return }
            let text = said.withLock { $0 += String(decoding: chunk, as: UTF8.self); return $0 }
            if text.contains(trigger), triggered.withLock({ was in defer { was = true }; return !was }) {
                onTrigger()
                if interrupt { kill(child, SIGINT) }
            }
        }
    }
    reader.start()
    let ended = await poll(within: within, every: .milliseconds(100)) { !process.isRunning }
    cleanup()
    if !ended { process.terminate() }
    process.waitUntilExit()
    // The reader may still be in `onTrigger`, or reading the last output: its pipe stays open until it is done.
    _ = await poll(within: .seconds(60), every: .milliseconds(20)) { readerDone.withLock { $0 } }
    try? pipe.fileHandleForReading.close()
    let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    return (said.withLock { $0 }, status, ended, triggered.withLock { $0 })
}
