//! Request bodies in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`),
//! decoded to the JSON form the rest of the server works on. The body is the `k8s\0` magic
//! and a `runtime.Unknown` holding the type and the raw message; the message is read by a
//! table of the kind's fields (numbers and JSON names as in `k8s.io/api`'s
//! `generated.proto`). Kinds without a table are 415, as before: kubectl sends protobuf for
//! what its typed clients create or update (`kubectl auth can-i` and `whoami` among them,
//! and `kubectl certificate approve|deny`, which PUTs a CertificateSigningRequest's
//! approval).

use base64::Engine;
use serde_json::{Map, Value};

use crate::error::{ApiError, Result};

/// The four bytes every Kubernetes protobuf body starts with.
const MAGIC: &[u8] = b"k8s\0";
/// Deepest message nesting decoded (the tables nest four levels at most).
const MAX_DEPTH: usize = 16;

/// What a field holds.
#[derive(Clone, Copy)]
enum Field {
    Str,
    Strings,
    Message(&'static [(u32, &'static str, Field)]),
    /// `int64` or `int32` (a varint).
    Int64,
    /// `bool` (a varint).
    Bool,
    /// `bytes`, base64 in JSON.
    Bytes,
    /// A `repeated` message.
    Messages(&'static [(u32, &'static str, Field)]),
    /// `meta.v1.Time` (seconds = 1, nanos = 2), RFC 3339 in JSON.
    Time,
    /// `map<string, string>`.
    StringMap,
    /// `map<string, ExtraValue>` (ExtraValue: `repeated string items = 1`).
    StringListMap,
}

type Table = &'static [(u32, &'static str, Field)];

const OBJECT_META: Table = &[
    (1, "name", Field::Str),
    (2, "generateName", Field::Str),
    (3, "namespace", Field::Str),
    (11, "labels", Field::StringMap),
    (12, "annotations", Field::StringMap),
];
const RESOURCE_ATTRIBUTES: Table = &[
    (1, "namespace", Field::Str),
    (2, "verb", Field::Str),
    (3, "group", Field::Str),
    (4, "version", Field::Str),
    (5, "resource", Field::Str),
    (6, "subresource", Field::Str),
    (7, "name", Field::Str),
];
const NON_RESOURCE_ATTRIBUTES: Table = &[(1, "path", Field::Str), (2, "verb", Field::Str)];
const SELF_ACCESS_SPEC: Table = &[
    (1, "resourceAttributes", Field::Message(RESOURCE_ATTRIBUTES)),
    (
        2,
        "nonResourceAttributes",
        Field::Message(NON_RESOURCE_ATTRIBUTES),
    ),
];
const ACCESS_SPEC: Table = &[
    (1, "resourceAttributes", Field::Message(RESOURCE_ATTRIBUTES)),
    (
        2,
        "nonResourceAttributes",
        Field::Message(NON_RESOURCE_ATTRIBUTES),
    ),
    (3, "user", Field::Str),
    (4, "groups", Field::Strings),
    (5, "extra", Field::StringListMap),
    (6, "uid", Field::Str),
];
/// The metadata of a stored kind's object, as a client sends it back on an update.
const OBJECT_META_OF_OBJECTS: Table = &[
    (1, "name", Field::Str),
    (2, "generateName", Field::Str),
    (3, "namespace", Field::Str),
    (5, "uid", Field::Str),
    (6, "resourceVersion", Field::Str),
    (7, "generation", Field::Int64),
    (8, "creationTimestamp", Field::Time),
    (9, "deletionTimestamp", Field::Time),
    (10, "deletionGracePeriodSeconds", Field::Int64),
    (11, "labels", Field::StringMap),
    (12, "annotations", Field::StringMap),
    (13, "ownerReferences", Field::Messages(OWNER_REFERENCE)),
    (14, "finalizers", Field::Strings),
];
const OWNER_REFERENCE: Table = &[
    (1, "kind", Field::Str),
    (3, "name", Field::Str),
    (4, "uid", Field::Str),
    (5, "apiVersion", Field::Str),
    (6, "controller", Field::Bool),
    (7, "blockOwnerDeletion", Field::Bool),
];
const CSR_SPEC: Table = &[
    (1, "request", Field::Bytes),
    (2, "username", Field::Str),
    (3, "uid", Field::Str),
    (4, "groups", Field::Strings),
    (5, "usages", Field::Strings),
    (6, "extra", Field::StringListMap),
    (7, "signerName", Field::Str),
    (8, "expirationSeconds", Field::Int64),
];
const CSR_CONDITION: Table = &[
    (1, "type", Field::Str),
    (2, "reason", Field::Str),
    (3, "message", Field::Str),
    (4, "lastUpdateTime", Field::Time),
    (5, "lastTransitionTime", Field::Time),
    (6, "status", Field::Str),
];
const CSR_STATUS: Table = &[
    (1, "conditions", Field::Messages(CSR_CONDITION)),
    (2, "certificate", Field::Bytes),
];
const RULES_SPEC: Table = &[(1, "namespace", Field::Str)];
const TOKEN_SPEC: Table = &[(1, "token", Field::Str), (2, "audiences", Field::Strings)];
const BOUND_OBJECT_REF: Table = &[
    (1, "kind", Field::Str),
    (2, "apiVersion", Field::Str),
    (3, "name", Field::Str),
    (4, "uid", Field::Str),
];
const TOKEN_REQUEST_SPEC: Table = &[
    (1, "audiences", Field::Strings),
    (3, "boundObjectRef", Field::Message(BOUND_OBJECT_REF)),
    (4, "expirationSeconds", Field::Int64),
];

/// The field table of `kind` in `api_version`, for the kinds decoded.
fn table_of(api_version: &str, kind: &str) -> Option<Table> {
    const META: (u32, &str, Field) = (1, "metadata", Field::Message(OBJECT_META));
    const SELF_ACCESS: Table = &[META, (2, "spec", Field::Message(SELF_ACCESS_SPEC))];
    const ACCESS: Table = &[META, (2, "spec", Field::Message(ACCESS_SPEC))];
    const RULES: Table = &[META, (2, "spec", Field::Message(RULES_SPEC))];
    const SELF_REVIEW: Table = &[META];
    const TOKEN: Table = &[META, (2, "spec", Field::Message(TOKEN_SPEC))];
    const TOKEN_REQUEST: Table = &[META, (2, "spec", Field::Message(TOKEN_REQUEST_SPEC))];
    const CSR: Table = &[
        (1, "metadata", Field::Message(OBJECT_META_OF_OBJECTS)),
        (2, "spec", Field::Message(CSR_SPEC)),
        (3, "status", Field::Message(CSR_STATUS)),
    ];
    match (api_version, kind) {
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => Some(SELF_ACCESS),
        ("authorization.k8s.io/v1", "SubjectAccessReview" | "LocalSubjectAccessReview") => {
            Some(ACCESS)
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => Some(RULES),
        ("authentication.k8s.io/v1", "SelfSubjectReview") => Some(SELF_REVIEW),
        ("authentication.k8s.io/v1", "TokenReview") => Some(TOKEN),
        ("authentication.k8s.io/v1", "TokenRequest") => Some(TOKEN_REQUEST),
        ("certificates.k8s.io/v1", "CertificateSigningRequest") => Some(CSR),
        _ => None,
    }
}

fn bad(detail: &str) -> ApiError {
    ApiError::bad_request(format!("invalid protobuf body: {detail}"))
}

/// The JSON object of a protobuf request body.
pub fn decode(body: &[u8]) -> Result<Value> {
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("it does not start with the k8s magic"))?;
    let mut type_meta = Vec::new();
    let mut raw: &[u8] = &[];
    for field in Reader(unknown) {
        match field? {
            (1, Wire::Bytes(b)) => type_meta = b.to_vec(),
            (2, Wire::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let mut api_version = String::new();
    let mut kind = String::new();
    for field in Reader(&type_meta) {
        match field? {
            (1, Wire::Bytes(b)) => api_version = utf8(b)?,
            (2, Wire::Bytes(b)) => kind = utf8(b)?,
            _ => {}
        }
    }
    let table = table_of(&api_version, &kind).ok_or_else(|| ApiError::UnsupportedMediaType {
        message: format!(
            "protobuf bodies of {kind} ({api_version}) are not served yet - send application/json"
        ),
    })?;
    let mut obj = message(raw, table, 0)?;
    obj.insert("apiVersion".into(), Value::String(api_version));
    obj.insert("kind".into(), Value::String(kind));
    Ok(Value::Object(obj))
}

fn utf8(b: &[u8]) -> Result<String> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("a string is not UTF-8"))
}

fn message(bytes: &[u8], table: Table, depth: usize) -> Result<Map<String, Value>> {
    if depth > MAX_DEPTH {
        return Err(bad("messages nest too deep"));
    }
    let mut out = Map::new();
    for field in Reader(bytes) {
        let (number, wire) = field?;
        let Some((_, name, kind)) = table.iter().find(|(n, _, _)| *n == number) else {
            continue;
        };
        match (kind, &wire) {
            // an int32 is sign-extended to 64 bits on the wire
            (Field::Int64, Wire::Varint(v)) => {
                out.insert(name.to_string(), Value::from(*v as i64));
                continue;
            }
            (Field::Bool, Wire::Varint(v)) => {
                out.insert(name.to_string(), Value::Bool(*v != 0));
                continue;
            }
            _ => {}
        }
        let Wire::Bytes(b) = wire else {
            return Err(bad(&format!("field {name} has the wrong wire type")));
        };
        let name = name.to_string();
        match kind {
            Field::Str => {
                out.insert(name, Value::String(utf8(b)?));
            }
            Field::Strings => push(&mut out, name, Value::String(utf8(b)?)),
            Field::Int64 | Field::Bool => {
                return Err(bad(&format!("field {name} is not a varint")))
            }
            Field::Bytes => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(b);
                out.insert(name, Value::String(encoded));
            }
            Field::Time => {
                out.insert(name, Value::String(time(b)?));
            }
            Field::Message(inner) => {
                out.insert(name, Value::Object(message(b, inner, depth + 1)?));
            }
            Field::Messages(inner) => {
                push(&mut out, name, Value::Object(message(b, inner, depth + 1)?));
            }
            Field::StringMap | Field::StringListMap => {
                let (key, value) = map_entry(b, *kind)?;
                let map = out.entry(name).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = map {
                    m.insert(key, value);
                }
            }
        }
    }
    Ok(out)
}

/// A `meta.v1.Time` as JSON shows it: RFC 3339 to the second, in UTC.
fn time(b: &[u8]) -> Result<String> {
    let mut seconds = 0;
    for field in Reader(b) {
        if let (1, Wire::Varint(v)) = field? {
            seconds = v as i64;
        }
    }
    let at =
        chrono::DateTime::from_timestamp(seconds, 0).ok_or_else(|| bad("a time out of range"))?;
    Ok(at.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn push(out: &mut Map<String, Value>, name: String, value: Value) {
    let list = out.entry(name).or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(items) = list {
        items.push(value);
    }
}

/// A map entry: key = 1, value = 2 (a string, or an ExtraValue's strings).
fn map_entry(b: &[u8], kind: Field) -> Result<(String, Value)> {
    let mut key = String::new();
    let mut value = match kind {
        Field::StringListMap => Value::Array(Vec::new()),
        _ => Value::String(String::new()),
    };
    for field in Reader(b) {
        match (field?, kind) {
            ((1, Wire::Bytes(k)), _) => key = utf8(k)?,
            ((2, Wire::Bytes(v)), Field::StringListMap) => {
                let items: Result<Vec<Value>> = Reader(v)
                    .filter_map(|f| match f {
                        Ok((1, Wire::Bytes(s))) => Some(utf8(s).map(Value::String)),
                        Ok(_) => None,
                        Err(e) => Some(Err(e)),
                    })
                    .collect();
                value = Value::Array(items?);
            }
            ((2, Wire::Bytes(v)), _) => value = Value::String(utf8(v)?),
            _ => {}
        }
    }
    Ok((key, value))
}

/// One field's payload on the wire.
enum Wire<'a> {
    Varint(u64),
    Fixed,
    Bytes(&'a [u8]),
}

/// The fields of a message, in order.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .0
                .split_first()
                .ok_or_else(|| bad("truncated varint"))?;
            self.0 = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(bad("a field runs past the end of its message"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<(u32, Wire<'a>)> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| bad("field number out of range"))?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => self.take(8).map(|_| Wire::Fixed)?,
            2 => {
                let len =
                    usize::try_from(self.varint()?).map_err(|_| bad("length out of range"))?;
                Wire::Bytes(self.take(len)?)
            }
            5 => self.take(4).map(|_| Wire::Fixed)?,
            other => return Err(bad(&format!("wire type {other} is not supported"))),
        };
        Ok((number, wire))
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<(u32, Wire<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let item = self.field();
        if item.is_err() {
            self.0 = &[];
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_field(number: u32, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 128, "a one-byte length");
        let mut out = vec![(number << 3 | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [
            bytes_field(1, api_version.as_bytes()),
            bytes_field(2, kind.as_bytes()),
        ]
        .concat();
        let unknown = [bytes_field(1, &type_meta), bytes_field(2, raw)].concat();
        [MAGIC, &unknown].concat()
    }

    #[test]
    fn decodes_a_self_subject_access_review() {
        let attrs = [
            bytes_field(1, b"dev"),
            bytes_field(2, b"list"),
            bytes_field(5, b"pods"),
            vec![8 << 3, 1], // a varint field the table does not know
        ]
        .concat();
        let spec = bytes_field(1, &attrs);
        let raw = [bytes_field(1, &[]), bytes_field(2, &spec)].concat();
        let obj = decode(&envelope(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            &raw,
        ))
        .unwrap();
        assert_eq!(
            obj,
            serde_json::json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "metadata": {}, "spec": {"resourceAttributes": {"namespace": "dev", "verb": "list", "resource": "pods"}}})
        );
    }

    #[test]
    fn decodes_a_token_request_with_its_expiry() {
        let spec = [
            bytes_field(1, b"vault"),
            vec![4 << 3, 0x90, 0x1c], // expirationSeconds 3600
            bytes_field(
                3,
                &[bytes_field(1, b"Pod"), bytes_field(3, b"web")].concat(),
            ),
        ]
        .concat();
        let raw = [
            bytes_field(1, &bytes_field(1, b"default")),
            bytes_field(2, &spec),
        ]
        .concat();
        let obj = decode(&envelope("authentication.k8s.io/v1", "TokenRequest", &raw)).unwrap();
        assert_eq!(
            obj["spec"],
            serde_json::json!({"audiences": ["vault"], "expirationSeconds": 3600,
                "boundObjectRef": {"kind": "Pod", "name": "web"}})
        );
        assert_eq!(obj["metadata"]["name"], "default");
        let wrong_wire = [bytes_field(1, &[]), bytes_field(2, &bytes_field(4, b"x"))].concat();
        let err = decode(&envelope(
            "authentication.k8s.io/v1",
            "TokenRequest",
            &wrong_wire,
        ));
        assert_eq!(err.unwrap_err().code(), 400);
    }

    fn varint_field(number: u32, mut v: u64) -> Vec<u8> {
        let mut out = vec![(number << 3) as u8];
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    #[test]
    fn decodes_a_certificate_signing_request_as_kubectl_approves_it() {
        let meta = [
            bytes_field(1, b"node-csr-1"),
            bytes_field(6, b"42"),
            bytes_field(8, &varint_field(1, 1_735_689_600)),
            bytes_field(13, &[bytes_field(1, b"Node"), varint_field(6, 1)].concat()),
        ]
        .concat();
        let spec = [
            bytes_field(1, b"PEM"),
            bytes_field(5, b"client auth"),
            bytes_field(7, b"a.io/b"),
            varint_field(8, 86400),
        ]
        .concat();
        let approved = [
            bytes_field(1, b"Approved"),
            bytes_field(6, b"True"),
            bytes_field(2, b"Kubectl"),
            bytes_field(4, &varint_field(1, 1_735_689_660)),
        ]
        .concat();
        let status = [
            bytes_field(1, &bytes_field(1, b"Failed")),
            bytes_field(1, &approved),
        ]
        .concat();
        let raw = [
            bytes_field(1, &meta),
            bytes_field(2, &spec),
            bytes_field(3, &status),
        ]
        .concat();
        let obj = decode(&envelope(
            "certificates.k8s.io/v1",
            "CertificateSigningRequest",
            &raw,
        ))
        .unwrap();
        assert_eq!(
            obj["metadata"],
            serde_json::json!({"name": "node-csr-1", "resourceVersion": "42",
                "creationTimestamp": "2025-01-01T00:00:00Z",
                "ownerReferences": [{"kind": "Node", "controller": true}]})
        );
        assert_eq!(
            obj["spec"],
            serde_json::json!({"request": "UEVN", "usages": ["client auth"], "expirationSeconds": 86400,
                "signerName": "a.io/b"})
        );
        assert_eq!(
            obj["status"]["conditions"],
            serde_json::json!([{"type": "Failed"}, {"type": "Approved", "status": "True",
                "reason": "Kubectl", "lastUpdateTime": "2025-01-01T00:01:00Z"}])
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert_eq!(decode(b"{}").unwrap_err().code(), 400);
        assert_eq!(decode(&envelope("v1", "Pod", &[])).unwrap_err().code(), 415);
        let truncated = envelope(
            "authentication.k8s.io/v1",
            "SelfSubjectReview",
            &[10, 50, 1],
        );
        assert_eq!(decode(&truncated).unwrap_err().code(), 400);
        let deep = envelope("authentication.k8s.io/v1", "SelfSubjectReview", &[0xff; 12]);
        assert_eq!(decode(&deep).unwrap_err().code(), 400);
    }
}
