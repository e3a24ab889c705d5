import CLibvirt
import Foundation
import VirtformSystem

/// One libvirt secret as listed: its usage (for an iSCSI secret, the name domains' `<auth>`
/// refers to it by), UUID and description. The value is never read back.
public struct SecretSummary: Sendable, Hashable {
    public let uuid: String
    /// `VIR_SECRET_USAGE_TYPE_*`: 3 is iSCSI.
    public let usageType: Int32
    public let usageID: String
    /// The secret's `<description>`, when it has one.
    public let description: String?
}

extension Connection {
    /// Every secret of the host (`virConnectListAllSecrets`), with its description.
    public func listAllSecrets() async throws(LibvirtError) -> [SecretSummary] {
        try await withPointer("list secrets on '\(uri)'") { conn throws(LibvirtError) -> [SecretSummary] in
            let operation = "list secrets on '\(self.uri)'"
            var list: UnsafeMutablePointer<OpaquePointer?>?
            let count = try check(virConnectListAllSecrets(conn, &list, 0), operation)
            defer {
                for i in 0..<Int(count) { if let secret = list?[i] { virSecretFree(secret) } }
                free(list)
            }
            var result: [SecretSummary] = []
            for i in 0..<Int(count) {
                guard let secret = list?[i] else { continue }
                var uuid = [CChar](repeating: 0, count: Int(VIR_UUID_STRING_BUFLEN))
                _ = virSecretGetUUIDString(secret, &uuid)
                let usage = virSecretGetUsageID(secret).map { String(cString: $0) } ?? ""
                let xml = takeString(virSecretGetXMLDesc(secret, 0)) ?? ""
                let text = String(decoding: uuid.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                result.append(SecretSummary(uuid: text, usageType: virSecretGetUsageType(secret), usageID: usage,
                                            description: Self.element("description", in: xml)))
            }
            return result
        }
    }

    /// Defines (or redefines, by its usage) an iSCSI secret and sets its value. The secret is
    /// `private`: libvirt never hands its value out again.
    public func defineISCSISecret(usage: String, description: String, value: Data, uuid: String? = nil) async throws(LibvirtError) {
        KillPoint.step("libvirt define secret")
        try await withPointer("define secret \(usage) on '\(uri)'") { conn throws(LibvirtError) in
            let operation = "define secret \(usage) on '\(self.uri)'"
            let xml = """
                <secret ephemeral='no' private='yes'>\(uuid.map { "<uuid>\(Self.escaped($0))</uuid>" } ?? "")\
                <description>\(Self.escaped(description))</description>\
                <usage type='iscsi'><target>\(Self.escaped(usage))</target></usage></secret>
                """
            let secret = try check(virSecretDefineXML(conn, xml, 0), operation)
            defer { virSecretFree(secret) }
            let bytes = [UInt8](value)
            _ = try check(bytes.withUnsafeBufferPointer { virSecretSetValue(secret, $0.baseAddress, $0.count, 0) }, operation)
        }
    }

    /// Removes the secret with `uuid`; one already gone is no change.
    public func undefineSecret(uuid: String) async throws(LibvirtError) {
        try await withPointer("undefine secret \(uuid) on '\(uri)'") { conn throws(LibvirtError) in
            guard let secret = virSecretLookupByUUIDString(conn, uuid) else {
                let error = LibvirtError.last(operation: "look up secret \(uuid) on '\(self.uri)'")
                if error.code == .noSecret { return }
                throw error
            }
            defer { virSecretFree(secret) }
            _ = try check(virSecretUndefine(secret), "undefine secret \(uuid) on '\(self.uri)'")
        }
    }

    static func element(_ name: String, in xml: String) -> String? {
        guard let open = xml.range(of: "<\(name)>"), let close = xml.range(of: "</\(name)>", range: open.upperBound..<xml.endIndex) else { return nil }
        return String(xml[open.upperBound..<close.lowerBound])
            .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&apos;", with: "'").replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&amp;", with: "&")
    }

    static func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "'", with: "&apos;")
    }
}
