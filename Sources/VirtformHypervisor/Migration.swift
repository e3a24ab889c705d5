import Foundation
import Libvirt
import Synchronization
import VirtformModel
import VirtformSystem

/// Moving a domain between hosts: live through libvirt's migration API, or cold.
extension LibvirtHost {
    /// How a live migration is bounded and where its data goes.
    public struct MigrationLimits: Sendable {
        /// `tcp://ADDRESS` of the destination, or nil to let it choose.
        public var uri: String?
        /// Aborted after this long in all.
        public var completion: Duration
        /// Aborted when the data left to send has not shrunk for this long.
        public var noProgress: Duration
        /// How long the abort itself may take.
        public var abortTimeout: Duration
        /// How often progress is read.
        public var pollInterval: Duration
        /// A cap on the bandwidth, in MiB/s.
        public var bandwidthMiBps: Int?

        public init(uri: String?, completion: Duration, noProgress: Duration, abortTimeout: Duration = .seconds(15),
                    pollInterval: Duration = .milliseconds(500), bandwidthMiBps: Int? = nil) {
            self.bandwidthMiBps = bandwidthMiBps
            self.uri = uri
            self.completion = completion
            self.noProgress = noProgress
            self.abortTimeout = abortTimeout
            self.pollInterval = pollInterval
        }
    }

    /// What a running migration has left to send.
    public struct MigrationProgress: Sendable {
        public var dataTotal: UInt64
        public var dataRemaining: UInt64
        public var elapsed: Duration
    }

    /// Migrates the running domain live to `destination`: persistent there with `spec` and
    /// `ownership` (its UUID kept), undefined here, aborted on I/O errors. Right before the call
    /// it checks again what the plan checked where it could: the guest runs, its disks are all
    /// network disks with a cache mode that allows migration, and its CPU (when the definition
    /// names one) is compatible with the destination's hypervisor. While it runs, `progress` is
    /// told what is left; past `limits.completion`, after `limits.noProgress` without progress,
    /// or when the task is cancelled (Ctrl-C), the job is aborted and the guest keeps running
    /// here. Nothing is retried.
    public func migrateLive(_ domainName: String, to destination: LibvirtHost, uuid: String, spec: DomainSpec, ownership: Ownership,
                            limits: MigrationLimits, progress: @escaping @Sendable (MigrationProgress) -> Void) async throws {
        let domain = try await liveDomain(domainName)
        guard try await domain.state.isActive else {
            throw HypervisorError("domain \(domainName) on host \(name) is no longer running; plan again to move it cold")
        }
        if Task.isCancelled {
            throw HypervisorError("the migration of \(domainName) from host \(name) was not started: the apply was interrupted")
        }
        let running = try await domain.xml()
        if let problem = Self.migrationProblem(inLiveXML: running) {
            throw HypervisorError("domain \(domainName) cannot be migrated live from host \(name): \(problem)")
        }
        if let cpu = Self.cpuElement(in: running) {
            do {
                guard try await destination.connection.hypervisorCPUCompatible(with: cpu) else {
                    throw HypervisorError("domain \(domainName)'s CPU is not compatible with host \(destination.name)'s hypervisor")
                }
            } catch let error as LibvirtError where error.code == .noSupport || error.code == .operationUnsupported {
                // A hypervisor that cannot compare CPUs: libvirt checks again when it migrates.
            }
        }
        let persistent = DomainXML.render(spec, ownership: ownership, uuid: uuid)
        // A disk that logs in under another initiator name on the destination (a pool that
        // admits hosts by name): the running guest is started there with that name, not with
        // the source's (the rest of its live definition is kept as it runs).
        let live = try DomainXML.read(running).spec
        var destinationXML: String?
        let renamed = spec.disks.filter { disk in
            disk.initiator != nil && live.disks.first { $0.target == disk.target && $0.lun == disk.lun }?.initiator != disk.initiator
        }
        if !renamed.isEmpty {
            var xml = try await domain.xml(flags: [.migratable])
            for disk in renamed { xml = Self.settingInitiator(disk.initiator!, of: "\(disk.target)/\(disk.lun)", in: xml) }
            destinationXML = xml
        }
        let aborted = Mutex<String?>(nil)
        let finished = Mutex(false)
        let started = ContinuousClock.now
        // Watches the job and aborts it past either limit, or once the task is cancelled; ends
        // when the migration does. An abort is tried again at every look until the migration
        // call returns: libvirt refuses it in the phases before the memory is sent.
        let watcher = Task {
            var watch = MigrationWatch(limits: limits, started: started)
            while !finished.withLock({ $0 }) {
                try? await Task.sleep(for: limits.pollInterval)
                if finished.withLock({ $0 }) || Task.isCancelled { return }
                let now = ContinuousClock.now
                let job = try? await domain.jobInfo()
                if let job, job.active {
                    progress(MigrationProgress(dataTotal: job.dataTotal, dataRemaining: job.dataRemaining, elapsed: now - started))
                }
                if let reason = watch.look(remaining: job.flatMap { $0.active ? $0.dataRemaining : nil }, at: now) {
                    aborted.withLock { $0 = $0 ?? reason }
                }
                if aborted.withLock({ $0 }) != nil {
                    try? await withDeadline(limits.abortTimeout, "abort the migration of \(domainName)") { try await domain.abortJob() }
                }
            }
        }
        defer {
            finished.withLock { $0 = true }
            watcher.cancel()
        }
        KillPoint.step("libvirt migrate \(domainName) to \(destination.name)")
        do {
            try await withTaskCancellationHandler {
                _ = try await domain.migrate(to: destination.connection, uri: limits.uri,
                                             flags: [.live, .persistDestination, .undefineSource, .abortOnError],
                                             destinationXML: destinationXML, persistentXML: persistent,
                                             bandwidthMiBps: limits.bandwidthMiBps.map(UInt64.init))
            } onCancel: {
                aborted.withLock { $0 = $0 ?? "the apply was interrupted" }
                Task { try? await withDeadline(limits.abortTimeout, "abort the migration of \(domainName)") { try await domain.abortJob() } }
            }
        } catch {
            if let reason = aborted.withLock({ $0 }) {
                throw HypervisorError("the migration of \(domainName) from host \(name) to \(destination.name) was aborted: \(reason); it runs on \(name) as before")
            }
            throw error
        }
        forget(domainName)
    }

    /// `xml` with the iSCSI disk whose source is `source` logging in as `name`: its
    /// `<initiator>` replaced, or added when it has none.
    static func settingInitiator(_ name: String, of source: String, in xml: String) -> String {
        guard let start = xml.range(of: "name='\(DomainXML.escape(source))'"),
            let end = xml.range(of: "</source>", range: start.upperBound..<xml.endIndex)
        else { return xml }
        var block = String(xml[start.upperBound..<end.lowerBound])
        let element = "<initiator><iqn name='\(DomainXML.escape(name))'/></initiator>"
        if let open = block.range(of: "<initiator>"), let close = block.range(of: "</initiator>", range: open.upperBound..<block.endIndex) {
            block.replaceSubrange(open.lowerBound..<close.upperBound, with: element)
        } else {
            block += element
        }
        return xml.replacingCharacters(in: start.upperBound..<end.lowerBound, with: block)
    }

    /// What a running migration's watcher decides at each look at the job: nothing, or why it
    /// is to be aborted — past its completion limit, or when the data left has not shrunk for
    /// its no-progress limit (the least seen counts: precopy sends memory again as it is
    /// dirtied, so what is left goes up as well as down).
    public struct MigrationWatch: Sendable {
        let limits: MigrationLimits
        let started: ContinuousClock.Instant
        private var least = UInt64.max
        private var lastProgress: ContinuousClock.Instant

        public init(limits: MigrationLimits, started: ContinuousClock.Instant) {
            self.limits = limits
            self.started = started
            self.lastProgress = started
        }

        /// `remaining`: the job's data left, or nil when no job could be read (not yet started,
        /// or the call failed): time still counts against both limits.
        public mutating func look(remaining: UInt64?, at now: ContinuousClock.Instant) -> String? {
            if let remaining, remaining < least {
                least = remaining
                lastProgress = now
            }
            if now - started > limits.completion {
                return "it took longer than \(LibvirtHost.seconds(limits.completion)) (the limit for its memory)"
            }
            if now - lastProgress > limits.noProgress {
                return "no progress for \(LibvirtHost.seconds(limits.noProgress))"
            }
            return nil
        }
    }

    /// Moves the stopped domain cold: its mark here first says where it goes (so that a copy
    /// left on both hosts by an interrupted move is recognised as such), then it is defined on
    /// `destination` with the same UUID, then undefined here.
    public func moveCold(_ domainName: String, to destination: LibvirtHost, uuid: String, spec: DomainSpec, ownership: Ownership) async throws {
        let domain = try await liveDomain(domainName)
        guard try await !domain.state.isActive else {
            throw HypervisorError("domain \(domainName) on host \(name) is running now; plan again to migrate it live")
        }
        try await writeMark(domainName, ownership)
        KillPoint.step("cold move: define \(domainName) on \(destination.name)")
        try await destination.defineNew(spec, ownership: ownership, uuid: uuid)
        KillPoint.step("cold move: undefine \(domainName) on \(name)")
        try await delete(domainName)
    }

    /// Why a running guest's live definition cannot be migrated, or nil: a disk that is not on
    /// the network (a file or device of this host), or one whose cache mode makes migration
    /// unsafe (only `none` and `directsync` are safe on shared storage).
    static func migrationProblem(inLiveXML xml: String) -> String? {
        guard let devices = try? DomainXML.disks(in: xml) else { return "its definition could not be read" }
        for disk in devices {
            if disk.device == "disk" && disk.type != "network" {
                return "disk \(disk.target) is \(disk.type) storage of the host itself, not shared iSCSI storage"
            }
            if disk.device == "disk", let cache = disk.cache, cache != "none" && cache != "directsync" {
                return "disk \(disk.target) uses cache mode \(cache); migration needs none or directsync"
            }
        }
        return nil
    }

    /// The definition's `<cpu>…</cpu>` element, if it names one.
    static func cpuElement(in xml: String) -> String? {
        guard let open = xml.range(of: "<cpu"), let close = xml.range(of: "</cpu>", range: open.upperBound..<xml.endIndex) else {
            return nil
        }
        return String(xml[open.lowerBound..<close.upperBound])
    }

    static func seconds(_ duration: Duration) -> String {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return seconds >= 10 ? "\(Int(seconds)) s" : String(format: "%.1f s", seconds)
    }
}
