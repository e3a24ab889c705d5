import Foundation
import VirtformSystem
import Libvirt

/// libvirt's in-process test driver: no daemon, state shared by every connection of this process
/// (so each test uses domain names of its own), gone when the process exits.
let testURI = "test:///default"

func uniqueName(_ prefix: String) -> String {
    "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
}

func domainXML(name: String, memoryMiB: Int = 64, vcpus: Int = 1) -> String {
    """
    <domain type='test'>
      <name>\(name)</name>
      <memory unit='MiB'>\(memoryMiB)</memory>
      <vcpu>\(vcpus)</vcpu>
      <os><type arch='x86_64'>hvm</type></os>
    </domain>
    """
}
