import Foundation
import Libvirt
import Testing
import VirtformSystem

@Suite("Domain against test:///default")
struct DomainTests {
    @Test func lifecycle() async throws {
        let connection = try await Connection.open(uri: testURI)
        let name = uniqueName("life")
        let domain = try await connection.define(xml: domainXML(name: name))
        #expect(domain.name == name)
        #expect(try await domain.state == .shutOff)
        #expect(try await domain.isPersistent)
        #expect(try await !domain.isActive)

        try await domain.create()
        #expect(try await domain.state == .running)
        try await domain.suspend()
        #expect(try await domain.state == .paused)
        try await domain.resume()
        try await domain.shutdown()
        #expect(try await domain.state == .shutOff)

        try await domain.create()
        try await domain.destroy()
        #expect(try await domain.state == .shutOff)

        // Starting twice is an error, not silently fine. (The test driver reports it as an
        // internal error; the QEMU driver as operation-invalid.)
        try await domain.create()
        let error = try await #require(throws: LibvirtError.self) { try await domain.create() }
        #expect(error.message.contains("already running"))
        try await domain.destroy()

        try await domain.undefine(flags: [.managedSave, .snapshotsMetadata])
        #expect(try await connection.domain(named: name) == nil)
        let gone = try await #require(throws: LibvirtError.self) { _ = try await domain.state }
        #expect(gone.code == .noDomain)
    }

    @Test func xmlRoundTrip() async throws {
        let connection = try await Connection.open(uri: testURI)
        let name = uniqueName("xml")
        let domain = try await connection.define(xml: domainXML(name: name, memoryMiB: 96, vcpus: 2))
        defer { Task { try? await domain.undefine() } }
        let first = try await domain.xml(flags: .inactive)
        #expect(first.contains("<name>\(name)</name>"))
        #expect(first.contains(domain.uuid.uuidString.lowercased()))
        #expect(first.contains("98304"))

        let redefined = try await connection.define(xml: first)
        #expect(redefined.uuid == domain.uuid)
        #expect(try await redefined.xml(flags: .inactive) == first)
        #expect(try await domain.xml(flags: [.inactive, .secure, .migratable]).contains("<name>\(name)</name>"))
    }

    @Test func metadataRoundTrip() async throws {
        let connection = try await Connection.open(uri: testURI)
        let domain = try await connection.define(xml: domainXML(name: uniqueName("meta")))
        defer { Task { try? await domain.undefine() } }
        let ns = "https://virtform.dev/xmlns/owner/1"

        #expect(try await domain.getMetadata(type: .element, uri: ns) == nil)
        try await domain.setMetadata(
            "<owner project='demo' resource='web-1'><generation>3</generation></owner>",
            type: .element, key: "vf", uri: ns)
        let read = try #require(try await domain.getMetadata(type: .element, uri: ns))
        #expect(read.contains("project=\"demo\""))
        #expect(read.contains("resource=\"web-1\""))
        #expect(read.contains("<generation>3</generation>"))
        // Also visible in the definition, under the chosen prefix.
        let xml = try await domain.xml(flags: .inactive)
        #expect(xml.contains("<vf:owner xmlns:vf=\"\(ns)\""))

        // Another namespace is independent.
        #expect(try await domain.getMetadata(type: .element, uri: "https://example.org/other") == nil)

        try await domain.setMetadata("a description", type: .description)
        #expect(try await domain.getMetadata(type: .description) == "a description")

        try await domain.setMetadata(nil, type: .element, uri: ns)
        #expect(try await domain.getMetadata(type: .element, uri: ns) == nil)
    }

    @Test func resourcesOnTheConfiguration() async throws {
        let connection = try await Connection.open(uri: testURI)
        let domain = try await connection.define(xml: domainXML(name: uniqueName("mem"), memoryMiB: 128, vcpus: 2))
        defer { Task { try? await domain.undefine() } }

        try await domain.setMemory(kib: 65536, flags: .config)
        var info = try await domain.info
        #expect(info.memoryKiB == 65536)
        #expect(info.maxMemoryKiB == 131072)
        #expect(info.state == .shutOff)

        try await domain.setMaxMemory(kib: 262144, flags: .config)
        try await domain.setVcpus(count: 4, flags: .config, maximum: true)
        try await domain.setVcpus(count: 3, flags: .config)
        info = try await domain.info
        #expect(info.maxMemoryKiB == 262144)
        #expect(info.virtualCPUs == 3)
        let xml = try await domain.xml(flags: .inactive)
        #expect(xml.contains("current='3'>4</vcpu>"))
    }

    @Test func manyConcurrentXMLFetches() async throws {
        let connection = try await Connection.open(uri: testURI)
        let prefix = uniqueName("bulk")
        let names = (0..<100).map { "\(prefix)-\($0)" }
        let domains = try await withThrowingTaskGroup(of: Domain.self) { group in
            for name in names {
                group.addTask { try await connection.define(xml: domainXML(name: name)) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(domains.count == 100)

        // 1,000 fetches, at most 8 in flight. (A struct, not a tuple: swiftlang/swift#91911.)
        struct Fetched: Sendable { var name: String; var xml: String }
        let fetched = try await withThrowingTaskGroup(of: Fetched.self) { group in
            var results: [Fetched] = []
            for index in 0..<1000 {
                if index >= 8, let next = try await group.next() { results.append(next) }
                let domain = domains[index % domains.count]
                group.addTask { Fetched(name: domain.name, xml: try await domain.xml()) }
            }
            for try await next in group { results.append(next) }
            return results
        }
        #expect(fetched.count == 1000)
        #expect(fetched.allSatisfy { $0.xml.contains("<name>\($0.name)</name>") })

        let listed = try await connection.listAllDomains().filter { $0.name.hasPrefix(prefix) }
        #expect(listed.count == 100)
        #expect(listed.allSatisfy { $0.isPersistent && $0.state == .shutOff })

        try await withThrowingTaskGroup(of: Void.self) { group in
            for domain in domains { group.addTask { try await domain.undefine() } }
            try await group.waitForAll()
        }
    }

    @Test func lifecycleEvents() async throws {
        let connection = try await Connection.open(uri: testURI)
        let name = uniqueName("events")
        let events = try await connection.domainLifecycleEvents()

        let domain = try await connection.define(xml: domainXML(name: name))
        try await domain.create()
        try await domain.destroy()
        try await domain.undefine()

        let kinds = try await withDeadline(.seconds(10), "lifecycle events of \(name)") {
            var kinds: [DomainLifecycleEvent.Kind] = []
            for await event in events where event.domainName == name {
                #expect(event.domainUUID == domain.uuid)
                kinds.append(event.kind)
                if event.kind == .undefined { break }
            }
            return kinds
        }
        #expect(kinds == [.defined, .started, .stopped, .undefined])
    }

    @Test func closingTheConnectionFinishesEventStreams() async throws {
        let connection = try await Connection.open(uri: testURI)
        let events = try await connection.domainLifecycleEvents()
        await connection.close()
        // Events of other tests may still be buffered; what matters is that the stream ends.
        try await withDeadline(.seconds(5), "event stream to finish") {
            for await _ in events {}
        }
    }
}
