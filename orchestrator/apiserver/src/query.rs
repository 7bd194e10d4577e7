//! Query parameters of API requests and content negotiation.

use std::collections::HashMap;

use crate::error::{ApiError, Result};

/// The query parameters the API understands (all optional).
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub watch: bool,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<i64>,
    pub continue_token: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_watch_bookmarks: bool,
    /// `sendInitialEvents` when given (its absence has a meaning of its own: watch-list).
    pub send_initial_events: Option<bool>,
    pub field_validation: FieldValidation,
    pub dry_run: bool,
    /// A `dryRun` value other than `All` (refused by writes, as Kubernetes does).
    pub invalid_dry_run: Option<String>,
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub include_object: Option<String>,
    pub field_manager: Option<String>,
    /// `force`: an apply takes the fields other managers own.
    pub force: bool,
    /// The request's User-Agent (empty when it sent none); None for the server's own writes.
    pub user_agent: Option<String>,
    pub container: Option<String>,
    pub tail_lines: Option<i64>,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub limit_bytes: Option<i64>,
    pub since_seconds: Option<i64>,
    /// RFC 3339, as given.
    pub since_time: Option<String>,
}

/// Longest `fieldManager` accepted (as Kubernetes).
const MAX_FIELD_MANAGER: usize = 128;

/// How unknown fields in a request body are treated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    /// Unknown fields are dropped and reported in a `Warning` header (the server default).
    #[default]
    Warn,
    /// Unknown fields fail the request with 400.
    Strict,
}

/// A boolean query parameter as Kubernetes converts it: `false` and `0` (in any case) are
/// false, anything else (`True`, `yes`, an empty value) is true.
fn parse_bool(v: &str) -> bool {
    !matches!(v.to_ascii_lowercase().as_str(), "false" | "0")
}

fn parse_int<T: std::str::FromStr>(name: &str, v: &str) -> Result<T> {
    v.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "invalid value {v:?} for query parameter {name}: must be an integer"
        ))
    })
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query> {
        let mut q = Query::default();
        let Some(raw) = raw else { return Ok(q) };
        let pairs: HashMap<String, String> = form_pairs(raw);
        for (k, v) in pairs {
            match k.as_str() {
                "watch" => q.watch = parse_bool(&v),
                "resourceVersion" => q.resource_version = Some(v).filter(|s| !s.is_empty()),
                "resourceVersionMatch" => {
                    q.resource_version_match = Some(v).filter(|s| !s.is_empty())
                }
                "labelSelector" => q.label_selector = Some(v).filter(|s| !s.is_empty()),
                "fieldSelector" => q.field_selector = Some(v).filter(|s| !s.is_empty()),
                "limit" => q.limit = Some(parse_int(&k, &v)?).filter(|l: &i64| *l > 0),
                "continue" => q.continue_token = Some(v).filter(|s| !s.is_empty()),
                "timeoutSeconds" => q.timeout_seconds = Some(parse_int(&k, &v)?),
                "allowWatchBookmarks" => q.allow_watch_bookmarks = parse_bool(&v),
                "sendInitialEvents" => q.send_initial_events = Some(parse_bool(&v)),
                "fieldValidation" => {
                    q.field_validation = match v.as_str() {
                        "Strict" => FieldValidation::Strict,
                        "Warn" | "" => FieldValidation::Warn,
                        "Ignore" => FieldValidation::Ignore,
                        _ => {
                            return Err(ApiError::bad_request(format!(
                        "fieldValidation: invalid value {v:?}: must be one of Ignore, Warn, Strict"
                    )))
                        }
                    }
                }
                "dryRun" if v == "All" => q.dry_run = true,
                "dryRun" => q.invalid_dry_run = Some(v),
                "propagationPolicy" => q.propagation_policy = Some(v).filter(|s| !s.is_empty()),
                "gracePeriodSeconds" => q.grace_period_seconds = Some(parse_int(&k, &v)?),
                "includeObject" => q.include_object = Some(v),
                "fieldManager" => q.field_manager = Some(v).filter(|s| !s.is_empty()),
                "force" => q.force = parse_bool(&v),
                "container" => q.container = Some(v).filter(|s| !s.is_empty()),
                "tailLines" => q.tail_lines = Some(parse_int(&k, &v)?),
                "follow" => q.follow = parse_bool(&v),
                "previous" => q.previous = parse_bool(&v),
                "timestamps" => q.timestamps = parse_bool(&v),
                "limitBytes" => q.limit_bytes = Some(parse_int(&k, &v)?),
                "sinceSeconds" => q.since_seconds = Some(parse_int(&k, &v)?),
                "sinceTime" => q.since_time = Some(v).filter(|s| !s.is_empty()),
                _ => {}
            }
        }
        Ok(q)
    }

    /// Refuse a write whose options are invalid (`options_kind`: `CreateOptions`,
    /// `UpdateOptions`, `PatchOptions`, `DeleteOptions`): 422 Invalid as Kubernetes answers,
    /// before anything is stored.
    pub fn check_write_options(&self, options_kind: &str) -> Result<()> {
        let invalid = |reason: &str, field: &str, message: String| ApiError::Invalid {
            group: "meta.k8s.io".into(),
            kind: options_kind.into(),
            name: String::new(),
            causes: vec![crate::error::Cause {
                reason: reason.into(),
                message,
                field: field.into(),
            }],
        };
        if let Some(value) = &self.invalid_dry_run {
            let message = format!("Unsupported value: {value:?}: supported values: \"All\"");
            return Err(invalid("FieldValueNotSupported", "dryRun", message));
        }
        if let Some(manager) = &self.field_manager {
            if manager.len() > MAX_FIELD_MANAGER {
                let message = format!("Too long: may not be more than {MAX_FIELD_MANAGER} bytes");
                return Err(invalid("FieldValueTooLong", "fieldManager", message));
            }
            if manager.chars().any(|c| c.is_control()) {
                let message = format!("Invalid value: {manager:?}: must be printable");
                return Err(invalid("FieldValueInvalid", "fieldManager", message));
            }
        }
        Ok(())
    }

    /// Who a write's fields belong to: `fieldManager`, else the User-Agent's product
    /// (`kubectl`), `unknown` for a request without one, `kube-apiserver` for the server's own.
    pub fn manager(&self) -> String {
        match (&self.field_manager, &self.user_agent) {
            (Some(m), _) => m.clone(),
            (None, Some(agent)) => crate::managed_fields::manager_from_user_agent(Some(agent)),
            (None, None) => "kube-apiserver".into(),
        }
    }
}

/// Decode `application/x-www-form-urlencoded` pairs (last one wins).
pub fn form_pairs(raw: &str) -> HashMap<String, String> {
    raw.split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What representation the client asked for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    Object,
    Table,
    /// `PartialObjectMetadata(List)`: metadata only (controllers that need no more, like the
    /// garbage collector).
    Metadata,
}

/// Pick the representation: a `Table` when the client lists `as=Table` in meta.k8s.io/v1 first.
pub fn negotiate(accept: Option<&str>) -> Representation {
    let Some(accept) = accept else {
        return Representation::Object;
    };
    for part in accept.split(',') {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        let meta_v1 = params.contains(&"v=v1") && params.contains(&"g=meta.k8s.io");
        if params.contains(&"as=Table") {
            if meta_v1 {
                return Representation::Table;
            }
            continue;
        }
        if params.contains(&"as=PartialObjectMetadata")
            || params.contains(&"as=PartialObjectMetadataList")
        {
            if meta_v1 {
                return Representation::Metadata;
            }
            continue;
        }
        if params.first().is_some_and(|m| {
            m.starts_with("application/json") || *m == "*/*" || m.starts_with("application/yaml")
        }) {
            return Representation::Object;
        }
    }
    Representation::Object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_query() {
        let q = Query::parse(Some("watch=true&resourceVersion=12&labelSelector=app%3Dnginx%2Ctier+in+(a)&limit=500&fieldValidation=Strict")).unwrap();
        assert!(q.watch);
        assert_eq!(q.resource_version.as_deref(), Some("12"));
        assert_eq!(q.label_selector.as_deref(), Some("app=nginx,tier in (a)"));
        assert_eq!(q.limit, Some(500));
        assert_eq!(q.field_validation, FieldValidation::Strict);
        assert!(Query::parse(Some("limit=abc")).is_err());
        assert!(Query::parse(Some("fieldValidation=Loud")).is_err());
    }

    #[test]
    fn booleans_are_true_unless_false_or_zero() {
        for yes in ["watch=true", "watch=True", "watch=1", "watch=", "watch=yes"] {
            assert!(Query::parse(Some(yes)).unwrap().watch, "{yes}");
        }
        for no in ["watch=false", "watch=False", "watch=FALSE", "watch=0"] {
            assert!(!Query::parse(Some(no)).unwrap().watch, "{no}");
        }
        let q = Query::parse(Some("allowWatchBookmarks=True&sendInitialEvents=False")).unwrap();
        assert!(q.allow_watch_bookmarks);
        assert_eq!(q.send_initial_events, Some(false));
        assert_eq!(Query::parse(None).unwrap().send_initial_events, None);
    }

    #[test]
    fn only_all_is_a_dry_run() {
        let q = Query::parse(Some("dryRun=All")).unwrap();
        assert!(q.dry_run);
        q.check_write_options("CreateOptions").unwrap();
        for bad in ["dryRun=all", "dryRun=true", "dryRun=", "dryRun=Al"] {
            let q = Query::parse(Some(bad)).unwrap();
            assert!(!q.dry_run, "{bad}");
            let err = q.check_write_options("PatchOptions").unwrap_err();
            assert_eq!(err.code(), 422, "{bad}");
            assert!(
                err.message().contains("dryRun: Unsupported value"),
                "{}",
                err.message()
            );
            assert!(
                err.message().starts_with("PatchOptions.meta.k8s.io"),
                "{}",
                err.message()
            );
        }
    }

    #[test]
    fn negotiates_table() {
        assert_eq!(negotiate(Some("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")), Representation::Table);
        assert_eq!(negotiate(Some("application/json")), Representation::Object);
        assert_eq!(negotiate(None), Representation::Object);
        assert_eq!(
            negotiate(Some(
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
            )),
            Representation::Metadata
        );
        assert_eq!(
            negotiate(Some(
                "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
            )),
            Representation::Metadata
        );
        assert_eq!(
            negotiate(Some("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1beta1,application/json")),
            Representation::Object
        );
    }
}
