import Foundation
import Synchronization

/// Fault injection for the kill-point sweep (`KillPointSweepTests`, `scripts/kill-sweep`).
///
/// With `VIRTFORM_KILL_AT=N` in its environment, the process sends itself SIGKILL just before
/// its Nth step — a program run (tgtadm, btrfs …), a libvirt call that changes a domain, a
/// control command to Kea, a hosts-file write, a storage object's rename into place — after
/// appending the step's number and name to the file `VIRTFORM_KILL_LOG`, when set. A sweep runs
/// an apply with N = 1, 2, 3 … until one finishes: every step of the apply is a kill point,
/// driven by the apply's own progress, not by timing. Without the variable a step costs one
/// load of a constant.
public enum KillPoint {
    private static let target: Int? = ProcessInfo.processInfo.environment["VIRTFORM_KILL_AT"].flatMap { Int($0) }
    private static let log = ProcessInfo.processInfo.environment["VIRTFORM_KILL_LOG"]
    private static let steps = Atomic<Int>(0)

    /// Counts one step; the Nth kills the process before it happens.
    public static func step(_ what: @autoclosure () -> String) {
        guard let target else { return }
        let number = steps.add(1, ordering: .relaxed).newValue
        guard number == target else { return }
        if let log, let handle = FileHandle(forWritingAtPath: log) ?? (FileManager.default.createFile(atPath: log, contents: nil) ? FileHandle(forWritingAtPath: log) : nil) {
            handle.seekToEndOfFile()
            handle.write(Data("\(number) \(what())\n".utf8))
            try? handle.synchronize()
            try? handle.close()
        }
        kill(getpid(), SIGKILL)
    }
}
