//! A JSON object (as the server holds and serves it) as a message of Kubernetes' types: the
//! inverse of [`super::to_json`], embedded inline structs included. Keys the message does not
//! have (`apiVersion` and `kind`,
//! which the envelope carries) are left out, as are `null`s.

use std::collections::HashMap;

use base64::Engine;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value as Pb,
};
use serde_json::{Map, Value};

use super::schema::{self, Shape};
use super::{FieldError, MAX_DEPTH};
use bpfk_common::duration;

/// `obj` as a message of `desc`.
pub fn message(
    desc: &MessageDescriptor,
    obj: &Map<String, Value>,
    depth: usize,
) -> Result<DynamicMessage, FieldError> {
    if depth > MAX_DEPTH {
        return Err(FieldError::new(format!(
            "nests deeper than {MAX_DEPTH} levels"
        )));
    }
    let mut msg = DynamicMessage::new(desc.clone());
    for (name, value) in obj {
        let Some(field) = desc.get_field_by_name(name) else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        let pb = field_value(&field, value, depth).map_err(|e| e.within(name))?;
        msg.set_field(&field, pb);
    }
    // structs Go embeds inline take their fields from this same object
    for field in desc.fields() {
        if let Some(embedded) = schema::inline(&field) {
            let inner = message(&embedded, obj, depth + 1)?;
            if inner.fields().next().is_some() {
                msg.set_field(&field, Pb::Message(inner));
            }
        }
    }
    Ok(msg)
}

fn field_value(field: &FieldDescriptor, value: &Value, depth: usize) -> Result<Pb, FieldError> {
    if field.is_map() {
        let Value::Object(entries) = value else {
            return Err(FieldError::new("must be an object".into()));
        };
        let value_kind = match field.kind() {
            Kind::Message(entry) => entry.map_entry_value_field().kind(),
            _ => return Err(FieldError::new("a map without an entry type".into())),
        };
        let mut map = HashMap::with_capacity(entries.len());
        for (k, v) in entries {
            let pb = element(&value_kind, v, depth).map_err(|e| e.within(k))?;
            map.insert(MapKey::String(k.clone()), pb);
        }
        return Ok(Pb::Map(map));
    }
    if field.is_list() {
        let Value::Array(items) = value else {
            return Err(FieldError::new("must be an array".into()));
        };
        return items
            .iter()
            .enumerate()
            .map(|(i, item)| element(&field.kind(), item, depth).map_err(|e| e.at_index(i)))
            .collect::<Result<Vec<_>, _>>()
            .map(Pb::List);
    }
    element(&field.kind(), value, depth)
}

fn wrong(expected: &str, value: &Value) -> FieldError {
    let got = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    FieldError::new(format!("must be {expected}, not {got}"))
}

fn integer<T: TryFrom<i64>>(value: &Value) -> Result<T, FieldError> {
    value
        .as_i64()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| wrong("an integer in range", value))
}

/// One value of `kind`.
fn element(kind: &Kind, value: &Value, depth: usize) -> Result<Pb, FieldError> {
    Ok(match kind {
        Kind::Bool => Pb::Bool(value.as_bool().ok_or_else(|| wrong("a boolean", value))?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Pb::I32(integer(value)?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Pb::I64(integer(value)?),
        Kind::Uint32 | Kind::Fixed32 => Pb::U32(integer(value)?),
        Kind::Uint64 | Kind::Fixed64 => Pb::U64(integer(value)?),
        Kind::Double => Pb::F64(value.as_f64().ok_or_else(|| wrong("a number", value))?),
        Kind::Float => Pb::F32(value.as_f64().ok_or_else(|| wrong("a number", value))? as f32),
        Kind::Enum(_) => Pb::EnumNumber(integer(value)?),
        Kind::String => Pb::String(
            value
                .as_str()
                .ok_or_else(|| wrong("a string", value))?
                .to_string(),
        ),
        Kind::Bytes => {
            let text = value
                .as_str()
                .ok_or_else(|| wrong("a base64 string", value))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| FieldError::new(format!("is not base64: {e}")))?;
            Pb::Bytes(bytes.into())
        }
        Kind::Message(desc) => Pb::Message(shaped(desc, value, depth + 1)?),
    })
}

/// A message from the JSON its type shows as.
fn shaped(
    desc: &MessageDescriptor,
    value: &Value,
    depth: usize,
) -> Result<DynamicMessage, FieldError> {
    let mut msg = DynamicMessage::new(desc.clone());
    let mut set = |name: &str, pb: Pb| {
        if let Some(field) = desc.get_field_by_name(name) {
            msg.set_field(&field, pb);
        }
    };
    match schema::shape(desc) {
        Shape::Object => {
            let obj = value.as_object().ok_or_else(|| wrong("an object", value))?;
            return message(desc, obj, depth);
        }
        Shape::Time | Shape::MicroTime => {
            let text = value
                .as_str()
                .ok_or_else(|| wrong("an RFC 3339 time", value))?;
            let at = chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|e| FieldError::new(format!("is not an RFC 3339 time: {e}")))?;
            set("seconds", Pb::I64(at.timestamp()));
            set("nanos", Pb::I32(at.timestamp_subsec_nanos() as i32));
        }
        Shape::Duration => {
            let text = value.as_str().ok_or_else(|| wrong("a duration", value))?;
            let nanos = duration::parse_go(text).map_err(FieldError::new)?;
            set("duration", Pb::I64(nanos));
        }
        Shape::Quantity => {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => return Err(wrong("a quantity", other)),
            };
            set("string", Pb::String(text));
        }
        Shape::IntOrString => match value {
            Value::String(s) => {
                set("type", Pb::I64(1));
                set("strVal", Pb::String(s.clone()));
            }
            number => {
                set("type", Pb::I64(0));
                set("intVal", Pb::I32(integer(number)?));
            }
        },
        Shape::RawJson => {
            let bytes = serde_json::to_vec(value)
                .map_err(|e| FieldError::new(format!("embedded JSON: {e}")))?;
            if let Some(field) = desc.get_field(1) {
                msg.set_field(&field, Pb::Bytes(bytes.into()));
            }
        }
        Shape::Items => {
            let field = desc
                .get_field_by_name("items")
                .ok_or_else(|| FieldError::new("an items wrapper without items".into()))?;
            let items = field_value(&field, value, depth)?;
            msg.set_field(&field, items);
        }
    }
    Ok(msg)
}
