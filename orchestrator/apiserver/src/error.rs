//! API errors and their `Status` representation.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bpfk_store::StoreError;
use serde_json::{json, Value};

/// One cause of an Invalid/BadRequest error (`details.causes[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// An error answered to an API client as a `meta/v1 Status`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { message: String },
    #[error("{kind} {name:?} not found")]
    NotFound {
        group: String,
        kind: String,
        name: String,
    },
    /// A URL path the server does not serve.
    #[error("the server could not find the requested resource")]
    NotFoundPath,
    #[error("{kind} {name:?} already exists")]
    AlreadyExists {
        group: String,
        kind: String,
        name: String,
    },
    #[error("{message}")]
    Conflict {
        group: String,
        kind: String,
        name: String,
        message: String,
    },
    /// A server-side apply that would change fields other managers own (409).
    #[error("{message}")]
    ApplyConflict {
        message: String,
        /// One per field: `conflict with "manager"`, the field (`.spec.replicas`).
        causes: Vec<Cause>,
    },
    #[error("{kind} {name:?} is invalid")]
    Invalid {
        group: String,
        kind: String,
        name: String,
        causes: Vec<Cause>,
    },
    #[error("{message}")]
    Forbidden {
        group: String,
        kind: String,
        name: String,
        message: String,
    },
    #[error("{message}")]
    Gone { message: String },
    #[error("{message}")]
    MethodNotAllowed { message: String },
    #[error("{message}")]
    UnsupportedMediaType { message: String },
    #[error("{message}")]
    NotAcceptable { message: String },
    #[error("{message}")]
    Unavailable { message: String },
    #[error("{message}")]
    Internal { message: String },
    #[error("{message}")]
    Timeout { message: String },
    /// A read or watch at a revision the server did not reach within the wait (504, as
    /// Kubernetes answers it: clients relist at a revision the server has).
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion { requested: i64, current: i64 },
    /// A request without valid credentials (401).
    #[error("Unauthorized")]
    Unauthorized,
    /// A request body over the limit (413).
    #[error("Request entity too large: limit is {limit}")]
    RequestEntityTooLarge { limit: usize },
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::Internal {
            message: message.into(),
        }
    }

    pub fn code(&self) -> u16 {
        match self {
            ApiError::BadRequest { .. } => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden { .. } => 403,
            ApiError::NotFound { .. } | ApiError::NotFoundPath => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::NotAcceptable { .. } => 406,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict { .. } => 409,
            ApiError::Gone { .. } => 410,
            ApiError::UnsupportedMediaType { .. } => 415,
            ApiError::Invalid { .. } => 422,
            ApiError::Internal { .. } => 500,
            ApiError::Unavailable { .. } => 503,
            ApiError::Timeout { .. } | ApiError::TooLargeResourceVersion { .. } => 504,
            ApiError::RequestEntityTooLarge { .. } => 413,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::NotFound { .. } | ApiError::NotFoundPath => "NotFound",
            ApiError::MethodNotAllowed { .. } => "MethodNotAllowed",
            ApiError::NotAcceptable { .. } => "NotAcceptable",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Gone { .. } => "Expired",
            ApiError::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::Internal { .. } => "InternalError",
            ApiError::Unavailable { .. } => "ServiceUnavailable",
            ApiError::Timeout { .. } | ApiError::TooLargeResourceVersion { .. } => "Timeout",
            ApiError::RequestEntityTooLarge { .. } => "RequestEntityTooLarge",
        }
    }

    /// The Kubernetes-style message.
    pub fn message(&self) -> String {
        match self {
            ApiError::NotFound { group, kind, name } => {
                format!("{} \"{}\" not found", qualified(group, kind), name)
            }
            ApiError::AlreadyExists { group, kind, name } => {
                format!("{} \"{}\" already exists", qualified(group, kind), name)
            }
            ApiError::Conflict {
                group,
                kind,
                name,
                message,
            } => {
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": {}",
                    qualified(group, kind),
                    name,
                    message
                )
            }
            ApiError::Forbidden {
                group,
                kind,
                name,
                message,
            } => {
                if kind.is_empty() {
                    format!("forbidden: {message}")
                } else if name.is_empty() {
                    format!("{} is forbidden: {}", qualified(group, kind), message)
                } else {
                    format!(
                        "{} \"{}\" is forbidden: {}",
                        qualified(group, kind),
                        name,
                        message
                    )
                }
            }
            ApiError::Invalid {
                group,
                kind,
                name,
                causes,
            } => {
                let list: Vec<String> = causes
                    .iter()
                    .map(|c| {
                        if c.field.is_empty() {
                            c.message.clone()
                        } else {
                            format!("{}: {}", c.field, c.message)
                        }
                    })
                    .collect();
                let kind_name = if group.is_empty() {
                    kind.clone()
                } else {
                    format!("{kind}.{group}")
                };
                if list.len() == 1 {
                    format!("{} \"{}\" is invalid: {}", kind_name, name, list[0])
                } else {
                    format!(
                        "{} \"{}\" is invalid: [{}]",
                        kind_name,
                        name,
                        list.join(", ")
                    )
                }
            }
            other => other.to_string(),
        }
    }

    /// The `Status` object for this error.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            ApiError::NotFound { group, kind, name }
            | ApiError::AlreadyExists { group, kind, name }
            | ApiError::Conflict {
                group, kind, name, ..
            }
            | ApiError::Forbidden {
                group, kind, name, ..
            } => Some(json!({"name": name, "group": group, "kind": kind})),
            ApiError::Invalid {
                group,
                kind,
                name,
                causes,
            } => Some(json!({
                "name": name, "group": group, "kind": kind,
                "causes": causes.iter().map(|c| json!({
                    "reason": c.reason, "message": c.message, "field": c.field
                })).collect::<Vec<_>>(),
            })),
            ApiError::ApplyConflict { causes, .. } => Some(json!({
                "causes": causes.iter().map(|c| json!({
                    "reason": c.reason, "message": c.message, "field": c.field
                })).collect::<Vec<_>>(),
            })),
            ApiError::Unavailable { .. } | ApiError::Timeout { .. } => {
                Some(json!({"retryAfterSeconds": 1}))
            }
            ApiError::TooLargeResourceVersion { .. } => Some(json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1,
            })),
            _ => None,
        };
        if let Some(mut d) = details {
            if let Some(obj) = d.as_object_mut() {
                obj.retain(|_, v| !(v.is_string() && v.as_str() == Some("")));
            }
            status["details"] = d;
        }
        status
    }

    /// Map a store error for the object (group, kind, name).
    pub fn from_store(err: StoreError, group: &str, kind: &str, name: &str) -> Self {
        match err {
            StoreError::AlreadyExists(_) => ApiError::AlreadyExists {
                group: group.into(), kind: kind.into(), name: name.into(),
            },
            StoreError::NotFound(_) => ApiError::NotFound {
                group: group.into(), kind: kind.into(), name: name.into(),
            },
            StoreError::Conflict { .. } => ApiError::Conflict {
                group: group.into(),
                kind: kind.into(),
                name: name.into(),
                message: "the object has been modified; please apply your changes to the latest version and try again".into(),
            },
            StoreError::Compacted { requested, compacted } => ApiError::Gone {
                message: format!("too old resource version: {requested} ({compacted})"),
            },
            StoreError::Unavailable(m) => ApiError::Unavailable {
                message: format!("storage is unavailable: {m}"),
            },
            StoreError::Timeout(m) => ApiError::Timeout {
                message: format!("Timeout: request did not complete within the allowed duration ({m})"),
            },
            StoreError::Internal(m) => ApiError::Internal { message: m },
        }
    }
}

/// Plural-lowercase qualified resource like `deployments.apps`, as Kubernetes names it in messages.
fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::from_store(err, "", "", "")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if code.is_server_error() {
            tracing::warn!(code = code.as_u16(), "{}", self.message());
        }
        let (content_type, body) = crate::codec::encode_response(&self.status());
        (
            code,
            [(axum::http::header::CONTENT_TYPE, content_type)],
            body,
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_kubernetes_codes() {
        let timeout = ApiError::from(StoreError::Timeout(
            "etcd did not answer update within 5s; the write may still be applied".into(),
        ));
        assert_eq!((timeout.code(), timeout.reason()), (504, "Timeout"));
        assert_eq!(timeout.status()["details"]["retryAfterSeconds"], 1);
        let down = ApiError::from(StoreError::Unavailable("connection refused".into()));
        assert_eq!((down.code(), down.reason()), (503, "ServiceUnavailable"));
        let path = ApiError::NotFoundPath.status();
        assert_eq!(path["code"], 404);
        assert_eq!(
            path["message"],
            "the server could not find the requested resource"
        );
    }
}
