import Foundation
import Libvirt
import Testing

@Suite("Connection against test:///default")
struct ConnectionTests {
    @Test func hostInformation() async throws {
        let connection = try await Connection.open(uri: testURI)
        #expect(try await !connection.hostname.isEmpty)
        #expect(try await connection.libvirtVersion >= LibvirtVersion(major: 9, minor: 0, release: 0))
        #expect(libvirtLibraryVersion() >= LibvirtVersion(major: 9, minor: 0, release: 0))
        #expect(try await connection.capabilitiesXML.contains("<capabilities>"))
        #expect(connection.isAlive)
        // The test driver's capabilities carry no host UUID: that is an error, not a made-up value.
        await #expect(throws: LibvirtError.self) { _ = try await connection.hostUUID }
        await connection.close()
    }

    @Test func openingAnUnknownDriverFailsWithLibvirtsMessage() async throws {
        let error = try await #require(throws: LibvirtError.self) {
            _ = try await Connection.open(uri: "nosuchdriver:///x")
        }
        #expect(!error.message.isEmpty)
        #expect(error.description.hasPrefix("failed to open connection to 'nosuchdriver:///x': "))
    }

    @Test func listsTheDefaultDomainAndMissingLookupsAreNil() async throws {
        let connection = try await Connection.open(uri: testURI)
        let all = try await connection.listAllDomains()
        let test = try #require(all.first { $0.name == "test" })
        #expect(test.state == .running)
        #expect(test.isPersistent)

        #expect(try await connection.domain(named: "no-such-domain-\(UUID())") == nil)
        #expect(try await connection.domain(uuid: UUID()) == nil)
        let byName = try #require(try await connection.domain(named: "test"))
        #expect(byName.uuid == test.uuid)
        #expect(try await connection.domain(uuid: test.uuid)?.name == "test")
    }

    @Test func transientDomainsAreListedAsNotPersistent() async throws {
        let connection = try await Connection.open(uri: testURI)
        let name = uniqueName("transient")
        let domain = try await connection.createTransient(xml: domainXML(name: name))
        let listed = try #require(try await connection.listAllDomains().first { $0.name == name })
        #expect(!listed.isPersistent)
        #expect(listed.state == .running)
        try await domain.destroy()
        #expect(try await connection.domain(named: name) == nil)
    }

    @Test func aClosedConnectionThrowsInsteadOfReportingAbsence() async throws {
        let connection = try await Connection.open(uri: testURI)
        let domain = try #require(try await connection.domain(named: "test"))
        await connection.close()
        await connection.close()  // idempotent
        #expect(!connection.isAlive)
        let error = try await #require(throws: LibvirtError.self) {
            _ = try await connection.domain(named: "test")
        }
        #expect(error.code == .invalidConnection)
        await #expect(throws: LibvirtError.self) { _ = try await domain.state }
    }

    @Test func invalidXMLCarriesLibvirtsMessage() async throws {
        let connection = try await Connection.open(uri: testURI)
        let error = try await #require(throws: LibvirtError.self) {
            try await connection.define(xml: "<domain type='test'><name>broken</name>")
        }
        #expect(error.code == .xmlError || error.code == .xmlDetail)
        #expect(!error.message.isEmpty)
        #expect(error.description.hasPrefix("failed to define domain"))

        let missingName = try await #require(throws: LibvirtError.self) {
            try await connection.define(xml: "<domain type='test'><memory>1024</memory></domain>")
        }
        #expect(missingName.message.contains("name"))
    }
}
