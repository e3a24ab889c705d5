import Testing
@testable import Libvirt

@Suite("libvirt runtime")
struct RuntimeTests {
    @Test("remote URIs turn keepalive (the event loop) on", arguments: [
        ("qemu+ssh://root@host-1/system", true),
        ("qemu+ssh://host-1/system?keyfile=/k", true),
        ("qemu://host-1/system", true),
        ("qemu+tls://host-1.example:16514/system", true),
        ("test+tcp://10.0.0.5/default", true),
        ("qemu+libssh2:///system", true),
        ("qemu+ssh://user@host:22/system", true),
        ("qemu+ssh://[::1]/system", true),
        ("QEMU+SSH:///system", true),
        ("qemu+ext:///system?command=/opt/connect", true),
        ("qemu://user@/system", false),
        ("lxc://", false),
        ("qemu:///system", false),
        ("qemu:///session", false),
        ("qemu+unix:///session?socket=/tmp/lab/h1/libvirt-sock", false),
        ("test+unix:///default?socket=/run/x", false),
        ("test:///default", false),
        ("not a uri", false),
    ])
    func classifiesURIs(uri: String, remote: Bool) {
        #expect(LibvirtRuntime.isRemote(uri) == remote)
    }
}
