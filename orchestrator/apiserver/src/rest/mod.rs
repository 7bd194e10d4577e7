//! The generic REST storage: what GET, LIST, WATCH, POST, PUT, PATCH and DELETE do to any
//! resource, with kind-specific rules in [`crate::admission`].

pub mod delete;
pub mod pod_log;
pub mod read;
pub mod rendered;
pub mod resource_version;
pub mod retry;
pub mod review;
pub mod subresource;
pub mod watch;
pub mod watch_body;
pub mod write;

use bpfk_apimachinery::registry::ResourceInfo;
use serde_json::Value;

use crate::error::ApiError;
use crate::object;

/// NotFound for an object of `res`.
pub fn not_found(res: &ResourceInfo, name: &str) -> ApiError {
    ApiError::NotFound {
        group: res.group.into(),
        kind: res.plural.into(),
        name: name.into(),
    }
}

pub fn conflict(res: &ResourceInfo, name: &str, message: impl Into<String>) -> ApiError {
    ApiError::Conflict {
        group: res.group.into(),
        kind: res.plural.into(),
        name: name.into(),
        message: message.into(),
    }
}

pub fn store_err(res: &ResourceInfo, name: &str, err: bpfk_store::StoreError) -> ApiError {
    ApiError::from_store(err, res.group, res.plural, name)
}

/// Invalid with field causes, as Kubernetes reports validation failures.
pub fn invalid(
    res: &ResourceInfo,
    name: &str,
    errors: &[bpfk_apimachinery::validation::FieldError],
) -> ApiError {
    ApiError::Invalid {
        group: res.group.into(),
        kind: res.kind.into(),
        name: name.into(),
        causes: errors
            .iter()
            .map(|e| crate::error::Cause {
                reason: e.reason().to_string(),
                message: e.message_without_field(),
                field: e.field.clone(),
            })
            .collect(),
    }
}

/// Stamp `kind` and `apiVersion` on an object.
pub fn set_type(res: &ResourceInfo, obj: &mut Value) {
    if let Some(map) = obj.as_object_mut() {
        map.insert("kind".into(), Value::String(res.kind.into()));
        map.insert("apiVersion".into(), Value::String(res.api_version()));
    }
}

/// The name an object is addressed by in messages.
pub fn display_name(obj: &Value) -> String {
    object::name(obj).unwrap_or_default().to_string()
}
