import CLibvirt
import Foundation
import Synchronization

/// Process-wide libvirt setup, done exactly once before the first connection opens.
public enum LibvirtRuntime {
    private static let wantsEventLoop = Mutex(true)

    /// Whether the process runs libvirt's event loop (domain events, close callbacks,
    /// keepalive). On by default. A program that needs none of these (a command that plans and
    /// applies) turns it off before its first connection: every RPC then runs on the calling
    /// thread alone, instead of also waking the event thread twice. No effect once a connection
    /// has been opened.
    public static func setEventLoopEnabled(_ enabled: Bool) {
        wantsEventLoop.withLock { $0 = enabled }
    }

    /// Turns the event loop back on when any of `uris` reaches a daemon over the network, so
    /// that `Connection.open` can start libvirt's keepalive on them (a probe after 5 s of
    /// silence, the connection closed when 3 in a row go unanswered: about 20 s) and a host that
    /// dies mid-apply fails its calls instead of waiting on TCP. Local sockets need none. The
    /// loop is process-wide, so every connection of such a site pays its two wakeups per RPC.
    public static func enableEventLoopIfAnyRemote(_ uris: [String]) {
        if uris.contains(where: isRemote) { setEventLoopEnabled(true) }
    }

    /// Whether a libvirt URI names another machine or a transport that leaves it
    /// (`qemu+ssh://h/system`, `qemu://h/system`, `test+tcp://h/default`, `qemu+ext:///system`
    /// whose command usually does); `qemu:///system` and `qemu+unix:///session?socket=…` are local.
    public static func isRemote(_ uri: String) -> Bool {
        guard let separator = uri.range(of: "://") else { return false }
        let scheme = uri[..<separator.lowerBound]
        let authority = uri[separator.upperBound...].prefix { $0 != "/" && $0 != "?" }
        let host = authority.lastIndex(of: "@").map { authority[authority.index(after: $0)...] } ?? authority
        if !host.isEmpty { return true }
        guard let plus = scheme.firstIndex(of: "+") else { return false }
        return ["ssh", "libssh", "libssh2", "tcp", "tls", "ext"].contains(scheme[scheme.index(after: plus)...].lowercased())
    }

    /// Whether calls on a connection to `uri` must run one at a time: libvirt 9.0's RPC client
    /// over its libssh transport crashes (a freed GMainLoop quit in `virNetClientSendWithReply`)
    /// when several threads wait for replies on one connection — seen in one plan of three
    /// in the ssh lab. Other transports take calls from several threads at once.
    public static func needsOneCallAtATime(_ uri: String) -> Bool {
        guard let separator = uri.range(of: "://"), let plus = uri[..<separator.lowerBound].firstIndex(of: "+") else { return false }
        return ["libssh", "libssh2"].contains(uri[uri.index(after: plus)..<separator.lowerBound].lowercased())
    }

    /// Initializes libvirt, silences its default stderr error printer and starts the default
    /// event loop on a dedicated thread. Swift runs a global's initializer exactly once and
    /// thread-safely, which is the "once" here. The value says whether the event loop runs.
    static let eventLoopRunning: Bool = {
        // Required before libvirt is used from several threads.
        _ = virInitialize()
        // A daemon that dies while a call is in flight makes libvirt's next write hit a closed
        // socket; with SIGPIPE's default action that kills the whole process instead of failing
        // the call. libvirt expects its clients to ignore it; writes then fail with EPIPE.
        signal(SIGPIPE, SIG_IGN)
        // Without a handler libvirt prints every error to stderr by itself; errors here are
        // reported through LibvirtError instead.
        virSetErrorFunc(nil, { _, _ in })
        guard wantsEventLoop.withLock({ $0 }) else { return false }
        // The event loop must be registered before connections open so that keepalive, close
        // callbacks and domain events work on them.
        guard virEventRegisterDefaultImpl() == 0 else {
            virResetLastError()
            return false
        }
        let thread = Thread {
            while true {
                if virEventRunDefaultImpl() < 0 {
                    // Only fails on programming errors; avoid a hot loop anyway.
                    virResetLastError()
                    Thread.sleep(forTimeInterval: 0.1)
                }
            }
        }
        thread.name = "libvirt-events"
        thread.start()
        return true
    }()

    /// Makes sure libvirt is initialized; cheap after the first call.
    static func prepare() {
        _ = eventLoopRunning
    }
}

/// The version of the libvirt library this process is linked against.
public func libvirtLibraryVersion() -> LibvirtVersion {
    LibvirtRuntime.prepare()
    var version: UInt = 0
    _ = virGetVersion(&version, nil, nil)
    return LibvirtVersion(encoded: UInt64(version))
}

/// A libvirt version number (`major * 1_000_000 + minor * 1_000 + release`).
public struct LibvirtVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let major: Int
    public let minor: Int
    public let release: Int

    public init(major: Int, minor: Int, release: Int) {
        self.major = major
        self.minor = minor
        self.release = release
    }

    init(encoded: UInt64) {
        self.init(
            major: Int(encoded / 1_000_000), minor: Int(encoded / 1_000 % 1_000), release: Int(encoded % 1_000))
    }

    public var description: String { "\(major).\(minor).\(release)" }

    public static func < (lhs: LibvirtVersion, rhs: LibvirtVersion) -> Bool {
        (lhs.major, lhs.minor, lhs.release) < (rhs.major, rhs.minor, rhs.release)
    }
}

/// A C pointer that is safe to hand between threads because libvirt's objects are thread-safe
/// and reference-counted; ownership is tracked by whoever holds it.
struct CPointer: @unchecked Sendable {
    let raw: OpaquePointer
}
