import CLibvirt
import Foundation
import VirtformSystem
import Synchronization

/// A domain lifecycle event (`VIR_DOMAIN_EVENT_ID_LIFECYCLE`).
public struct DomainLifecycleEvent: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        case defined, undefined, started, suspended, resumed, stopped, shutdown, pmSuspended, crashed
        case unknown(Int32)

        init(rawValue: Int32) {
            switch UInt32(bitPattern: rawValue) {
            case VIR_DOMAIN_EVENT_DEFINED.rawValue: self = .defined
            case VIR_DOMAIN_EVENT_UNDEFINED.rawValue: self = .undefined
            case VIR_DOMAIN_EVENT_STARTED.rawValue: self = .started
            case VIR_DOMAIN_EVENT_SUSPENDED.rawValue: self = .suspended
            case VIR_DOMAIN_EVENT_RESUMED.rawValue: self = .resumed
            case VIR_DOMAIN_EVENT_STOPPED.rawValue: self = .stopped
            case VIR_DOMAIN_EVENT_SHUTDOWN.rawValue: self = .shutdown
            case VIR_DOMAIN_EVENT_PMSUSPENDED.rawValue: self = .pmSuspended
            case VIR_DOMAIN_EVENT_CRASHED.rawValue: self = .crashed
            default: self = .unknown(rawValue)
            }
        }
    }

    public let domainName: String
    public let domainUUID: UUID
    public let kind: Kind
    /// libvirt's per-kind detail number (e.g. `VIR_DOMAIN_EVENT_STARTED_MIGRATED` = 1).
    public let detail: Int32

    public var description: String { "\(domainName): \(kind) (detail \(detail))" }
}

extension Connection {
    /// Lifecycle events of every domain on this connection, from now on.
    ///
    /// The callback is registered before this returns and deregistered when the stream is
    /// terminated (iteration cancelled or the stream dropped). The stream finishes when the
    /// connection is closed or lost (e.g. the daemon died and keepalive noticed). Events are
    /// buffered without bound; consumers that fall far behind should resynchronize by listing.
    public func domainLifecycleEvents() async throws(LibvirtError) -> AsyncStream<DomainLifecycleEvent> {
        guard LibvirtRuntime.eventLoopRunning else {
            throw LibvirtError(
                code: .internalError, message: "the libvirt event loop could not be started",
                operation: "subscribe to domain events on '\(uri)'")
        }
        let (stream, continuation) = AsyncStream.makeStream(of: DomainLifecycleEvent.self)
        let sink = EventSink(continuation)
        let hub = events
        let token = try await withPointer("subscribe to domain events on '\(uri)'") {
            conn throws(LibvirtError) -> Int in
            // libvirt owns this reference from now on and drops it through the free callback.
            let opaque = Unmanaged.passRetained(sink).toOpaque()
            let callback = unsafeBitCast(lifecycleCallback, to: virConnectDomainEventGenericCallback.self)
            let id = virConnectDomainEventRegisterAny(
                conn, nil, Int32(VIR_DOMAIN_EVENT_ID_LIFECYCLE.rawValue), callback, opaque, releaseSink)
            // On failure libvirt does not promise whether it called the free callback, so the
            // sink is deliberately leaked rather than risking a double release.
            try check(id, "subscribe to domain events on '\(self.uri)'")
            return hub.add(callbackID: id, sink: sink)
        }
        continuation.onTermination = { [self] _ in
            // Deregistering is an RPC on remote connections: not on the caller's thread.
            libvirtThreads.submit {
                guard let pointer = try? self.retainedPointer("unsubscribe") else { return }
                defer { virConnectClose(pointer.raw) }
                hub.deregister(token: token, on: pointer.raw)
            }
        }
        return stream
    }
}

/// Receives one registration's events; retained by libvirt while registered.
final class EventSink: Sendable {
    let continuation: AsyncStream<DomainLifecycleEvent>.Continuation
    init(_ continuation: AsyncStream<DomainLifecycleEvent>.Continuation) { self.continuation = continuation }
}

/// The event registrations of one connection, so that closing or losing the connection can
/// deregister them and finish their streams.
final class EventHub: Sendable {
    private struct Registration {
        let callbackID: Int32
        let sink: EventSink
    }

    private struct State {
        var nextToken = 0
        var registrations: [Int: Registration] = [:]
        var closeCallbackRegistered = false
    }

    private let state = Mutex(State())

    func add(callbackID: Int32, sink: EventSink) -> Int {
        state.withLock { state in
            state.nextToken += 1
            state.registrations[state.nextToken] = Registration(callbackID: callbackID, sink: sink)
            return state.nextToken
        }
    }

    /// Deregisters one subscription if still registered. Runs on a pool thread.
    func deregister(token: Int, on conn: OpaquePointer) {
        guard let registration = state.withLock({ $0.registrations.removeValue(forKey: token) }) else { return }
        if virConnectDomainEventDeregisterAny(conn, registration.callbackID) < 0 { virResetLastError() }
        registration.sink.continuation.finish()
    }

    /// Deregisters everything and finishes every stream. Runs on a pool thread.
    func deregisterAll(on conn: OpaquePointer) {
        let all = state.withLock { state in
            defer { state.registrations = [:] }
            return Array(state.registrations.values)
        }
        for registration in all {
            if virConnectDomainEventDeregisterAny(conn, registration.callbackID) < 0 { virResetLastError() }
            registration.sink.continuation.finish()
        }
    }

    /// Finishes every stream without talking to libvirt: the connection is already gone.
    func finishAll() {
        let all = state.withLock { state in
            defer { state.registrations = [:] }
            return Array(state.registrations.values)
        }
        for registration in all { registration.sink.continuation.finish() }
    }

    /// Registers a close callback that finishes all streams when the connection drops. Best
    /// effort: drivers without close callbacks (the in-process test driver) just never call it.
    func registerCloseCallback(on conn: OpaquePointer) {
        let opaque = Unmanaged.passRetained(self).toOpaque()
        if virConnectRegisterCloseCallback(conn, connectionClosed, opaque, releaseHub) < 0 {
            virResetLastError()
            Unmanaged<EventHub>.fromOpaque(opaque).release()
            return
        }
        state.withLock { $0.closeCallbackRegistered = true }
    }

    func unregisterCloseCallback(on conn: OpaquePointer) {
        let registered = state.withLock { state in
            defer { state.closeCallbackRegistered = false }
            return state.closeCallbackRegistered
        }
        if registered, virConnectUnregisterCloseCallback(conn, connectionClosed) < 0 { virResetLastError() }
    }
}

// C callbacks: they capture nothing and find their Swift object through the opaque pointer.
// They run on the libvirt event loop thread.

private let lifecycleCallback: @convention(c) (
    OpaquePointer?, OpaquePointer?, Int32, Int32, UnsafeMutableRawPointer?
) -> Int32 = { _, dom, event, detail, opaque in
    guard let dom, let opaque else { return 0 }
    let sink = Unmanaged<EventSink>.fromOpaque(opaque).takeUnretainedValue()
    sink.continuation.yield(
        DomainLifecycleEvent(
            domainName: virDomainGetName(dom).map { String(cString: $0) } ?? "",
            domainUUID: Domain.uuid(of: dom), kind: .init(rawValue: event), detail: detail))
    return 0
}

private let releaseSink: @convention(c) (UnsafeMutableRawPointer?) -> Void = { opaque in
    guard let opaque else { return }
    Unmanaged<EventSink>.fromOpaque(opaque).release()
}

private let connectionClosed: @convention(c) (OpaquePointer?, Int32, UnsafeMutableRawPointer?) -> Void = {
    _, _, opaque in
    guard let opaque else { return }
    Unmanaged<EventHub>.fromOpaque(opaque).takeUnretainedValue().finishAll()
}

private let releaseHub: @convention(c) (UnsafeMutableRawPointer?) -> Void = { opaque in
    guard let opaque else { return }
    Unmanaged<EventHub>.fromOpaque(opaque).release()
}
