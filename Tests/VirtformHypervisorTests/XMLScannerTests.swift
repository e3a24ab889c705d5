import Foundation
import Testing
@testable import VirtformHypervisor

/// The fast scanner must read exactly what Foundation's parser reads, and give up (so that
/// Foundation's parser decides) on anything it does not handle.
@Suite("XML scanner")
struct XMLScannerTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/qemu-session-domain.xml")

    static let documents: [String] = [
        (try? String(contentsOf: fixture, encoding: .utf8)) ?? "<missing-fixture/>",
        """
        <?xml version="1.0"?>
        <!-- a comment --><!DOCTYPE domain>
        <domain type="kvm" xmlns:q='urn:q'>
          <name>a &amp; b &lt;c&gt; &#x41;&#66;</name>
          <metadata><q:thing q:attr='x' plain="y &quot;z&quot;"><![CDATA[<raw> & text]]></q:thing></metadata>
          <devices xmlns="urn:default"><disk/></devices>
        </domain>
        """,
        "<a><b/><b></b><c>text</c></a>",
        // A prefix redeclared inside: the innermost declaration wins, and only inside.
        "<r xmlns:p='urn:1' xmlns='urn:d'><p:a xmlns:p='urn:2'><p:in/></p:a><p:b/><c xmlns=''/></r>",
    ]

    @Test("reads what Foundation reads", arguments: documents.indices)
    func matchesFoundation(index: Int) throws {
        let xml = Self.documents[index]
        let fast = try #require(XMLScanner.scan(xml), "the scanner handles document \(index)")
        let slow = try XMLTree.parseWithFoundation(xml)
        #expect(describe(fast) == describe(slow))
    }

    @Test("gives up on what it does not handle or what is not XML", arguments: [
        "", "<a>", "<a></b>", "<a b='1' b='2'/>", "<a/><b/>", "text<a/>", "<a>&nbsp;</a>", "<p:a/>",
        "<!DOCTYPE a [<!ENTITY x 'y'>]><a/>", "<a b=1/>",
        "<a xmlns:p='urn:1' xmlns:p='urn:2'/>", "<a xmlns='urn:1' xmlns='urn:2'/>",
    ])
    func givesUp(xml: String) {
        #expect(XMLScanner.scan(xml) == nil)
    }

    @Test func skippedElementsAreNotBuiltButStillChecked() throws {
        let tree = try #require(XMLScanner.scan("<a><keep x='1'><deep/></keep><drop y='2'><deeper/></drop></a>") { ancestors, name in
            ancestors == ["a"] && name == "keep"
        })
        #expect(tree.children.map(\.name) == ["keep"])
        #expect(tree.children.first?.children.isEmpty == true)
        #expect(XMLScanner.scan("<a><drop><x></y></drop></a>") { _, name in name != "drop" } == nil)
    }

    private func describe(_ tree: XMLTree, indent: String = "") -> String {
        var line = indent + "\(tree.namespace.map { "{\($0)}" } ?? "")\(tree.name)"
        line += " " + tree.attributes.sorted { $0.name < $1.name }.map { "\($0.name)=\($0.value)" }.joined(separator: ",")
        line += " text=\(tree.text.trimmingCharacters(in: .whitespacesAndNewlines))\n"
        return line + tree.children.map { describe($0, indent: indent + "  ") }.joined()
    }
}
