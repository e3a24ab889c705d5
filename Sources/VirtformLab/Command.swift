import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The outcome of one external program.
struct CommandResult: Sendable {
    let status: Int32
    let standardOutput: String
    let standardError: String
}

/// Runs short-lived external programs (useradd) with Foundation.Process, on a thread of its own
/// because waiting blocks. Not for programs that leave a daemon behind: see `DaemonLauncher`.
enum Command {
    /// Runs `arguments` (absolute program path first) and returns its exit status and output.
    /// Throws if it cannot be started or does not end before `timeout` (it is killed).
    static func run(
        _ arguments: [String], environment: [String: String]? = nil, timeout: Duration = .seconds(30)
    ) async throws -> CommandResult {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                // posix_spawn hands this thread's signal mask to the child; threads of the Swift
                // runtime block most signals. Children start with nothing blocked.
                var none = sigset_t()
                sigemptyset(&none)
                pthread_sigmask(SIG_SETMASK, &none, nil)
                continuation.resume(
                    with: Result { try runBlocking(arguments, environment: environment, timeout: timeout) })
            }
            thread.name = "lab-command"
            thread.start()
        }
    }

    private final class Box<Value: Sendable>: Sendable {
        private let value: Mutex<Value>
        init(_ value: Value) { self.value = Mutex(value) }
        var current: Value {
            get { value.withLock { $0 } }
            set { value.withLock { $0 = newValue } }
        }
    }

    private static func runBlocking(
        _ arguments: [String], environment: [String: String]?, timeout: Duration
    ) throws -> CommandResult {
        let commandLine = arguments.joined(separator: " ")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        if let environment { process.environment = environment }
        process.standardInput = FileHandle.nullDevice
        let output = Pipe()
        let error = Pipe()
        process.standardOutput = output
        process.standardError = error
        do {
            try process.run()
        } catch {
            throw LabError("failed to run `\(commandLine)`: \(error)")
        }
        let timedOut = Box(false)
        let timer = DispatchWorkItem { [process] in
            guard process.isRunning else { return }
            timedOut.current = true
            kill(process.processIdentifier, SIGKILL)
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout.timeInterval, execute: timer)
        defer { timer.cancel() }

        // Both pipes are drained at once so a chatty program cannot block on a full pipe.
        let group = DispatchGroup()
        let errorData = Box(Data())
        DispatchQueue.global().async(group: group) {
            errorData.current = error.fileHandleForReading.readDataToEndOfFile()
        }
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        if timedOut.current {
            throw LabError("`\(commandLine)` did not finish within \(timeout) and was killed")
        }
        let status =
            process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return CommandResult(
            status: status, standardOutput: String(decoding: outputData, as: UTF8.self),
            standardError: String(decoding: errorData.current, as: UTF8.self))
    }
}

extension Duration {
    var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
