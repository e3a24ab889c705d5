import Testing
import VirtformManifests
import VirtformModel

/// One broken document added to a valid site, and the diagnostic it must produce.
///
/// The line the diagnostic must point at carries the comment `#<`; `token` is what the column
/// must point at on that line.
struct BrokenCase: CustomTestStringConvertible, Sendable {
    var label: String
    var document: String
    var token: String
    var field: String
    var message: String
    var suggestion: String? = nil

    var testDescription: String { label }
}

private let vm = """
    apiVersion: virtform.io/v1alpha1
    kind: VirtualMachine
    metadata: {name: vm-x}
    spec:
    """

@Suite("Invalid manifests")
struct InvalidManifestTests {
    @Test func baseSiteIsValid() {
        let result = ManifestLoader.load(text: SiteFixture.base, name: "site.yaml")
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics)")
        #expect(result.site.objectCount == 13)
    }

    static let cases: [BrokenCase] = [
        BrokenCase(label: "unknown kind", document: """
            apiVersion: virtform.io/v1alpha1
            kind: Hots #<
            metadata: {name: h9}
            spec: {}
            """, token: "Hots", field: "kind", message: "expected one of \"Site\", \"Host\"", suggestion: "Host"),
        BrokenCase(label: "unknown apiVersion", document: """
            apiVersion: virtform.io/v2 #<
            kind: Host
            metadata: {name: h9}
            spec: {uri: "qemu:///system", capacity: {memory: 1GiB, vcpus: 1}}
            """, token: "virtform.io/v2", field: "apiVersion", message: "expected one of \"virtform.io/v1alpha1\""),
        BrokenCase(label: "misspelt key", document: vm + """

              project: appl-1
              memroy: 1GiB #<
              memory: 1GiB
              vcpus: 1
              placement: {host: h1}
            """, token: "memroy", field: "spec.memroy", message: "unknown field \"memroy\"", suggestion: "memory"),
        BrokenCase(label: "memory of nothing", document: vm + """

              project: appl-1
              memory: 0 #<
              vcpus: 1
              placement: {host: h1}
            """, token: "0", field: "spec.memory", message: "a size must be more than 0"),
        BrokenCase(label: "memory that is not a size", document: vm + """

              project: appl-1
              memory: 1.5 lemons #<
              vcpus: 1
              placement: {host: h1}
            """, token: "1.5 lemons", field: "spec.memory", message: "expected a size such as 1024 (MiB), 512MiB or 1GiB, got 1.5 lemons"),
        BrokenCase(label: "wrong type", document: vm + """

              project: appl-1
              memory: 512MiB
              vcpus: two #<
              placement: {host: h1}
            """, token: "two", field: "spec.vcpus", message: "expected a whole number from 1 to 512, got two"),
        BrokenCase(label: "list where a mapping belongs", document: vm + """

              project: appl-1
              memory: 512MiB
              vcpus: 1
              placement: [h1] #<
            """, token: "[h1]", field: "spec.placement", message: "expected a mapping, got a list"),
        BrokenCase(label: "missing required field", document: """
            apiVersion: virtform.io/v1alpha1
            kind: VirtualMachine
            metadata: {name: vm-x}
            spec:
              project: appl-1 #<
              vcpus: 1
              placement: {host: h1}
            """, token: "project", field: "spec.memory", message: "missing required field \"memory\""),
        BrokenCase(label: "yes is not a boolean", document: vm + """

              project: appl-1
              memory: 512MiB
              vcpus: 1
              placement: {host: h1}
              deletionProtection: yes #<
            """, token: "yes", field: "spec.deletionProtection", message: "expected true or false", suggestion: "true"),
        BrokenCase(label: "duplicate key", document: vm + """

              project: appl-1
              memory: 512MiB
              memory: 1GiB #<
              vcpus: 1
              placement: {host: h1}
            """, token: "memory", field: "", message: "duplicate key \"memory\""),
        BrokenCase(label: "duplicate name", document: """
            apiVersion: virtform.io/v1alpha1
            kind: Host
            metadata: {name: h1} #<
            spec: {uri: "qemu:///system", capacity: {memory: 1GiB, vcpus: 1}}
            """, token: "h1", field: "metadata.name", message: "duplicate Host \"h1\": first declared at site.yaml:5:1"),
        BrokenCase(label: "same VM name twice in a project", document: """
            apiVersion: virtform.io/v1alpha1
            kind: VirtualMachine
            metadata: {name: vm-1} #<
            spec: {project: appl-1, memory: 64MiB, vcpus: 1, placement: {host: h1}}
            """, token: "vm-1", field: "metadata.name", message: "duplicate VirtualMachine \"appl-1/vm-1\""),
        BrokenCase(label: "unknown host", document: vm + """

              project: appl-1
              memory: 512MiB
              vcpus: 1
              placement: {host: h11} #<
            """, token: "h11", field: "spec.placement.host", message: "no Host named \"h11\" is declared", suggestion: "h1"),
        BrokenCase(label: "unknown cluster", document: vm + """

              project: appl-1
              memory: 512MiB
              vcpus: 1
              placement: {cluster: c2} #<
            """, token: "c2", field: "spec.placement.cluster", message: "no Cluster named \"c2\" is declared", suggestion: "c1"),
        BrokenCase(label: "unknown pool", document: """
            apiVersion: virtform.io/v1alpha1
            kind: StorageProject
            metadata: {name: appl-2}
            spec: {pool: pol} #<
            """, token: "pol", field: "spec.pool", message: "no StoragePool named \"pol\" is declared", suggestion: "pool"),
        BrokenCase(label: "unknown project", document: vm + """

              project: appl-2 #<
              memory: 512MiB
              vcpus: 1
              placement: {host: h1}
            """, token: "appl-2", field: "spec.project", message: "no StorageProject named \"appl-2\" is declared", suggestion: "appl-1"),
        BrokenCase(label: "unknown image", document: vm + """

              project: appl-1
              memory: 512MiB
              vcpus: 1
              disk: {from: masters/osl@version-01} #<
              placement: {host: h1}
            """, token: "masters/osl@version-01", field: "spec.disk.from", message: "no Image named \"masters/osl\" is declared", suggestion: "masters/osol"),
        BrokenCase(label: "unknown snapshot", document: vm + """

              project: appl-1
              memory: 512MiB
              vcpus: 1
              disk: {from: masters/osol@version-02} #<
              placement: {host: h1}
            """, token: "masters/osol@version-02", field: "spec.disk.from", message: "has no snapshot \"version-02\"", suggestion: "masters/osol@version-01"),
        BrokenCase(label: "unknown network", document: vm + """

              project: appl-1
              memory: 512MiB
              vcpus: 1
              interfaces: [{network: publc}] #<
              placement: {host: h1}
            """, token: "publc", field: "spec.interfaces[0].network", message: "no Network named \"publc\" is declared", suggestion: "public"),
        BrokenCase(label: "unknown DHCP server", document: """
            apiVersion: virtform.io/v1alpha1
            kind: Network
            metadata: {name: mgmt}
            spec: {bridge: mg0, subnet: 10.0.0.0/24, dhcpServer: dhpc} #<
            """, token: "dhpc", field: "spec.dhcpServer", message: "no DHCPServer named \"dhpc\" is declared", suggestion: "dhcp"),
        BrokenCase(label: "unknown VM interface", document: """
            apiVersion: virtform.io/v1alpha1
            kind: NetworkBinding
            metadata: {name: vm-1-x}
            spec: {vm: appl-1/vm-1, interface: fe0, address: 192.168.76.80, hostname: x} #<
            """, token: "fe0", field: "spec.interface", message: "VM appl-1/vm-1 has no interface \"fe0\""),
        BrokenCase(label: "address outside the subnet", document: """
            apiVersion: virtform.io/v1alpha1
            kind: NetworkBinding
            metadata: {name: vm-1-backend}
            spec: {vm: appl-1/vm-1, interface: backend, address: 192.168.76.5, hostname: vm-1-be} #<
            """, token: "192.168.76.5", field: "spec.address", message: "is not inside network \"backend\" (192.168.78.0/24)"),
        BrokenCase(label: "same address twice", document: """
            apiVersion: virtform.io/v1alpha1
            kind: VirtualMachine
            metadata: {name: vm-2}
            spec: {project: appl-1, memory: 64MiB, vcpus: 1, interfaces: [{network: public}], placement: {host: h2}}
            ---
            apiVersion: virtform.io/v1alpha1
            kind: NetworkBinding
            metadata: {name: vm-2-public}
            spec: {vm: appl-1/vm-2, interface: public, address: 192.168.76.71, hostname: vm-host2} #<
            """, token: "192.168.76.71", field: "spec.address", message: "192.168.76.71 is already bound on network \"public\""),
        BrokenCase(label: "same host name twice", document: """
            apiVersion: virtform.io/v1alpha1
            kind: VirtualMachine
            metadata: {name: vm-2}
            spec: {project: appl-1, memory: 64MiB, vcpus: 1, interfaces: [{network: public}], placement: {host: h2}}
            ---
            apiVersion: virtform.io/v1alpha1
            kind: NetworkBinding
            metadata: {name: vm-2-public}
            spec: {vm: appl-1/vm-2, interface: public, address: 192.168.76.72, hostname: vm-host1} #<
            """, token: "vm-host1", field: "spec.hostname", message: "host name \"vm-host1\" is already bound"),
        BrokenCase(label: "same MAC twice", document: vm + """

              project: appl-1
              memory: 64MiB
              vcpus: 1
              interfaces: [{network: public, mac: "52:54:00:00:00:01"}] #<
              placement: {host: h2}
            """, token: "\"52:54:00:00:00:01", field: "spec.interfaces[0].mac", message: "MAC 52:54:00:00:00:01 is already used by appl-1/vm-1"),
        BrokenCase(label: "bridge missing on a host the VM may use", document: """
            apiVersion: virtform.io/v1alpha1
            kind: Host
            metadata: {name: h3}
            spec: {uri: "qemu:///system", capacity: {memory: 4GiB, vcpus: 4}, bridges: [fe0]}
            ---
            apiVersion: virtform.io/v1alpha1
            kind: VirtualMachine
            metadata: {name: vm-x}
            spec:
              project: appl-1
              memory: 64MiB
              vcpus: 1
              interfaces: [{network: backend}] #<
              placement: {host: h3}
            """, token: "backend", field: "spec.interfaces[0].network", message: "needs bridge \"be0\", which no host this VM may run on offers"),
        BrokenCase(label: "cluster hosts with different bridges", document: """
            apiVersion: virtform.io/v1alpha1
            kind: Host
            metadata: {name: h3}
            spec: {uri: "qemu:///system", capacity: {memory: 4GiB, vcpus: 4}, bridges: [fe0]}
            ---
            apiVersion: virtform.io/v1alpha1
            kind: Cluster
            metadata: {name: c2}
            spec:
              hosts: [h3, h2] #<
              placement: {policy: spread}
            """, token: "hosts", field: "spec", message: "hosts of a cluster must offer the same bridges: \"h3\" offers [fe0], \"h2\" offers [be0, fe0]"),
        BrokenCase(label: "VM larger than every host", document: vm + """

              project: appl-1
              memory: 16GiB #<
              vcpus: 1
              placement: {cluster: c1}
            """, token: "16GiB", field: "spec.memory", message: "16GiB is more than any host it may run on has (largest: 8GiB)"),
        BrokenCase(label: "pinned host over capacity", document: """
            apiVersion: virtform.io/v1alpha1
            kind: VirtualMachine
            metadata: {name: big-1}
            spec: {project: appl-1, memory: 3GiB, vcpus: 1, placement: {host: h1}}
            ---
            apiVersion: virtform.io/v1alpha1
            kind: VirtualMachine
            metadata: {name: big-2}
            spec: {project: appl-1, memory: 3GiB, vcpus: 1, placement: {host: h1}}
            """, token: "", field: "spec.capacity", message: "running guests pinned to this host exceed its capacity: memory 6GiB > 4GiB"),
        BrokenCase(label: "YAML syntax error", document: """
            apiVersion: virtform.io/v1alpha1
            kind: Host
            metadata: {name: h9
            spec: {} #<
            """, token: ": {}", field: "", message: "invalid YAML"),
        BrokenCase(label: "selector that matches no host", document: vm + """

              project: appl-1
              memory: 64MiB
              vcpus: 1
              placement: {cluster: c1, hostSelector: {segment: blue}} #<
            """, token: "{segment: blue}", field: "spec.placement.hostSelector", message: "no host of cluster \"c1\" has the labels segment=blue"),
    ]

    @Test("each broken document is reported at its place", arguments: cases)
    func reported(_ broken: BrokenCase) throws {
        let text = SiteFixture.base + "---\n" + broken.document + "\n"
        let result = ManifestLoader.load(text: text, name: "site.yaml")
        #expect(!result.isValid)
        let match = try #require(result.diagnostics.first { $0.message.contains(broken.message) },
                                 "no diagnostic containing \(broken.message) in \(result.diagnostics.map(\.message))")
        #expect(match.field == broken.field)
        #expect(match.suggestion == broken.suggestion)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if let markerLine = lines.firstIndex(where: { $0.contains("#<") }) {
            #expect(match.location.line == markerLine + 1, "\(match)")
            let line = lines[markerLine]
            if let range = line.range(of: broken.token) {
                #expect(match.location.column == line.distance(from: line.startIndex, to: range.lowerBound) + 1, "\(match)")
            }
        }
        #expect(match.location.file == "site.yaml")
    }

    @Test func everyProblemIsReportedAtOnceInOrder() {
        let text = SiteFixture.base + "---\n" + Self.cases.filter { $0.label != "YAML syntax error" }.map(\.document).joined(separator: "\n---\n")
        let result = ManifestLoader.load(text: text, name: "site.yaml")
        #expect(result.diagnostics.filter { $0.severity == .error }.count >= Self.cases.count - 1)
        #expect(result.diagnostics == result.diagnostics.sorted())
    }

    @Test("memory written in every way is understood", arguments: ["1024", "1GiB", "1024MiB", "\"1 GiB\"", "1G"])
    func memoryForms(_ memory: String) throws {
        let text = SiteFixture.base.replacingOccurrences(of: "memory: 1024\n", with: "memory: \(memory)\n")
        let result = ManifestLoader.load(text: text)
        #expect(result.isValid, "\(result.diagnostics)")
        #expect(result.site.virtualMachines.first?.memory == .gibibytes(1))
    }

    @Test func diagnosticsAreSortedAcrossFiles() throws {
        let directory = try TemporaryDirectory()
        try directory.write("b.yaml", "kind: Nope\n")
        try directory.write("a/z.yaml", "apiVersion: 1\n")
        try directory.write(".hidden/x.yaml", "not: [valid\n")
        try directory.write("notes.txt", "ignored")
        let result = ManifestLoader.load(paths: [directory.path])
        #expect(result.files.map { $0.replacingOccurrences(of: directory.path + "/", with: "") } == ["a/z.yaml", "b.yaml"])
        #expect(result.diagnostics.map(\.location.file) == result.diagnostics.map(\.location.file).sorted())
        #expect(!result.isValid)
    }
}
