import Foundation
import Libvirt
import Testing
import VirtformLab
import VirtformSystem

/// iSCSI CHAP end to end: tgt accounts bound to the targets (mutual too), a libvirt secret on
/// the host, the domain's disk with `<auth>`, a real QEMU guest that logs in with it, a
/// rotation that is a planned change, a wrong secret that fails with a clear message — and no
/// secret value in any output.
extension StackTests {
    static let chapUser = "vf-initiator"
    static let mutualUser = "vf-target"

    @Test(.enabled(if: GuestImage.unmetRequirements() == nil, Comment(rawValue: GuestImage.unmetRequirements() ?? "")))
    func chapWithARealGuestRotationAndAWrongSecret() async throws {
        try await StackSite.with { site in
            let image = site.root + "/guest.img"
            try await GuestImage.build(at: image, scratch: site.root + "/guest-build")
            let directory = site.root + "/manifests-chap"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            // The initiator's secret in a file (0600), the target's in an environment variable.
            let secretFile = site.root + "/chap-secret"
            var secret = "initiator-secret-\(UInt32.random(in: 100_000...999_999))"
            let mutualVariable = "VF_TEST_CHAP_MUTUAL_\(getpid())"
            let mutualSecret = "target-secret-\(UInt32.random(in: 100_000...999_999))"
            try FileSystem.writeFile(secretFile, secret + "\n", mode: 0o600, owner: nil)
            setenv(mutualVariable, mutualSecret, 1)
            defer { unsetenv(mutualVariable) }
            let chap = "{username: \(Self.chapUser), secretRef: {file: \(secretFile)}, mutual: {username: \(Self.mutualUser), secretRef: {env: \(mutualVariable)}}}"
            let text = site.manifests(site: "stack-a", prefix: "", web: nil, image: image, qemu: true, chap: chap) + """
                ---
                apiVersion: virtform.io/v1alpha1
                kind: VirtualMachine
                metadata: {name: guest}
                spec:
                  project: appl
                  memory: 128MiB
                  vcpus: 1
                  disk: {from: masters/base@v1}
                  placement: {host: stack-h1}
                  power: running

                """
            try text.write(toFile: directory + "/site.yaml", atomically: true, encoding: .utf8)
            var outputs: [String] = []
            func run(_ arguments: [String]) async -> (String, Int32) {
                let (output, code) = await runVirtform(arguments + [directory])
                outputs.append(output)
                return (output, code)
            }

            var (output, code) = await run(["plan"])
            #expect(output.contains("LibvirtSecret/stack-pool/\(Self.chapUser)") && output.contains("create"), "\(output)")
            (output, code) = await run(["apply", "--auto-approve"])
            try #require(code == 0, "\(output)")

            // tgt: both accounts bound to the guest's target; the host: a private secret.
            let tgtadm = try #require(Executables.find("tgtadm"))
            let show = try await Command.run([tgtadm, "-C", "\(StackSite.controlPort)", "--lld", "iscsi", "--op", "show", "--mode", "target"]).standardOutput
            #expect(show.contains("        \(Self.chapUser)\n") && show.contains("\(Self.mutualUser) (outgoing)"), "\(show)")
            let host = try await Connection.open(uri: site.hosts[0].qemuURI)
            let secrets = try await host.listAllSecrets()
            #expect(secrets.contains { $0.usageID == "virtform:iqn.2026-11.io.virtform.stack:\(Self.chapUser)" }, "\(secrets)")
            // QEMU logged in with CHAP: the guest runs (it opens its disk before it starts) and
            // the target lists its session.
            let domain = try #require(try await host.domain(named: "appl:guest"))
            #expect(try await domain.state == .running)
            let xml = try await domain.xml(flags: [.inactive])
            #expect(xml.contains("<auth username='\(Self.chapUser)'>") && xml.contains("usage='virtform:iqn.2026-11.io.virtform.stack:\(Self.chapUser)'"), "\(xml)")
            let sessions = try await Command.run([tgtadm, "-C", "\(StackSite.controlPort)", "--lld", "iscsi", "--op", "show", "--mode", "target"]).standardOutput
            #expect(sessions.contains("Initiator: "), "no iSCSI session of the guest: \(sessions)")
            (output, code) = await run(["plan", "--detailed-exitcode"])
            let live = try await domain.xml()
            #expect(code == 0, "a site with CHAP, applied, must show no differences:\n\(output)\n\(xml)\nLIVE:\n\(live)")

            // Rotation: the file holds a new secret. A planned change on both sides, never a value.
            secret = "rotated-secret-\(UInt32.random(in: 100_000...999_999))"
            try FileSystem.writeFile(secretFile, secret + "\n", mode: 0o600, owner: nil)
            (output, code) = await run(["plan", "--detailed-exitcode"])
            #expect(code == 2, "\(output)")
            #expect(output.contains("ISCSIAccount/stack-pool/\(Self.chapUser)") && output.contains("LibvirtSecret/stack-pool/\(Self.chapUser)"), "\(output)")
            #expect(output.contains("(sensitive), changed"), "\(output)")
            _ = await run(["plan", "--format", "json"])
            (output, code) = await run(["apply", "--auto-approve"])
            #expect(code == 0, "\(output)")
            (output, code) = await run(["plan", "--detailed-exitcode"])
            #expect(code == 0, "\(output)")
            // The guest logs in again with the new secret: stopped by hand, started by apply.
            try await domain.destroy()
            (output, code) = await run(["apply", "--auto-approve"])
            #expect(code == 0, "\(output)")
            #expect(try await domain.state == .running, "the guest did not start with the rotated secret:\n\(output)")

            // A wrong secret on the host (set by hand behind virtform's back): the start fails,
            // naming the target and the host.
            let usage = "virtform:iqn.2026-11.io.virtform.stack:\(Self.chapUser)"
            let uuid = try #require(try await host.listAllSecrets().first { $0.usageID == usage }?.uuid)
            let virsh = try #require(Executables.find("virsh"))
            let wrongFile = site.root + "/wrong-secret"
            try FileSystem.writeFile(wrongFile, "not-the-secret", mode: 0o600, owner: nil)
            let set = [virsh, "-c", site.hosts[0].qemuURI, "secret-set-value", uuid, "--file", wrongFile, "--plain"]
            _ = try await Command.run(set).checked(set)
            try await domain.destroy()
            (output, code) = await run(["apply", "--auto-approve"])
            #expect(code == 1, "\(output)")
            #expect(output.contains("could not log in to iqn.2026-11.io.virtform.stack:appl.guest from host stack-h1: the target refused the CHAP secret"), "\(output)")
            await host.close()

            // Every output format of the site, and the history: no secret value anywhere.
            for format in ["text", "json", "markdown", "gitlab"] { _ = await run(["plan", "--format", format]) }
            for format in ["text", "json", "junit"] { _ = await run(["drift", "--format", format]) }
            for format in ["text", "json", "sarif", "codequality"] { _ = await run(["validate", "--format", format]) }
            _ = await run(["graph"])
            let (history, _) = await runVirtform(["history", "--format", "json", "--manifests", directory])
            outputs.append(history)
            for value in [secret, mutualSecret, "not-the-secret"] {
                let leaks = outputs.filter { $0.contains(value) }
                #expect(leaks.isEmpty, "a secret value was printed:\n\(leaks.first ?? "")")
            }
        }
    }

    /// Targets that admit only their guest's host (`admitHosts`, each host's `initiatorName`),
    /// with CHAP: the guest logs in as its host; moved live to the second host, the plan admits
    /// the destination before the move and drops the former host after it, and the guest runs
    /// there, its disk logged in as the destination.
    @Test(.enabled(if: GuestImage.unmetRequirements() == nil, Comment(rawValue: GuestImage.unmetRequirements() ?? "")))
    func aTargetAdmitsItsGuestsHostAndTheDestinationDuringAMove() async throws {
        try await StackSite.with(hosts: 2) { site in
            let image = site.root + "/guest.img"
            try await GuestImage.build(at: image, scratch: site.root + "/guest-build")
            let directory = site.root + "/manifests-admit"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let secretFile = site.root + "/chap-secret"
            try FileSystem.writeFile(secretFile, "admit-secret-\(UInt32.random(in: 100_000...999_999))\n", mode: 0o600, owner: nil)
            let chap = "{username: \(Self.chapUser), secretRef: {file: \(secretFile)}}, admitHosts: true"
            func write(host: Int) throws {
                let text = site.manifests(site: "stack-a", prefix: "", web: nil, image: image, qemu: true, chap: chap, hostInitiators: true) + """
                    ---
                    apiVersion: virtform.io/v1alpha1
                    kind: VirtualMachine
                    metadata: {name: mover}
                    spec:
                      project: appl
                      memory: 96MiB
                      vcpus: 1
                      disk: {from: masters/base@v1}
                      placement: {host: stack-h\(host)}
                      power: running

                    """
                try text.write(toFile: directory + "/site.yaml", atomically: true, encoding: .utf8)
            }
            let h1Name = "iqn.2026-11.io.virtform.test:stack-h1", h2Name = "iqn.2026-11.io.virtform.test:stack-h2"
            let tgtadm = try #require(Executables.find("tgtadm"))
            func acl() async throws -> [String] {
                let show = try await Command.run([tgtadm, "-C", "\(StackSite.controlPort)", "--lld", "iscsi", "--op", "show", "--mode", "target"]).standardOutput
                guard let start = show.range(of: "appl.mover") else { return [] }
                let rest = show[start.upperBound...]
                let section = rest.range(of: "ACL information:").map { rest[$0.upperBound...] } ?? ""
                let lines: [String] = section.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
                return Array(lines.prefix(while: { $0.hasPrefix("iqn.") }))
            }
            try write(host: 1)
            var (output, code) = await runVirtform(["apply", "--auto-approve", directory])
            try #require(code == 0, "\(output)")
            #expect(try await acl() == [h1Name], "\(output)")
            let h1 = try await Connection.open(uri: site.hosts[0].qemuURI), h2 = try await Connection.open(uri: site.hosts[1].qemuURI)
            #expect(try await h1.domain(named: "appl:mover")?.state == .running)
            let xml = try await h1.domain(named: "appl:mover")?.xml(flags: [.inactive]) ?? ""
            #expect(xml.contains("<iqn name='\(h1Name)'/>"), "\(xml)")
            (output, code) = await runVirtform(["plan", "--detailed-exitcode", directory])
            #expect(code == 0, "\(output)")

            try write(host: 2)
            (output, code) = await runVirtform(["plan", directory])
            #expect(output.contains("initiators: \(h1Name) → \(h1Name), \(h2Name)") && output.contains("initiators: \(h1Name), \(h2Name) → \(h2Name)"), "\(output)")
            (output, code) = await runVirtform(["apply", "--auto-approve", directory])
            #expect(code == 0, "\(output)")
            #expect(try await h2.domain(named: "appl:mover")?.state == .running, "\(output)")
            #expect(try await h1.domain(named: "appl:mover") == nil)
            #expect(try await acl() == [h2Name], "\(output)")
            (output, code) = await runVirtform(["plan", "--detailed-exitcode", directory])
            #expect(code == 0, "\(output)")
            await h1.close()
            await h2.close()
        }
    }
}
