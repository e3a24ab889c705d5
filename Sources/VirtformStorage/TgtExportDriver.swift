import Foundation
import VirtformModel
import VirtformSystem

/// The `tgt` export driver: talks to a running tgtd through `tgtadm -C <controlPort> --lld iscsi`.
///
/// One target per exported volume, IQN `<iqnPrefix>:<project>.<volume>`, the volume as LUN 1,
/// bound to the pool's initiators by name (`-Q`), or to every initiator (`-I ALL`) when the list is empty.
///
/// **Ownership.** tgt keeps no properties on a target, so a target counts as virtform's when its
/// IQN starts with `<iqnPrefix>:` **and** its LUN 1's backing file carries a virtform ownership
/// mark (of an image or a LUN), or that file no longer exists (a LUN deleted under its target
/// must still be cleaned up). A target named that way that serves no LUN at all is reported as
/// half-made (`ObservedTarget.halfMade`: an export a crash interrupted); the planner gives it to
/// the site whose project its name holds. Anything else is reported as unowned and never removed.
public struct TgtExportDriver: ExportDriver {
    public let export: ISCSIExport
    public let controlPort: Int
    /// The CHAP accounts every target gets, when the pool asks for CHAP.
    public let credentials: ExportCredentials?
    private let runner: any CommandRunner
    private let backingMark: @Sendable (String) -> OwnershipMark?
    /// How many targets `export` makes at once.
    public var parallelism = 4

    /// `backingMark` reads the mark of a backing file (default: its xattr).
    public init(export: ISCSIExport, controlPort: Int = 0, credentials: ExportCredentials? = nil, runner: any CommandRunner = LocalCommandRunner(),
                backingMark: @escaping @Sendable (String) -> OwnershipMark? = { try? OwnershipMark.read(path: $0) }) {
        self.export = export
        self.controlPort = controlPort
        self.credentials = credentials
        self.runner = runner
        self.backingMark = backingMark
    }

    public var iqnPrefix: String { export.iqnPrefix }

    private var base: [String] { ["tgtadm", "-C", String(controlPort), "--lld", "iscsi"] }

    public func probe() async throws {
        do {
            _ = try await showTargets()
        } catch let error as StorageError {
            throw StorageError(.unusable, "iSCSI export via tgt is unusable: \(error.message) "
                               + "(ensure tgtd is running with `tgtd -C \(controlPort) --iscsi portal=\(export.portal)`; `virtform lab up` starts the lab's)")
        }
    }

    public func observe() async throws -> [ObservedTarget] {
        let text = try await showTargets()
        return Self.parseShow(text).map { target in
            var target = target
            target.isOwned = isOwned(target)
            if target.isOwned, let lun = target.luns.first(where: { $0.lun == 1 }) { target.site = backingMark(lun.backingPath)?.site }
            target.halfMade = target.luns.isEmpty && target.volume(prefix: iqnPrefix) != nil
            return target
        }.sorted { $0.iqn < $1.iqn }
    }

    private func isOwned(_ target: ObservedTarget) -> Bool {
        guard target.iqn.hasPrefix(iqnPrefix + ":"), let lun = target.luns.first(where: { $0.lun == 1 }) else { return false }
        if !FileManager.default.fileExists(atPath: lun.backingPath) { return true }
        guard let mark = backingMark(lun.backingPath) else { return false }
        return mark.kind == .lun || mark.kind == .image
    }

    private func showTargets() async throws -> String {
        try await tgtadm(["--op", "show", "--mode", "target"], "list the targets of tgtd (control port \(controlPort))").standardOutput
    }

    /// Targets are made `parallelism` at a time (tgtd answers one request at a time, but most
    /// of the cost is starting `tgtadm`); the tids are chosen first, from one listing. Every
    /// target is attempted; the first failure is thrown after the others have finished.
    public func export(_ requests: [ExportRequest]) async throws {
        let existing = try await observe()
        var used = Set(existing.map(\.tid))
        var planned: [(tid: Int, iqn: String, backing: String, initiators: [String]?, what: String)] = []
        var nextTid = 1
        for request in requests {
            let iqn = iqn(project: request.project, volume: request.volume)
            let what = "export \(request.project)/\(request.volume) as \(iqn)"
            if let present = existing.first(where: { $0.iqn == iqn }) {
                if present.luns.contains(where: { $0.lun == 1 && $0.backingPath == request.backingPath }) { continue }
                throw StorageError(.alreadyExists, "failed to \(what): target \(iqn) (tid \(present.tid)) exists with another backing store")
            }
            if planned.contains(where: { $0.iqn == iqn }) { continue }
            guard backingMark(request.backingPath) != nil else {
                throw StorageError(.unowned, "refusing to \(what): \(request.backingPath) carries no virtform ownership mark")
            }
            while used.contains(nextTid) { nextTid += 1 }
            used.insert(nextTid)
            planned.append((nextTid, iqn, request.backingPath, request.initiators, what))
        }
        if credentials != nil, !planned.isEmpty { try await ensureAccounts(rotate: false) }
        let failures = await withTaskGroup(of: (any Error)?.self) { group in
            var iterator = planned.makeIterator()
            func addNext() -> Bool {
                guard let item = iterator.next() else { return false }
                group.addTask {
                    do {
                        try await makeTarget(tid: item.tid, iqn: item.iqn, backing: item.backing, initiators: item.initiators, item.what)
                        return nil
                    } catch {
                        return error
                    }
                }
                return true
            }
            for _ in 0..<max(1, parallelism) {
                if !addNext() { break }
            }
            var failures: [any Error] = []
            while let result = await group.next() {
                if let result { failures.append(result) }
                _ = addNext()
            }
            return failures
        }
        if let first = failures.first { throw first }
    }

    private func makeTarget(tid: Int, iqn: String, backing: String, initiators: [String]?, _ what: String) async throws {
        let t = String(tid)
        try await tgtadm(["--op", "new", "--mode", "target", "--tid", t, "-T", iqn], what)
        do {
            try await tgtadm(["--op", "new", "--mode", "logicalunit", "--tid", t, "--lun", "1", "-b", backing], what)
            // The accounts first: a target that admits initiators before it asks for CHAP
            // would let one log in without it.
            try await bindAccounts(tid: t, what)
            // `-I` binds initiator addresses (ALL: everyone); `-Q` binds initiator names. A pool
            // that admits hosts by name binds only the names the request gives (none: nobody).
            if initiators == nil && export.initiators.isEmpty {
                try await tgtadm(["--op", "bind", "--mode", "target", "--tid", t, "-I", "ALL"], what)
            }
            for initiator in initiators ?? export.initiators {
                try await tgtadm(["--op", "bind", "--mode", "target", "--tid", t, "-Q", initiator], what)
            }
        } catch {
            // A target without its LUN or its ACL must not stay behind.
            _ = try? await runner.run(base + ["--op", "delete", "--mode", "target", "--tid", t, "--force"])
            throw error
        }
    }

    public func admit(iqn: String, add: [String], remove: [String]) async throws {
        let targets = try await observe()
        guard let target = targets.first(where: { $0.iqn == iqn }) else {
            throw StorageError(.notFound, "failed to change the initiators of \(iqn): no such target on tgtd (control port \(controlPort))")
        }
        guard target.isOwned else { throw StorageError(.unowned, "refusing to change \(iqn): it is not virtform's") }
        let t = String(target.tid)
        for name in add where !target.boundInitiators.contains(name) {
            try await tgtadm(["--op", "bind", "--mode", "target", "--tid", t, "-Q", name], "admit \(name) to \(iqn)")
        }
        for name in remove where target.boundInitiators.contains(name) {
            // tgt lists names (`-Q`) and addresses (`-I`, `ALL`) under one heading.
            let flag = ObservedTarget.isInitiatorName(name) ? "-Q" : "-I"
            try await tgtadm(["--op", "unbind", "--mode", "target", "--tid", t, flag, name], "stop admitting \(name) to \(iqn)")
        }
    }

    // MARK: CHAP

    public func secure(_ iqns: [String], rotate: Bool) async throws {
        guard let credentials else { throw StorageError(.invalid, "failed to set CHAP accounts: the pool has no chap settings") }
        // Deleting an account unbinds it from every target (and a target without one asks for
        // no CHAP): each that had it gets it back, not only those the plan names.
        let before = try await observe()
        let names = Set([credentials.initiator.username] + (credentials.mutual.map { [$0.username] } ?? []))
        let had = rotate ? before.filter { $0.isOwned && !names.isDisjoint(with: $0.accounts + [$0.outgoingAccount].compactMap { $0 }) }.map(\.iqn) : []
        try await ensureAccounts(rotate: rotate)
        let targets = try await observe()
        for iqn in Array(Set(iqns + had)).sorted() {
            guard let target = targets.first(where: { $0.iqn == iqn }) else {
                throw StorageError(.notFound, "failed to bind the CHAP accounts to \(iqn): no such target on tgtd (control port \(controlPort))")
            }
            guard target.isOwned else { throw StorageError(.unowned, "refusing to change \(iqn): it is not virtform's") }
            try await bindAccounts(tid: String(target.tid), "bind the CHAP accounts to \(iqn)", skipping: target)
        }
    }

    /// Creates the accounts tgtd lacks (with `rotate`, every one of them anew: tgt cannot change
    /// a password in place, and deleting an account unbinds it from every target).
    private func ensureAccounts(rotate: Bool) async throws {
        guard let credentials else { return }
        let listed = try await tgtadm(["--op", "show", "--mode", "account"], "list the CHAP accounts of tgtd").standardOutput
        let existing = Set(listed.split(separator: "\n").dropFirst().map { $0.trimmingCharacters(in: .whitespaces) })
        for account in [credentials.initiator] + (credentials.mutual.map { [$0] } ?? []) {
            if existing.contains(account.username) {
                guard rotate else { continue }
                try await tgtadm(["--op", "delete", "--mode", "account", "--user", account.username], "replace CHAP account \(account.username)")
            }
            try await tgtadm(["--op", "new", "--mode", "account", "--user", account.username, "--password", account.password],
                             "create CHAP account \(account.username)")
        }
    }

    private func bindAccounts(tid: String, _ what: String, skipping present: ObservedTarget? = nil) async throws {
        guard let credentials else { return }
        if present?.accounts.contains(credentials.initiator.username) != true {
            try await tgtadm(["--op", "bind", "--mode", "account", "--tid", tid, "--user", credentials.initiator.username], what)
        }
        if let mutual = credentials.mutual, present?.outgoingAccount != mutual.username {
            // A target has one outgoing account: another one (a renamed mutual account) goes first.
            if let other = present?.outgoingAccount {
                try await tgtadm(["--op", "unbind", "--mode", "account", "--tid", tid, "--user", other, "--outgoing"], what)
            }
            try await tgtadm(["--op", "bind", "--mode", "account", "--tid", tid, "--user", mutual.username, "--outgoing"], what)
        }
    }

    public func unexport(iqn: String, force: Bool) async throws {
        let targets = try await observe()
        guard let target = targets.first(where: { $0.iqn == iqn }) else {
            throw StorageError(.notFound, "failed to unexport \(iqn): no such target on tgtd (control port \(controlPort))")
        }
        guard target.isOwned || target.halfMade else {
            throw StorageError(.unowned, "refusing to unexport \(iqn): it is not virtform's (its IQN lacks the prefix \(iqnPrefix): "
                               + "or its backing file carries no ownership mark)")
        }
        if !target.connectedInitiators.isEmpty && !force {
            throw StorageError(.refused, "refusing to unexport \(iqn): initiators are connected (\(target.connectedInitiators.joined(separator: ", "))); "
                               + "stop the guests using it first, or force")
        }
        try await tgtadm(["--op", "delete", "--mode", "target", "--tid", String(target.tid)] + (force ? ["--force"] : []),
                         "unexport \(iqn)")
    }

    @discardableResult
    private func tgtadm(_ arguments: [String], _ what: String) async throws -> CommandResult {
        let full = base + arguments
        let result: CommandResult
        do {
            result = try await runner.run(full)
        } catch {
            // A runner's own error (a timeout, a failed start) may quote the whole command line.
            throw StorageError.failed(what, masked("\(error)"))
        }
        guard result.status == 0 else {
            let said = (result.standardError.isEmpty ? result.standardOutput : result.standardError)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            // A password is an argument of `--op new --mode account`: never in a message.
            throw StorageError.failed(what, masked("`\(full.joined(separator: " "))` exited with \(result.status): \(said)"))
        }
        return result
    }

    /// `text` with every CHAP secret replaced by `(sensitive)`.
    private func masked(_ text: String) -> String {
        (credentials?.secrets ?? []).filter { !$0.isEmpty }.reduce(text) { $0.replacingOccurrences(of: $1, with: "(sensitive)") }
    }

    /// Parses `tgtadm --op show --mode target`. Ownership is left false (decided by `observe`).
    static func parseShow(_ text: String) -> [ObservedTarget] {
        enum Section { case none, nexus, luns, account, acl }
        var targets: [ObservedTarget] = []
        var section = Section.none
        var lun: ObservedTargetLUN?
        func flushLUN() {
            if let current = lun, current.lun != 0, !targets.isEmpty { targets[targets.count - 1].luns.append(current) }
            lun = nil
        }
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            let indent = raw.prefix { $0 == " " }.count
            if indent == 0, line.hasPrefix("Target "), let colon = line.firstIndex(of: ":") {
                flushLUN()
                let tid = Int(line[line.index(line.startIndex, offsetBy: 7)..<colon]) ?? 0
                let iqn = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                targets.append(ObservedTarget(tid: tid, iqn: iqn, luns: [], boundInitiators: [], connectedInitiators: [], isOwned: false))
                section = .none
                continue
            }
            guard !targets.isEmpty else { continue }
            if indent == 4 {
                flushLUN()
                switch line {
                case "I_T nexus information:": section = .nexus
                case "LUN information:": section = .luns
                case "Account information:": section = .account
                case "ACL information:": section = .acl
                default: section = .none
                }
                continue
            }
            switch section {
            case .nexus:
                if line.hasPrefix("Initiator:") {
                    // "Initiator: iqn… alias: name"
                    let value = line.dropFirst("Initiator:".count).split(separator: " ").first.map(String.init) ?? ""
                    if !value.isEmpty && !targets[targets.count - 1].connectedInitiators.contains(value) {
                        targets[targets.count - 1].connectedInitiators.append(value)
                    }
                }
            case .luns:
                if line.hasPrefix("LUN:") {
                    flushLUN()
                    let number = Int(line.dropFirst(4).trimmingCharacters(in: .whitespaces)) ?? -1
                    lun = ObservedTargetLUN(lun: number, backingPath: "", reportedSize: 0, backingExists: false)
                } else if line.hasPrefix("Size:") {
                    // "Size: 67 MB, Block size: 512"
                    let words = line.split(separator: " ")
                    if words.count >= 3, let megabytes = UInt64(words[1].trimmingCharacters(in: CharacterSet(charactersIn: ","))) {
                        lun?.reportedSize = megabytes * 1_000_000
                    }
                } else if line.hasPrefix("Backing store path:") {
                    let path = line.dropFirst("Backing store path:".count).trimmingCharacters(in: .whitespaces)
                    lun?.backingPath = path
                    lun?.backingExists = path.hasPrefix("/") && FileManager.default.fileExists(atPath: path)
                }
            case .acl:
                if !line.isEmpty { targets[targets.count - 1].boundInitiators.append(line) }
            case .account:
                if line.hasSuffix(" (outgoing)") {
                    targets[targets.count - 1].outgoingAccount = String(line.dropLast(" (outgoing)".count))
                } else if !line.isEmpty {
                    targets[targets.count - 1].accounts.append(line)
                }
            case .none:
                break
            }
        }
        flushLUN()
        return targets
    }
}
