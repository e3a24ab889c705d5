import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The outcome of one external program.
public struct CommandResult: Sendable, Codable {
    public let status: Int32
    public let standardOutput: String
    public let standardError: String

    public init(status: Int32, standardOutput: String = "", standardError: String = "") {
        self.status = status
        self.standardOutput = standardOutput
        self.standardError = standardError
    }
}

/// Runs short-lived external programs (useradd) with Foundation.Process, on a thread of its own
/// because waiting blocks. Not for programs that leave a daemon behind: see `DaemonLauncher`.
public enum Command {
    /// Runs `arguments` (absolute program path first) and returns its exit status and output.
    /// Throws if it cannot be started or does not end before `timeout` (it is killed).
    /// `input`, when given, is written to the program's standard input, which is then closed.
    public static func run(
        _ arguments: [String], environment: [String: String]? = nil, input: Data? = nil, timeout: Duration = .seconds(30)
    ) async throws -> CommandResult {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                // posix_spawn hands this thread's signal mask to the child; threads of the Swift
                // runtime block most signals. Children start with nothing blocked.
                var none = sigset_t()
                sigemptyset(&none)
                pthread_sigmask(SIG_SETMASK, &none, nil)
                continuation.resume(
                    with: Result { try runBlocking(arguments, environment: environment, input: input, timeout: timeout) })
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
        _ arguments: [String], environment: [String: String]?, input: Data?, timeout: Duration
    ) throws -> CommandResult {
        let commandLine = arguments.joined(separator: " ")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        if let environment { process.environment = environment }
        let stdin = input.map { _ in Pipe() }
        process.standardInput = stdin ?? FileHandle.nullDevice
        let output = Pipe()
        let error = Pipe()
        process.standardOutput = output
        process.standardError = error
        let pipes = [output, error] + (stdin.map { [$0] } ?? [])
        do {
            try process.run()
        } catch {
            for pipe in pipes {
                try? pipe.fileHandleForReading.close()
                try? pipe.fileHandleForWriting.close()
            }
            throw SystemError("failed to run `\(commandLine)`: \(error)")
        }
        let timedOut = Box(false)
        let timer = DispatchWorkItem { [process] in
            guard process.isRunning else { return }
            timedOut.current = true
            kill(process.processIdentifier, SIGKILL)
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout.timeInterval, execute: timer)
        defer { timer.cancel() }

        // Both pipes are drained at once so a chatty program cannot block on a full pipe, and
        // the input is written meanwhile.
        let group = DispatchGroup()
        if let stdin, let input {
            DispatchQueue.global().async(group: group) {
                try? stdin.fileHandleForWriting.write(contentsOf: input)
                try? stdin.fileHandleForWriting.close()
            }
        }
        let errorData = Box(Data())
        DispatchQueue.global().async(group: group) {
            errorData.current = error.fileHandleForReading.readDataToEndOfFile()
        }
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        // Closed here, not left to the handles' deinit: Foundation keeps them alive past this
        // call, and a long-running process (or a test suite) would run out of descriptors.
        for pipe in [output, error] + (stdin.map { [$0] } ?? []) {
            try? pipe.fileHandleForReading.close()
            try? pipe.fileHandleForWriting.close()
        }
        if timedOut.current {
            throw SystemError("`\(commandLine)` did not finish within \(timeout) and was killed")
        }
        let status =
            process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return CommandResult(
            status: status, standardOutput: String(decoding: outputData, as: UTF8.self),
            standardError: String(decoding: errorData.current, as: UTF8.self))
    }
}

extension Duration {
    public var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}

/// Something that runs a program and reports how it ended: the local machine, a remote one
/// over ssh, or a recording stand-in in tests. Drivers that shell out take one of these.
public protocol CommandRunner: Sendable {
    func run(_ arguments: [String]) async throws -> CommandResult
}

/// Runs programs on this machine (`Command.run`); a program name without a slash is looked
/// up on PATH.
public struct LocalCommandRunner: CommandRunner {
    public var timeout: Duration

    public init(timeout: Duration = .seconds(60)) {
        self.timeout = timeout
    }

    public func run(_ arguments: [String]) async throws -> CommandResult {
        guard let program = arguments.first else { throw SystemError("no program to run") }
        KillPoint.step("run \(arguments.prefix(6).joined(separator: " "))")
        var resolved = arguments
        if !program.contains("/") {
            guard let path = Executables.find(program) else { throw SystemError("`\(program)` is not installed (not found on PATH)") }
            resolved[0] = path
        }
        return try await Command.run(resolved, timeout: timeout)
    }
}

extension CommandResult {
    /// Throws unless the program exited with status 0; the error carries what it printed.
    @discardableResult
    public func checked(_ arguments: [String]) throws -> CommandResult {
        guard status == 0 else {
            let said = standardError.isEmpty ? standardOutput : standardError
            throw SystemError("`\(arguments.joined(separator: " "))` failed (exit \(status)): \(said.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return self
    }
}
