//! The CLI's error type and the kubectl-style rendering of errors.

use kube::core::Status;

/// Result alias used throughout the CLI library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can make a `bpfk` command fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server could not be reached at all (connection refused, DNS, timeout...).
    #[error("cannot reach the API server at {url}: {reason}")]
    Unreachable { url: String, reason: String },

    /// The API server answered with an error `Status`.
    #[error("{}", format_status(.0))]
    Api(Box<Status>),

    /// The resource type given on the command line is not served by the server.
    #[error("the server doesn't have a resource type \"{0}\"")]
    UnknownResource(String),

    /// A manifest names an apiVersion/kind the server does not serve.
    #[error(
        "resource mapping not found for name: \"{name}\" namespace: \"{namespace}\" from \"{source_name}\": no matches for kind \"{kind}\" in version \"{api_version}\""
    )]
    NoKindMatch {
        name: String,
        namespace: String,
        source_name: String,
        kind: String,
        api_version: String,
    },

    /// A manifest could not be parsed or lacks a required field.
    #[error("{0}")]
    Manifest(String),

    /// Reading a file or stdin failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// The client configuration (kubeconfig / --server) is unusable.
    #[error("{0}")]
    Config(String),

    /// The command line is well-formed for clap but not meaningful.
    #[error("{0}")]
    Usage(String),

    /// The server answered something that is not what the API promises.
    #[error("unexpected response from the server: {0}")]
    Decode(String),

    /// Some per-object operations failed; each error has already been printed.
    #[error("{0} operation(s) failed")]
    Reported(usize),
}

impl Error {
    /// The line(s) to print on stderr for this error, exactly like kubectl would
    /// (`Error from server (NotFound): ...`, `The Deployment "x" is invalid: ...`,
    /// `error: ...`). Empty for [`Error::Reported`].
    pub fn report(&self) -> String {
        match self {
            Error::Reported(_) => String::new(),
            Error::Api(_) => self.to_string(),
            other => format!("error: {other}"),
        }
    }

    /// True when the server answered 404 with a structured `Status`.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api(s) if s.code == 404 && s.reason == "NotFound")
    }

    /// The HTTP code of an API error, if this is one.
    pub fn api_code(&self) -> Option<u16> {
        match self {
            Error::Api(s) => Some(s.code),
            _ => None,
        }
    }
}

/// Render a failure `Status` like kubectl's `cmdutil.CheckErr` does.
pub fn format_status(s: &Status) -> String {
    if s.reason == "Invalid" {
        let Some(details) = &s.details else {
            return if s.message.is_empty() {
                "The request is invalid".to_string()
            } else {
                format!("The request is invalid: {}", s.message)
            };
        };
        let head = if !details.kind.is_empty() || !details.name.is_empty() {
            format!("The {} {:?} is invalid", details.kind, details.name)
        } else if !details.group.is_empty() {
            format!("The {} {:?} is invalid", details.group, details.name)
        } else {
            "The request is invalid".to_string()
        };
        let causes: Vec<String> = details
            .causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        return match causes.len() {
            0 => head,
            1 => format!("{head}: {}", causes[0]),
            _ => format!("{head}: \n* {}", causes.join("\n* ")),
        };
    }
    let message = if s.message.is_empty() {
        default_message(s.code)
    } else {
        s.message.clone()
    };
    if s.reason.is_empty() || s.reason == "Unknown" {
        format!("Error from server: {message}")
    } else {
        format!("Error from server ({}): {message}", s.reason)
    }
}

/// The reason kubectl shows for a bare HTTP code (when the body was not a `Status`).
pub fn reason_for_code(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Gone",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

fn default_message(code: u16) -> String {
    match code {
        404 => "the server could not find the requested resource".to_string(),
        405 => "the server does not allow this method on the requested resource".to_string(),
        503 => "the server is currently unable to handle the request".to_string(),
        0 => "unknown error".to_string(),
        c => format!("an error on the server (HTTP {c}) has prevented the request from succeeding"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(v: serde_json::Value) -> Status {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn not_found_like_kubectl() {
        let e = Error::Api(Box::new(status(json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
            "reason": "NotFound", "message": "pods \"x\" not found",
            "details": {"name": "x", "kind": "pods"}
        }))));
        assert_eq!(
            e.report(),
            "Error from server (NotFound): pods \"x\" not found"
        );
        assert!(e.is_not_found());
    }

    #[test]
    fn invalid_with_one_cause() {
        let s = status(json!({
            "status": "Failure", "code": 422, "reason": "Invalid",
            "message": "Deployment.apps \"x\" is invalid: ...",
            "details": {"name": "x", "group": "apps", "kind": "Deployment", "causes": [{
                "reason": "FieldValueInvalid",
                "message": "Invalid value: map[string]string{\"app\":\"y\"}: `selector` does not match template `labels`",
                "field": "spec.template.metadata.labels"
            }]}
        }));
        assert_eq!(
            format_status(&s),
            "The Deployment \"x\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"y\"}: `selector` does not match template `labels`"
        );
    }

    #[test]
    fn invalid_with_several_causes_is_multiline() {
        let s = status(json!({
            "code": 422, "reason": "Invalid",
            "details": {"name": "p", "kind": "Pod", "causes": [
                {"field": "spec.containers[0].image", "message": "Required value"},
                {"field": "metadata.name", "message": "Invalid value: \"A\""}
            ]}
        }));
        assert_eq!(
            format_status(&s),
            "The Pod \"p\" is invalid: \n* spec.containers[0].image: Required value\n* metadata.name: Invalid value: \"A\""
        );
    }

    #[test]
    fn invalid_without_details_uses_message() {
        let s = status(json!({"code": 422, "reason": "Invalid", "message": "bad"}));
        assert_eq!(format_status(&s), "The request is invalid: bad");
    }

    #[test]
    fn other_errors_get_prefix() {
        assert_eq!(
            Error::UnknownResource("foo".into()).report(),
            "error: the server doesn't have a resource type \"foo\""
        );
        assert_eq!(Error::Reported(2).report(), "");
        let s = status(json!({"code": 503}));
        assert_eq!(
            format_status(&s),
            "Error from server: the server is currently unable to handle the request"
        );
    }
}
