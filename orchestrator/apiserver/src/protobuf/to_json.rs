//! A decoded message as the JSON Kubernetes' Go types marshal to (not protobuf's own JSON
//! mapping): times as RFC 3339, quantities and durations as strings, int-or-strings as
//! either, embedded objects inline, 64-bit integers as numbers.
//!
//! Structs Go embeds inline (a Probe's handler, a ConfigMap reference's name) have a field of
//! their own in protobuf and are merged into the outer object here.
//!
//! Go writes every non-pointer field, so a zero string on the wire is what JSON leaves out
//! (`omitempty`): a singular empty string or zero time becomes an absent field here, as it is
//! absent when a JSON client sends the same object. Numbers and booleans stay, zero or not:
//! pointer fields (`replicas: 0`, `automountServiceAccountToken: false`) mean them.

use base64::Engine;
use prost_reflect::{DynamicMessage, Kind, MapKey, MessageDescriptor, ReflectMessage, Value as Pb};
use serde_json::{Map, Number, Value};

use super::schema::{self, Shape};
use super::{FieldError, MAGIC, MAX_DEPTH};
use bpfk_common::duration;

/// The JSON object of `msg`'s fields.
pub fn object(msg: &DynamicMessage, depth: usize) -> Result<Map<String, Value>, FieldError> {
    if depth > MAX_DEPTH {
        return Err(FieldError::new(format!(
            "nests deeper than {MAX_DEPTH} levels"
        )));
    }
    let mut out = Map::new();
    for (field, value) in msg.fields() {
        let json = field_json(&field.kind(), value, depth).map_err(|e| e.within(field.name()))?;
        match json {
            Value::Object(embedded) if schema::inline(&field).is_some() => out.extend(embedded),
            Value::Null => {}
            Value::String(s) if s.is_empty() && !field.is_list() && !field.is_map() => {}
            v => {
                out.insert(field.name().to_string(), v);
            }
        }
    }
    Ok(out)
}

/// One field's value: a list, a map or a single value of `kind`.
fn field_json(kind: &Kind, value: &Pb, depth: usize) -> Result<Value, FieldError> {
    match value {
        Pb::List(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| element(kind, item, depth).map_err(|e| e.at_index(i)))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Pb::Map(entries) => {
            let value_kind = match kind {
                Kind::Message(entry) => entry.map_entry_value_field().kind(),
                _ => return Err(FieldError::new("a map without an entry type".into())),
            };
            let mut keys: Vec<(String, &Pb)> = entries.iter().map(|(k, v)| (key(k), v)).collect();
            keys.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out = Map::new();
            for (k, v) in keys {
                let json = element(&value_kind, v, depth).map_err(|e| e.within(&k))?;
                out.insert(k, json);
            }
            Ok(Value::Object(out))
        }
        single => element(kind, single, depth),
    }
}

fn key(k: &MapKey) -> String {
    match k {
        MapKey::String(s) => s.clone(),
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
    }
}

/// One value of `kind`.
fn element(kind: &Kind, value: &Pb, depth: usize) -> Result<Value, FieldError> {
    Ok(match value {
        Pb::Bool(b) => Value::Bool(*b),
        Pb::I32(n) => Value::from(*n),
        Pb::I64(n) => Value::from(*n),
        Pb::U32(n) => Value::from(*n),
        Pb::U64(n) => Value::from(*n),
        Pb::EnumNumber(n) => Value::from(*n),
        Pb::F32(f) => float(f64::from(*f))?,
        Pb::F64(f) => float(*f)?,
        Pb::String(s) => Value::String(s.clone()),
        Pb::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Pb::Message(m) => message(m, depth + 1)?,
        Pb::List(_) | Pb::Map(_) => {
            return Err(FieldError::new(format!("a nested list or map of {kind:?}")))
        }
    })
}

fn float(f: f64) -> Result<Value, FieldError> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| FieldError::new("a number JSON cannot hold (NaN or infinite)".into()))
}

/// A message as JSON shows its type.
fn message(m: &DynamicMessage, depth: usize) -> Result<Value, FieldError> {
    let desc = m.descriptor();
    Ok(match schema::shape(&desc) {
        Shape::Object => Value::Object(object(m, depth)?),
        Shape::Time => time(m, "%Y-%m-%dT%H:%M:%SZ")?,
        Shape::MicroTime => time(m, "%Y-%m-%dT%H:%M:%S%.6fZ")?,
        Shape::Duration => Value::String(duration::format_go(int(m, "duration"))),
        Shape::Quantity => Value::String(string(m, "string")),
        Shape::IntOrString if int(m, "type") == 1 => Value::String(string(m, "strVal")),
        Shape::IntOrString => Value::from(int(m, "intVal")),
        Shape::RawJson => raw_json(m, &desc, depth)?,
        Shape::Items => match m.get_field_by_name("items") {
            Some(items) => field_json(&first_field_kind(&desc), &items, depth)?,
            None => Value::Array(Vec::new()),
        },
    })
}

fn first_field_kind(desc: &MessageDescriptor) -> Kind {
    desc.fields().next().map_or(Kind::String, |f| f.kind())
}

fn int(m: &DynamicMessage, name: &str) -> i64 {
    match m.get_field_by_name(name).as_deref() {
        Some(Pb::I64(n)) => *n,
        Some(Pb::I32(n)) => i64::from(*n),
        _ => 0,
    }
}

fn string(m: &DynamicMessage, name: &str) -> String {
    match m.get_field_by_name(name).as_deref() {
        Some(Pb::String(s)) => s.clone(),
        _ => String::new(),
    }
}

/// A time (`seconds`, `nanos` since the epoch); the zero time is `null`, as Go marshals it.
fn time(m: &DynamicMessage, format: &str) -> Result<Value, FieldError> {
    let (seconds, nanos) = (int(m, "seconds"), int(m, "nanos"));
    if seconds == 0 && nanos == 0 {
        return Ok(Value::Null);
    }
    let nanos = u32::try_from(nanos).map_err(|_| FieldError::new("negative nanos".into()))?;
    let at = chrono::DateTime::from_timestamp(seconds, nanos)
        .ok_or_else(|| FieldError::new(format!("a time out of range ({seconds} s)")))?;
    Ok(Value::String(at.format(format).to_string()))
}

/// An embedded object: JSON bytes, or a protobuf object with its own envelope.
fn raw_json(
    m: &DynamicMessage,
    desc: &MessageDescriptor,
    depth: usize,
) -> Result<Value, FieldError> {
    let Some(field) = desc.get_field(1) else {
        return Ok(Value::Null);
    };
    let raw = match m.get_field(&field).as_ref() {
        Pb::Bytes(b) => b.clone(),
        _ => return Ok(Value::Null),
    };
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    if raw.starts_with(MAGIC) {
        return super::decode_envelope(&raw, depth + 1).map(Value::Object);
    }
    serde_json::from_slice(&raw).map_err(|e| FieldError::new(format!("embedded JSON: {e}")))
}
