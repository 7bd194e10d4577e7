//! `/openapi/v2`: the definitions of every served kind as a Swagger 2.0 document, in JSON and
//! in the protobuf form kubectl asks for (gnostic's `openapi.v2.Document`).
//!
//! kubectl (v1.32, v1.33) validates a `kind: List` manifest on the client whatever the server
//! offers, against this document: without it every List is refused. It looks each item's kind
//! up by the definitions' `x-kubernetes-group-version-kind` and checks the item's fields
//! (unknown and mistyped ones are reported before anything is applied).
//!
//! The document has no paths: kubectl computes a strategic merge patch from this document
//! only for a kind whose PATCH operation here offers one, and the definitions carry no
//! `x-kubernetes-patch-merge-key`s (see [`super::paths`]); without paths it computes its
//! patches from its compiled-in types, as it does against a server without `/openapi/v2`.

use serde_json::{json, Map, Value};

/// The Content-Type of the protobuf form, as kube-apiserver sends it.
pub const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The media types a client asks for the protobuf form with: [`PROTOBUF`] and the older
/// spelling kubectl (v1.33) still sends, which is no valid Content-Type (Go's MIME parser
/// refuses the `@`).
pub const PROTOBUF_ACCEPTED: [&str; 2] = [
    PROTOBUF,
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
];

/// The Swagger 2.0 document holding `schemas` (OpenAPI 3 schemas whose `$ref`s point to
/// `#/components/schemas/`) as its definitions.
pub(super) fn document(schemas: &Map<String, Value>) -> Value {
    let definitions: Map<String, Value> = schemas
        .iter()
        .map(|(name, schema)| (name.clone(), to_v2(schema)))
        .collect();
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": super::INFO_VERSION},
        "paths": {},
        "definitions": definitions,
    })
}

/// A schema as Swagger 2.0 writes it: `$ref`s to `#/definitions/`, and a `$ref` with a
/// description beside it written as such (OpenAPI 3 wraps it in a one-element `allOf`,
/// which kubectl's v2 reader would not follow).
fn to_v2(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: Map<String, Value> = map
                .iter()
                .map(|(k, v)| (k.clone(), to_v2_field(k, v)))
                .collect();
            if let Some(Value::Array(all_of)) = out.get("allOf") {
                if let [Value::Object(only)] = all_of.as_slice() {
                    if let Some(reference) = only.get("$ref").filter(|_| only.len() == 1) {
                        let reference = reference.clone();
                        out.remove("allOf");
                        out.insert("$ref".into(), reference);
                    }
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn to_v2_field(key: &str, value: &Value) -> Value {
    match (key, value) {
        ("$ref", Value::String(r)) => {
            let name = r.strip_prefix(super::schemas::SCHEMAS_PATH).unwrap_or(r);
            Value::String(format!("#/definitions/{name}"))
        }
        ("properties", Value::Object(props)) => Value::Object(
            props
                .iter()
                .map(|(name, s)| (name.clone(), to_v2(s)))
                .collect(),
        ),
        ("items" | "additionalProperties", s) => to_v2(s),
        ("allOf", Value::Array(list)) => Value::Array(list.iter().map(to_v2).collect()),
        // enum values, defaults, extensions: data, not schemas
        (_, v) => v.clone(),
    }
}

/// `document` (as [`document`] builds it) encoded as gnostic's `openapi.v2.Document`.
pub(super) fn protobuf(document: &Value) -> Vec<u8> {
    let mut w = Writer::default();
    w.string(1, str_of(&document["swagger"]));
    w.message(2, |info| {
        info.string(1, str_of(&document["info"]["title"]));
        info.string(2, str_of(&document["info"]["version"]));
    });
    w.message(8, |_| {}); // Paths: none
    if let Value::Object(definitions) = &document["definitions"] {
        w.message(9, |defs| named_schemas(defs, definitions));
    }
    w.out
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// `NamedSchema`s (field 1 of `Definitions` and of `Properties`).
fn named_schemas(w: &mut Writer, schemas: &Map<String, Value>) {
    for (name, schema) in schemas {
        w.message(1, |named| {
            named.string(1, name);
            named.message(2, |s| schema_fields(s, schema));
        });
    }
}

/// The fields of a gnostic `Schema` from a Swagger 2.0 schema. Keys it has no field for
/// (none that kubectl reads) are left out.
fn schema_fields(w: &mut Writer, schema: &Value) {
    let Value::Object(map) = schema else {
        return;
    };
    for (key, value) in map {
        match (key.as_str(), value) {
            ("$ref", Value::String(s)) => w.string(1, s),
            ("format", Value::String(s)) => w.string(2, s),
            ("title", Value::String(s)) => w.string(3, s),
            ("description", Value::String(s)) => w.string(4, s),
            ("default", v) => w.message(5, |any| any.string(2, &v.to_string())),
            ("required", Value::Array(names)) => names
                .iter()
                .filter_map(Value::as_str)
                .for_each(|n| w.string(19, n)),
            ("enum", Value::Array(values)) => {
                for v in values {
                    w.message(20, |any| any.string(2, &v.to_string()));
                }
            }
            ("additionalProperties", Value::Bool(b)) => w.message(21, |a| a.bool(2, *b)),
            ("additionalProperties", s) => {
                w.message(21, |a| a.message(1, |s2| schema_fields(s2, s)))
            }
            ("type", Value::String(t)) => w.message(22, |ty| ty.string(1, t)),
            ("items", s @ Value::Object(_)) => {
                w.message(23, |items| items.message(1, |s2| schema_fields(s2, s)))
            }
            ("allOf", Value::Array(list)) => {
                for s in list {
                    w.message(24, |s2| schema_fields(s2, s));
                }
            }
            ("properties", Value::Object(props)) => w.message(25, |p| named_schemas(p, props)),
            ("readOnly", Value::Bool(b)) => w.bool(27, *b),
            (name, v) if name.starts_with("x-") => w.message(31, |named| {
                named.string(1, name);
                // the value is read as YAML, of which JSON is a part
                named.message(2, |any| any.string(2, &v.to_string()));
            }),
            _ => {}
        }
    }
}

/// Writes protobuf fields (the wire format of proto3: varint keys, length-delimited
/// strings and messages).
#[derive(Default)]
struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire_type));
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, 2);
        self.varint(bytes.len() as u64);
        self.out.extend_from_slice(bytes);
    }

    fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }

    fn bool(&mut self, field: u32, b: bool) {
        self.key(field, 0);
        self.varint(u64::from(b));
    }

    /// A message field, its fields written by `fill`.
    fn message(&mut self, field: u32, fill: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        fill(&mut inner);
        self.bytes(field, &inner.out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_point_to_definitions_and_lose_their_all_of() {
        let v3 = json!({
            "type": "object",
            "properties": {
                "spec": {"allOf": [{"$ref": "#/components/schemas/a.B"}], "description": "d"},
                "list": {"type": "array", "items": {"$ref": "#/components/schemas/a.C"}},
            },
        });
        let v2 = to_v2(&v3);
        assert_eq!(
            v2["properties"]["spec"],
            json!({"$ref": "#/definitions/a.B", "description": "d"})
        );
        assert_eq!(
            v2["properties"]["list"]["items"]["$ref"],
            "#/definitions/a.C"
        );
    }

    #[test]
    fn protobuf_fields_are_written_by_number() {
        let mut w = Writer::default();
        w.string(1, "2.0");
        w.bool(27, true);
        w.message(22, |t| t.string(1, "object"));
        assert_eq!(
            w.out,
            [
                &[0x0a, 3][..],
                b"2.0",
                &[0xd8, 0x01, 1], // field 27, varint: key 27 << 3 = 216 = 0xd8 0x01
                &[0xb2, 0x01, 8, 0x0a, 6], // field 22 of 8 bytes holding field 1 of 6
                b"object",
            ]
            .concat()
        );
    }

    #[test]
    fn a_document_encodes_its_definitions_with_their_extensions() {
        let mut schemas = Map::new();
        schemas.insert(
            "io.k8s.api.core.v1.Pod".into(),
            json!({"type": "object", "x-kubernetes-group-version-kind": [{"group": "", "kind": "Pod", "version": "v1"}]}),
        );
        let doc = document(&schemas);
        assert_eq!(
            doc["definitions"]["io.k8s.api.core.v1.Pod"]["type"],
            "object"
        );
        let bytes = protobuf(&doc);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("io.k8s.api.core.v1.Pod"));
        assert!(text.contains("x-kubernetes-group-version-kind"));
        assert!(text.contains(r#"[{"group":"","kind":"Pod","version":"v1"}]"#));
        assert!(bytes.starts_with(&[0x0a, 3, b'2', b'.', b'0']));
    }
}
