import Foundation
import VirtformSystem

#if canImport(Glibc)
    import Glibc
#endif

/// One kea-dhcp4 control socket: each command is one connection (Kea answers one command per
/// connection and then closes it), JSON in, JSON out. Blocking socket calls run on a thread of
/// their own, never on the cooperative pool.
struct KeaControlChannel: Sendable {
    let endpoint: String
    let path: String
    /// For the whole command: connect, send, and read the complete answer.
    let timeout: Duration

    struct Answer: Sendable {
        let result: Int
        let text: String?
        let arguments: JSONValue?
    }

    /// Sends `command` (with `arguments` when given) and returns Kea's answer; throws unless
    /// `result` is 0 (success) or 3 (empty: nothing found), naming the endpoint, the command
    /// and Kea's `text`.
    func send(_ command: String, arguments: JSONValue? = nil) async throws -> Answer {
        KillPoint.step("kea \(command)")
        var request: [String: JSONValue] = ["command": .string(command)]
        if let arguments { request["arguments"] = arguments }
        let bytes = Array(JSONValue.object(request).canonicalText.utf8)
        let (path, timeout, endpoint) = (self.path, self.timeout, self.endpoint)
        let reply: [UInt8] = try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try Self.exchange(bytes, path: path, timeout: timeout) }
                    .mapError { DHCPError(.unreachable, "failed to send `\(command)` to Kea at \(endpoint) (\(path)): \($0)", endpoint: endpoint) })
            }
            thread.name = "kea-control"
            thread.start()
        }
        let value: JSONValue
        do {
            value = try JSONValue.parse(reply)
        } catch {
            throw DHCPError(.serverError, "failed to read Kea's answer to `\(command)` at \(endpoint): \(error)", endpoint: endpoint)
        }
        // A command sent to a server can be answered as a list (one answer per service).
        let answer = value.arrayValue?.first ?? value
        guard let result = answer["result"]?.intValue else {
            throw DHCPError(.serverError, "failed to read Kea's answer to `\(command)` at \(endpoint): no result in \(answer.canonicalText.prefix(200))", endpoint: endpoint)
        }
        let text = answer["text"]?.stringValue
        guard result == 0 || result == 3 else {
            throw DHCPError(.serverError, "Kea at \(endpoint) refused `\(command)` (result \(result)): \(text ?? "no text")", endpoint: endpoint)
        }
        return Answer(result: result, text: text, arguments: answer["arguments"])
    }

    private static func errnoText(_ what: String) -> SystemError { SystemError("\(what): \(String(cString: strerror(errno)))") }

    /// Connects, writes the request and reads until Kea closes the connection or a complete
    /// JSON document has arrived.
    private static func exchange(_ request: [UInt8], path: String, timeout: Duration) throws -> [UInt8] {
        let deadline = ContinuousClock.now + timeout
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw errnoText("socket()") }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        guard pathBytes.count <= UnixSocket.maximumPathLength else {
            throw SystemError("socket path is longer than \(UnixSocket.maximumPathLength) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        func setTimeouts() throws {
            let left = max(deadline - ContinuousClock.now, .milliseconds(1))
            let (seconds, attoseconds) = left.components
            var tv = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
            guard setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size)) == 0,
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size)) == 0
            else { throw errnoText("setsockopt()") }
        }
        try setTimeouts()
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw errnoText("connect()") }

        var sent = 0
        while sent < request.count {
            try setTimeouts()
            let n = request[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { throw SystemError("timed out after \(timeout) while sending") }
                throw errnoText("send()")
            }
            sent += n
        }

        var reply: [UInt8] = []
        var scanner = JSONCompletenessScanner()
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        while true {
            if ContinuousClock.now >= deadline { throw SystemError("no complete answer within \(timeout)") }
            try setTimeouts()
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { throw SystemError("no complete answer within \(timeout)") }
                throw errnoText("recv()")
            }
            if n == 0 { break }
            reply += buffer[0..<n]
            if scanner.feed(buffer[0..<n]) { break }
        }
        guard !reply.isEmpty else { throw SystemError("Kea closed the connection without an answer") }
        return reply
    }
}

/// Tells, chunk by chunk, when the top-level JSON value (an object or an array) is complete,
/// without parsing everything again for every chunk.
struct JSONCompletenessScanner {
    private var depth = 0
    private var started = false
    private var inString = false
    private var escaped = false

    /// Returns true once the document's outermost bracket has closed.
    mutating func feed(_ chunk: ArraySlice<UInt8>) -> Bool {
        for byte in chunk {
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                started = true
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
                if started && depth == 0 { return true }
            default: break
            }
        }
        return false
    }
}
