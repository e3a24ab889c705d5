import Testing
import VirtformModel

@Suite("Redaction")
struct RedactionTests {
    @Test func passwordsInURIsAreSensitive() {
        #expect(Redaction.redacted("failed to connect to qemu+tcp://admin:s3cret@10.0.0.5/system: refused")
            == "failed to connect to qemu+tcp://admin:(sensitive)@10.0.0.5/system: refused")
        #expect(Redaction.redacted("a: http://u:p@h:8000, b: \"https://x:y%40z@k/\"") == "a: http://u:(sensitive)@h:8000, b: \"https://x:(sensitive)@k/\"")
        // A user without a password, an address in a path, plain text: unchanged.
        for text in ["qemu+ssh://root@h2/system", "mailto: ops@example.org", "http://h/a@b", "nothing here"] {
            #expect(Redaction.redacted(text) == text)
        }
    }

    @Test func controlCharactersCannotForgeALine() {
        #expect(Redaction.escapingControls("web\n1:1: error: forged") == "web\\u{a}1:1: error: forged")
        #expect(Redaction.escapingControls("\u{1B}[2Jclear") == "\\u{1b}[2Jclear")
        #expect(Redaction.escapingControls("two\nlines", keepingNewlines: true) == "two\nlines")
        #expect(Redaction.escapingControls("plain – ünïcode") == "plain – ünïcode")
    }
}
