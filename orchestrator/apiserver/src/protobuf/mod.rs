//! Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`), for every served
//! kind, its list, `Status`, `PartialObjectMetadata` and watch events, read from Kubernetes'
//! own message definitions (`proto/kubernetes`, compiled to a descriptor set at build time)
//! with prost-reflect; the server itself keeps working on the JSON form.
//!
//! * A body is the `k8s\0` magic and a `runtime.Unknown`: the object's `apiVersion` and
//!   `kind`, and its message.
//! * A watch stream (`…;stream=watch`) is length-delimited frames (a 4-byte big-endian
//!   length, then a `meta.v1.WatchEvent` without magic or envelope) whose `object.raw` is the
//!   object's own enveloped body, as kube-apiserver's stream serializer writes them.

mod from_json;
pub(crate) mod schema;
mod to_json;

use prost::Message;
use prost_reflect::{DynamicMessage, Value as Pb};
use serde_json::{Map, Value};

use crate::error::{ApiError, Result};

/// The media type of protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The media type of a protobuf watch stream.
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";
/// The four bytes every Kubernetes protobuf body starts with.
const MAGIC: &[u8] = b"k8s\0";
/// Deepest message nesting read or written (Kubernetes' types nest far less; the bound keeps
/// a hostile body's cost linear and its recursion shallow).
const MAX_DEPTH: usize = 64;

/// Where in a message a value is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Outermost last (segments are added as the error leaves each level).
    path: Vec<String>,
    reason: String,
}

impl FieldError {
    fn new(reason: String) -> FieldError {
        FieldError {
            path: Vec::new(),
            reason,
        }
    }

    fn within(mut self, field: &str) -> FieldError {
        self.path.push(field.to_string());
        self
    }

    fn at_index(mut self, i: usize) -> FieldError {
        self.path.push(format!("[{i}]"));
        self
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut path = String::new();
        for segment in self.path.iter().rev() {
            if !path.is_empty() && !segment.starts_with('[') {
                path.push('.');
            }
            path.push_str(segment);
        }
        match path.is_empty() {
            true => write!(f, "{}", self.reason),
            false => write!(f, "{path}: {}", self.reason),
        }
    }
}

fn bad(detail: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("invalid protobuf body: {detail}"))
}

/// The JSON object of a protobuf request body: 400 when it does not decode, 415 for a kind
/// the server has no message for.
pub fn decode(body: &[u8]) -> Result<Value> {
    let (api_version, kind, raw) = open_envelope(body).map_err(bad)?;
    let desc =
        schema::message_of(&api_version, &kind).ok_or_else(|| ApiError::UnsupportedMediaType {
            message: format!(
                "protobuf bodies of {kind} ({api_version}) are not served - send application/json"
            ),
        })?;
    let msg = DynamicMessage::decode(desc, raw.as_slice()).map_err(bad)?;
    let fields = to_json::object(&msg, 0).map_err(bad)?;
    Ok(Value::Object(typed(api_version, kind, fields)))
}

/// `apiVersion` and `kind` first, then the fields.
fn typed(api_version: String, kind: String, fields: Map<String, Value>) -> Map<String, Value> {
    let mut obj = Map::with_capacity(fields.len() + 2);
    obj.insert("apiVersion".into(), Value::String(api_version));
    obj.insert("kind".into(), Value::String(kind));
    obj.extend(fields);
    obj
}

/// An embedded enveloped object (a `RawExtension` holding protobuf) as JSON.
fn decode_envelope(
    body: &[u8],
    depth: usize,
) -> std::result::Result<Map<String, Value>, FieldError> {
    let (api_version, kind, raw) = open_envelope(body).map_err(FieldError::new)?;
    let desc = schema::message_of(&api_version, &kind)
        .ok_or_else(|| FieldError::new(format!("no message for {kind} ({api_version})")))?;
    let msg =
        DynamicMessage::decode(desc, raw.as_slice()).map_err(|e| FieldError::new(e.to_string()))?;
    Ok(typed(api_version, kind, to_json::object(&msg, depth)?))
}

/// `(apiVersion, kind, raw message)` of a magic + `runtime.Unknown` body.
fn open_envelope(body: &[u8]) -> std::result::Result<(String, String, Vec<u8>), String> {
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or("it does not start with the k8s magic")?;
    let envelope = DynamicMessage::decode(schema::unknown(), unknown).map_err(|e| e.to_string())?;
    let text = |m: &DynamicMessage, name: &str| match m.get_field_by_name(name).as_deref() {
        Some(Pb::String(s)) => s.clone(),
        _ => String::new(),
    };
    let (api_version, kind) = match envelope.get_field_by_name("typeMeta").as_deref() {
        Some(Pb::Message(t)) => (text(t, "apiVersion"), text(t, "kind")),
        _ => (String::new(), String::new()),
    };
    let encoding = text(&envelope, "contentEncoding");
    if !encoding.is_empty() {
        return Err(format!("content encoding {encoding:?} is not supported"));
    }
    let raw = match envelope.get_field_by_name("raw").as_deref() {
        Some(Pb::Bytes(b)) => b.to_vec(),
        _ => Vec::new(),
    };
    Ok((api_version, kind, raw))
}

/// `obj` (with its `apiVersion` and `kind`) as an enveloped protobuf body; `None` when its
/// kind has no message (the caller answers JSON).
pub fn encode(obj: &Value) -> Option<std::result::Result<Vec<u8>, FieldError>> {
    let map = obj.as_object()?;
    let text = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let desc = schema::message_of(api_version, kind)?;
    Some(from_json::message(&desc, map, 0).map(|msg| envelope(api_version, kind, &msg)))
}

fn envelope(api_version: &str, kind: &str, msg: &DynamicMessage) -> Vec<u8> {
    let mut type_meta = DynamicMessage::new(schema::type_meta());
    type_meta.set_field_by_name("apiVersion", Pb::String(api_version.to_string()));
    type_meta.set_field_by_name("kind", Pb::String(kind.to_string()));
    let mut outer = DynamicMessage::new(schema::unknown());
    outer.set_field_by_name("typeMeta", Pb::Message(type_meta));
    outer.set_field_by_name("raw", Pb::Bytes(msg.encode_to_vec().into()));
    let mut out = Vec::with_capacity(MAGIC.len() + outer.encoded_len());
    out.extend_from_slice(MAGIC);
    outer.encode(&mut out).ok();
    out
}

/// One watch event (`{"type": ..., "object": ...}`) as a length-delimited frame; `None`
/// when the object's kind has no message.
pub fn watch_frame(event: &Value) -> Option<std::result::Result<Vec<u8>, FieldError>> {
    let event_type = event.get("type")?.as_str()?;
    let object = match encode(event.get("object")?)? {
        Ok(bytes) => bytes,
        Err(e) => return Some(Err(e.within("object"))),
    };
    let mut msg = DynamicMessage::new(schema::watch_event());
    msg.set_field_by_name("type", Pb::String(event_type.to_string()));
    let mut raw = DynamicMessage::new(schema::raw_extension());
    raw.set_field_by_number(1, Pb::Bytes(object.into()));
    msg.set_field_by_name("object", Pb::Message(raw));
    let body = msg.encode_to_vec();
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    Some(Ok(frame))
}

/// One frame's `meta.v1.WatchEvent` (the bytes after the length) as JSON:
/// `{"type": ..., "object": ...}`, the object decoded from its envelope.
pub fn decode_watch_event(frame: &[u8]) -> Result<Value> {
    let msg = DynamicMessage::decode(schema::watch_event(), frame).map_err(bad)?;
    Ok(Value::Object(to_json::object(&msg, 0).map_err(bad)?))
}

#[cfg(test)]
mod tests;
