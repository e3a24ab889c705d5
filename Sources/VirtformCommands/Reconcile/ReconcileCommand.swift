import ArgumentParser
import Foundation
import Libvirt
import Logging
import ServiceLifecycle
import VirtformExecution
import VirtformPlanning

/// `virtform reconcile`: the site kept in step by itself (docs/reconcile.md).
struct ReconcileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reconcile",
        abstract: "Keep the site in step continuously: plan on every event and resync, apply what spec.reconcile allows, export metrics.",
        discussion: """
            Each pass reads every system, plans, and carries out what the Site's and each VM's spec.reconcile \
            allows (observe: nothing; repair: undo changes made outside virtform and restart HA guests of a \
            fenced host; full: everything apply would do with the allowances given here), under the site's \
            lock, recorded in the run history as a run of kind reconcile. Everything else is logged and counted. \
            With --watch it runs until SIGTERM or SIGINT: a pass at every --resync, on libvirt domain events, when \
            the manifests change on disk, and when a change backing off is due; metrics on --metrics-address.

            Exit status: 0 after a graceful shutdown (--watch), or when a single pass left nothing to do; 3 when \
            a single pass left differences it does not carry out (reported only, blocked, or another apply held \
            the lock); 1 on an error (the manifests invalid at start, the metrics address taken, a failed action \
            or a system that could not be read in a single pass).
            """
    )

    @OptionGroup var site: SiteOptions

    @Flag(help: "Run until SIGTERM or SIGINT instead of one pass.")
    var watch = false

    @Option(help: "Seconds between full resyncs, whatever events say.")
    var resync: Double = 60

    @Option(help: ArgumentHelp("Where to serve /metrics, /healthz and /readyz (HOST:PORT; port 0 takes a free one), or none.",
                               valueName: "host:port"))
    var metricsAddress = "127.0.0.1:9464"

    @Option(help: "Log lines as text or json (one JSON object per line), on standard error.")
    var logFormat: LogFormat = .text

    @Option(help: "Least severe log level written: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(help: "Readings in a row a host must fail before the loop may fence it (HA).")
    var hostDownAfter = 3

    @Option(help: "Seconds those failed readings must span before the loop may fence the host.")
    var hostDownSeconds: Double = 30

    @Option(help: "Seconds before the first retry of a change that failed for a reason retrying can help (doubled each time).")
    var backoffBase: Double = 5

    @Option(help: "Most seconds between retries of a failing change.")
    var backoffMax: Double = 300

    @Option(help: "Seconds a pass may run (or the loop go without one) before /healthz fails.")
    var stallAfter: Double = 1800

    @OptionGroup var allow: AllowanceOptions

    @OptionGroup var reading: ReadOptions

    @OptionGroup var state: BackendOptions

    @OptionGroup var execution: ExecutionOptions

    func validate() throws {
        if !(resync >= 1) { throw ValidationError("--resync must be at least 1 second, not \(resync)") }
        if hostDownAfter < 1 { throw ValidationError("--host-down-after must be 1 or more readings") }
        if !(hostDownSeconds >= 0) { throw ValidationError("--host-down-seconds must be 0 or more") }
        if !(backoffBase > 0) || !(backoffMax >= backoffBase) {
            throw ValidationError("--backoff-base must be above 0 and --backoff-max at least as long")
        }
        if !allow.confirmHostDown.isEmpty {
            throw ValidationError("--confirm-host-down says a host is down now; a loop that runs for months must not keep believing it. Use apply --confirm-host-down, or give the host a spec.fence command.")
        }
        _ = try Self.address(metricsAddress)
    }

    /// `HOST:PORT` (`[::1]:PORT` for IPv6), or nil for `none`.
    static func address(_ text: String) throws -> (host: String, port: Int)? {
        if text == "none" { return nil }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("--metrics-address takes HOST:PORT (127.0.0.1:9464) or none, not \(text)")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw ValidationError("--metrics-address needs a host: 127.0.0.1:\(port)") }
        return (host, port)
    }

    func run() async throws {
        LogSetup.bootstrap(format: logFormat, level: logLevel)
        let logger = Logger(label: "virtform.reconcile")
        // Domain events and keepalive need libvirt's event loop, before the first connection.
        LibvirtRuntime.setEventLoopEnabled(true)
        // The manifests must load once before anything starts; later they may go invalid for a while.
        let first = try site.loadResult()
        let settings = Reconciler.Settings(
            paths: site.effectivePaths, resync: .milliseconds(Int(resync * 1000)), readTimeout: reading.timeout,
            allowances: allow.allowances,
            execution: execution.settings(runID: nil),
            hostDownObservations: hostDownAfter, hostDownAfter: .milliseconds(Int(hostDownSeconds * 1000)),
            backoff: RetryBook<String>.Backoff(base: .milliseconds(Int(backoffBase * 1000)), cap: .milliseconds(Int(backoffMax * 1000))),
            backend: state, once: !watch)
        let metrics = ReconcileMetrics()
        let health = ReconcileHealth(stallAfter: .milliseconds(Int(stallAfter * 1000)))
        let reconciler = Reconciler(settings: settings, logger: logger, metrics: metrics, health: health)
        logger.info("reconciling", metadata: [
            "site": "\(first.site.name)", "watch": "\(watch)", "resync": "\(resync)",
            "mode": "\(first.site.declarations.first?.reconcile?.rawValue ?? "observe")",
        ])

        guard watch else {
            try await reconciler.run()
            switch reconciler.outcome {
            case .clean, .applied: return
            case .reported, .locked: throw ExitCode(ApplyCommand.blockedExitCode)
            case .failed: throw ExitCode(1)
            }
        }
        // Shut down in reverse order: the loop first (its running actions finish), then the
        // metrics server, so /metrics and /healthz answer while it drains.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let (host, port) = try Self.address(metricsAddress) {
            services.append(.init(service: MetricsServer(host: host, port: port, metrics: metrics, health: health, logger: logger),
                                  successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        services.append(.init(service: reconciler, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup))
        var configuration = ServiceGroupConfiguration(services: services, logger: logger)
        configuration.gracefulShutdownSignals = [.sigterm, .sigint]
        // A second signal while draining ends the running actions too.
        configuration.cancellationSignals = [.sigquit]
        let group = ServiceGroup(configuration: configuration)
        try await group.run()
    }
}
