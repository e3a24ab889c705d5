import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import VirtformModel

/// The reconcile loop's HTTP endpoint (SwiftNIO's HTTP/1 server): `GET /metrics` (Prometheus's
/// text format, from the registry), `GET /healthz` (the loop passes) and `GET /readyz` (a pass
/// has ended on valid manifests). Anything else is 404; a method other than GET or HEAD is 405.
/// Bound to loopback unless told otherwise; stops accepting on graceful shutdown.
struct MetricsServer: Service {
    let host: String
    let port: Int
    let metrics: ReconcileMetrics
    let health: ReconcileHealth
    let logger: Logger
    /// Called with the address once bound (port 0 takes a free one).
    var bound: @Sendable (String) -> Void = { _ in }

    func run() async throws {
        let (metrics, health) = (self.metrics, self.health)
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.backlog, value: 64)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(Handler(metrics: metrics, health: health))
                    }
                }
                .childChannelOption(.maxMessagesPerRead, value: 1)
                .bind(host: host, port: port).get()
        } catch {
            throw CommandFailure("cannot serve metrics on \(host):\(port): \(error)")
        }
        let address = "\(host.contains(":") ? "[\(host)]" : host):\(channel.localAddress?.port ?? port)"
        logger.info("serving metrics", metadata: ["metrics": "http://\(address)/metrics", "health": "http://\(address)/healthz"])
        bound(address)
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await channel.closeFuture.get()
            } onGracefulShutdown: {
                channel.close(promise: nil)
            }
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    /// One connection's requests, answered one at a time.
    final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        let metrics: ReconcileMetrics
        let health: ReconcileHealth
        private var request: HTTPRequestHead?

        init(metrics: ReconcileMetrics, health: ReconcileHealth) {
            self.metrics = metrics
            self.health = health
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): request = head
            case .body: break
            case .end:
                guard let head = request else { return }
                request = nil
                respond(to: head, context: context)
            }
        }

        private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
            let path = String(head.uri.prefix { $0 != "?" })
            var status = HTTPResponseStatus.ok
            var contentType = "text/plain; charset=utf-8"
            var body: [UInt8]
            if head.method != .GET && head.method != .HEAD {
                (status, body) = (.methodNotAllowed, Array("only GET and HEAD\n".utf8))
            } else {
                switch path {
                case "/metrics":
                    contentType = "text/plain; version=0.0.4; charset=utf-8"
                    body = metrics.exposition()
                case "/healthz", "/livez":
                    let live = health.live
                    (status, body) = (live.ok ? .ok : .serviceUnavailable, Array((live.detail + "\n").utf8))
                case "/readyz":
                    let ready = health.ready
                    (status, body) = (ready.ok ? .ok : .serviceUnavailable, Array((ready.detail + "\n").utf8))
                default:
                    (status, body) = (.notFound, Array("not found: try /metrics, /healthz or /readyz\n".utf8))
                }
            }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: contentType)
            headers.add(name: "Content-Length", value: "\(body.count)")
            let keepAlive = head.isKeepAlive
            if !keepAlive { headers.add(name: "Connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
            if head.method != .HEAD {
                context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
            }
            let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            if !keepAlive {
                let channel = context.channel
                done.whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }
}
