import Foundation
import VirtformModel

/// The manifest language as a JSON Schema (draft 2020-12), for editors that use
/// yaml-language-server: `# yaml-language-server: $schema=…/virtform.schema.json`.
public enum JSONSchema {
    public static let identifier = "https://virtform.io/schemas/v1alpha1/virtform.schema.json"

    /// The schema as pretty-printed JSON with sorted keys (stable, so it can be committed and diffed).
    public static func render() -> String {
        let data = try! JSONSerialization.data(withJSONObject: document(),
                                               options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    static func document() -> [String: Any] {
        var envelope = object(ManifestSchema.envelope)
        // Each kind's spec is chosen by `kind`.
        envelope["allOf"] = Kind.allCases.map { kind -> [String: Any] in
            [
                "if": ["properties": ["kind": ["const": kind.rawValue]], "required": ["kind"]],
                "then": ["properties": ["spec": object(ManifestSchema.spec(of: kind))]],
            ]
        }
        envelope["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        envelope["$id"] = identifier
        envelope["title"] = "virtform manifest"
        return envelope
    }

    static func schema(_ shape: Shape) -> [String: Any] {
        switch shape {
        case .string(let format):
            var result: [String: Any] = ["type": "string"]
            if let pattern = format.pattern { result["pattern"] = pattern }
            if format == .name { result["maxLength"] = 63 }
            return result
        case .integer(let range):
            var result: [String: Any] = ["type": "integer", "minimum": range.lowerBound]
            if range.upperBound != Int.max { result["maximum"] = range.upperBound }
            return result
        case .boolean:
            return ["type": "boolean"]
        case .byteSize:
            return ["anyOf": [
                ["type": "integer", "minimum": 0, "description": "MiB"],
                ["type": "string", "pattern": "^[0-9]*\\.?[0-9]+ ?(B|KiB|MiB|GiB|TiB|K|M|G|T|KB|MB|GB|TB)?$"],
            ]]
        case .choice(let options):
            return ["enum": options]
        case .list(let item, let minItems, let maxItems, let unique):
            var result: [String: Any] = ["type": "array", "items": schema(item)]
            if minItems > 0 { result["minItems"] = minItems }
            if let maxItems { result["maxItems"] = maxItems }
            if unique { result["uniqueItems"] = true }
            return result
        case .stringMap(_, let value):
            return ["type": "object", "additionalProperties": schema(.string(value))]
        case .object(let shape):
            return object(shape)
        }
    }

    static func object(_ shape: ObjectShape) -> [String: Any] {
        var properties: [String: Any] = [:]
        for field in shape.fields {
            var property = schema(field.shape)
            property["description"] = field.doc
            properties[field.name] = property
        }
        var result: [String: Any] = ["type": "object", "properties": properties, "additionalProperties": false]
        if !shape.doc.isEmpty { result["description"] = shape.doc }
        let required = shape.fields.filter(\.required).map(\.name)
        if !required.isEmpty { result["required"] = required }
        if !shape.exactlyOne.isEmpty {
            result["allOf"] = shape.exactlyOne.map { group in
                ["oneOf": group.map { ["required": [$0]] }]
            }
        }
        return result
    }
}

extension StringFormat: Equatable {}
