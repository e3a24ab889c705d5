/// A value written in JSON (plans, reports) as its text form: `192.168.76.10`, `52:54:00:…`,
/// `masters/osol-0811@version-01`.
public protocol TextCoded: Codable, CustomStringConvertible {
    init?(text: String)
}

extension TextCoded {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = Self(text: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a valid \(Self.self): \(text)"))
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

extension IPv4Address: TextCoded { public init?(text: String) { self.init(parsing: text) } }
extension IPv4Subnet: TextCoded { public init?(text: String) { self.init(parsing: text) } }
extension MACAddress: TextCoded { public init?(text: String) { self.init(parsing: text) } }
extension SnapshotReference: TextCoded { public init?(text: String) { self.init(parsing: text) } }
extension OwnershipMark: TextCoded { public init?(text: String) { self.init(parsing: text) } }
