//! Validation of objects, with Kubernetes field paths, causes and messages.
//!
//! [`validate_create`], [`validate_update`] and [`validate_status_update`] return every
//! [`FieldError`] found (empty = valid). Each error carries the Kubernetes field path
//! (`spec.containers[0].image`), a [`FieldErrorKind`] whose [`FieldError::reason`] is the
//! `metav1.CauseType` the API server puts in `Status.details.causes[].reason`, and renders as
//! Kubernetes does (`spec.containers[0].image: Required value`).
//!
//! Objects are expected to have been defaulted ([`crate::defaults::apply_defaults`]) first, as
//! Kubernetes validates defaulted objects.

use std::fmt;

use serde_json::{Map, Value};

use crate::names;

use crate::registry::ResourceInfo;

/// The kind of a validation error (Kubernetes' `field.ErrorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// A required field is missing.
    Required,
    /// A value is malformed or out of range.
    Invalid,
    /// A value is not one of the supported values.
    NotSupported,
    /// A value appears twice where it must be unique.
    Duplicate,
    /// A field may not be set (or changed).
    Forbidden,
    /// A value is too long.
    TooLong,
    /// A value refers to something that does not exist.
    NotFound,
}

impl FieldErrorKind {
    /// The `metav1.CauseType` string (`FieldValueRequired`, ...).
    pub fn reason(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::NotFound => "FieldValueNotFound",
        }
    }

    /// The human wording Kubernetes uses (`Required value`, `Invalid value`, ...).
    pub fn text(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::NotFound => "Not found",
        }
    }
}

/// One validation error.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Field path, e.g. `spec.containers[0].image`.
    pub field: String,
    /// What is wrong.
    pub kind: FieldErrorKind,
    /// The offending value, when the message shows it.
    pub bad_value: Option<Value>,
    /// Explanation (may be empty).
    pub detail: String,
}

impl FieldError {
    fn new(
        field: &Path,
        kind: FieldErrorKind,
        bad_value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            field: field.0.clone(),
            kind,
            bad_value,
            detail: detail.into(),
        }
    }

    /// `Required value` at `field`.
    pub fn required(field: &Path, detail: impl Into<String>) -> Self {
        Self::new(field, FieldErrorKind::Required, None, detail)
    }

    /// `Invalid value: <value>: <detail>` at `field`.
    pub fn invalid(field: &Path, value: Value, detail: impl Into<String>) -> Self {
        Self::new(field, FieldErrorKind::Invalid, Some(value), detail)
    }

    /// `Unsupported value: <value>: supported values: "a", "b"` at `field`.
    pub fn not_supported(field: &Path, value: Value, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Self::new(
            field,
            FieldErrorKind::NotSupported,
            Some(value),
            format!("supported values: {}", list.join(", ")),
        )
    }

    /// `Duplicate value: <value>` at `field`.
    pub fn duplicate(field: &Path, value: Value) -> Self {
        Self::new(field, FieldErrorKind::Duplicate, Some(value), "")
    }

    /// `Forbidden: <detail>` at `field`.
    pub fn forbidden(field: &Path, detail: impl Into<String>) -> Self {
        Self::new(field, FieldErrorKind::Forbidden, None, detail)
    }

    /// `Too long: may not be more than <max> bytes` at `field`.
    pub fn too_long(field: &Path, max: usize) -> Self {
        Self::new(
            field,
            FieldErrorKind::TooLong,
            None,
            format!("may not be more than {max} bytes"),
        )
    }

    /// `Not found: <value>` at `field`.
    pub fn not_found(field: &Path, value: Value) -> Self {
        Self::new(field, FieldErrorKind::NotFound, Some(value), "")
    }

    /// The `metav1.CauseType` (`FieldValueRequired`, `FieldValueInvalid`, ...).
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }

    /// The message without the field path (Kubernetes' `ErrorBody`, what goes into
    /// `Status.details.causes[].message`), e.g. `Invalid value: "Foo": a lowercase ...`.
    pub fn message_without_field(&self) -> String {
        let mut s = self.kind.text().to_string();
        if let Some(v) = &self.bad_value {
            if !matches!(
                self.kind,
                FieldErrorKind::Required | FieldErrorKind::Forbidden | FieldErrorKind::TooLong
            ) {
                s.push_str(": ");
                s.push_str(&go_value(v));
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    /// `spec.containers[0].image: Required value`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message_without_field())
    }
}

impl std::error::Error for FieldError {}

/// Renders a value the way Kubernetes' messages print Go values: strings quoted, numbers
/// bare, string maps as `map[string]string{"a":"b"}`.
fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => Value::String(s.clone()).to_string(),
        Value::Null => "null".into(),
        Value::Object(m) if m.values().all(Value::is_string) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), v))
                .collect();
            format!("map[string]string{{{}}}", items.join(", "))
        }
        Value::Array(a) if a.iter().all(Value::is_string) => {
            let items: Vec<String> = a.iter().map(|v| v.to_string()).collect();
            format!("[]string{{{}}}", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// A field path under construction (`spec.containers[0].ports[1].containerPort`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    /// A root path (`spec`, `metadata`).
    pub fn new(root: &str) -> Self {
        Self(root.to_string())
    }

    /// `self.name`.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_string())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// `self[i]`.
    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    /// `self[key]` (map entries such as `requests[cpu]`).
    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub(crate) type Errors = Vec<FieldError>;

pub(crate) fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

pub(crate) fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub(crate) fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

pub(crate) fn present(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|x| !x.is_null())
}

pub(crate) fn check_enum(errs: &mut Errors, path: &Path, v: &Value, key: &str, supported: &[&str]) {
    if let Some(val) = v.get(key).filter(|x| !x.is_null()) {
        if !val.as_str().is_some_and(|x| supported.contains(&x)) {
            errs.push(FieldError::not_supported(
                &path.child(key),
                val.clone(),
                supported,
            ));
        }
    }
}

pub(crate) fn push_msgs(errs: &mut Errors, path: &Path, value: &str, msgs: Vec<String>) {
    for m in msgs {
        errs.push(FieldError::invalid(
            path,
            Value::String(value.to_string()),
            m,
        ));
    }
}

const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// Validates `metadata` (name, generateName, namespace, labels, annotations).
fn validate_metadata(res: &ResourceInfo, obj: &Value, errs: &mut Errors) {
    let path = Path::new("metadata");
    let meta = match obj.get("metadata") {
        Some(m @ Value::Object(_)) => m,
        _ => {
            errs.push(FieldError::required(
                &path.child("name"),
                "name or generateName is required",
            ));
            return;
        }
    };
    let rule = res.strategy.name_rule();
    match s(meta, "name").filter(|n| !n.is_empty()) {
        Some(name) => push_msgs(errs, &path.child("name"), name, rule(name)),
        None => {
            if s(meta, "generateName").is_none_or(str::is_empty) {
                errs.push(FieldError::required(
                    &path.child("name"),
                    "name or generateName is required",
                ));
            }
        }
    }
    if let Some(gen) = s(meta, "generateName").filter(|g| !g.is_empty()) {
        // A generated name is the prefix plus random characters: validate the prefix with a
        // trailing '-' tolerated.
        let prefix = gen.strip_suffix('-').unwrap_or(gen);
        push_msgs(errs, &path.child("generateName"), gen, rule(prefix));
    }
    let ns = s(meta, "namespace").filter(|n| !n.is_empty());
    if res.namespaced {
        match ns {
            Some(ns) => push_msgs(errs, &path.child("namespace"), ns, names::dns1123_label(ns)),
            None => errs.push(FieldError::required(&path.child("namespace"), "")),
        }
    } else if ns.is_some() {
        errs.push(FieldError::forbidden(
            &path.child("namespace"),
            "not allowed on this type",
        ));
    }
    validate_labels(meta.get("labels"), &path.child("labels"), errs);
    validate_annotations(meta.get("annotations"), &path.child("annotations"), errs);
    validate_owner_references(meta, &path.child("ownerReferences"), errs);
    for f in arr(meta, "finalizers") {
        let name = f.as_str().unwrap_or_default();
        push_msgs(
            errs,
            &path.child("finalizers"),
            name,
            names::qualified_name(name),
        );
    }
}

fn validate_owner_references(meta: &Value, path: &Path, errs: &mut Errors) {
    let refs = arr(meta, "ownerReferences");
    for r in refs {
        for (key, what) in [
            ("apiVersion", "version"),
            ("kind", "kind"),
            ("name", "name"),
            ("uid", "uid"),
        ] {
            let v = s(r, key).unwrap_or("");
            if v.is_empty() {
                errs.push(FieldError::invalid(
                    &path.child(key),
                    Value::String(String::new()),
                    format!("{what} must not be empty"),
                ));
            }
        }
    }
    let controllers = refs
        .iter()
        .filter(|r| r.get("controller") == Some(&Value::Bool(true)))
        .count();
    if controllers > 1 {
        errs.push(FieldError::invalid(
            path,
            Value::Array(refs.to_vec()),
            "Only one reference can have Controller set to true",
        ));
    }
}

/// Validates a label map at `path` (keys are qualified names, values label values).
pub fn validate_labels(labels: Option<&Value>, path: &Path, errs: &mut Vec<FieldError>) {
    let Some(labels) = labels.filter(|l| !l.is_null()) else {
        return;
    };
    let Some(map) = labels.as_object() else {
        errs.push(FieldError::invalid(
            path,
            labels.clone(),
            "must be a map of string keys to string values",
        ));
        return;
    };
    for (k, v) in map {
        push_msgs(errs, path, k, names::qualified_name(k));
        match v.as_str() {
            Some(v) => push_msgs(errs, path, v, names::label_value(v)),
            None => errs.push(FieldError::invalid(
                &path.key(k),
                v.clone(),
                "must be a string",
            )),
        }
    }
}

fn validate_annotations(ann: Option<&Value>, path: &Path, errs: &mut Errors) {
    let Some(map) = ann.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0;
    for (k, v) in map {
        push_msgs(
            errs,
            path,
            k,
            names::qualified_name(&k.to_ascii_lowercase()),
        );
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > ANNOTATIONS_MAX_BYTES {
        errs.push(FieldError::too_long(path, ANNOTATIONS_MAX_BYTES));
    }
}

/// Validates a new object of resource `res`.
pub fn validate_create(res: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !obj.is_object() {
        errs.push(FieldError::invalid(
            &Path::new(""),
            obj.clone(),
            "must be a JSON object",
        ));
        return errs;
    }
    validate_metadata(res, obj, &mut errs);
    res.strategy.validate(obj, &mut errs);
    errs
}

/// Validates `new` replacing `old`: everything [`validate_create`] checks plus immutable
/// fields (metadata name/namespace/uid, a Deployment's or ReplicaSet's `spec.selector`, a
/// Service's `spec.clusterIP` once set, a Pod's spec except images and a few mutable fields,
/// a Node's `spec.podCIDR` once set, an EndpointSlice's `addressType`).
///
/// A Pod whose `spec.nodeName` was empty may get one (that is how the server applies a
/// `pods/binding`); any other pod spec change outside the mutable fields is forbidden.
///
/// A Service update that leaves `spec.clusterIP` empty is not reported: as in Kubernetes, the
/// server is expected to carry the allocated address over before storing.
pub fn validate_update(res: &ResourceInfo, new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_create(res, new);
    validate_metadata_update(new, old, &mut errs);
    res.strategy.validate_update(new, old, &mut errs);
    errs
}

/// Validates `new` replacing `old` through subresource `sub` (`status`, `approval`):
/// everything [`validate_update`] checks, and what the kind forbids writes through `sub`.
pub fn validate_subresource_update(
    res: &ResourceInfo,
    sub: &str,
    new: &Value,
    old: &Value,
) -> Vec<FieldError> {
    let mut errs = validate_update(res, new, old);
    res.strategy
        .validate_subresource_update(sub, new, old, &mut errs);
    errs
}

/// Validates a write to the `status` subresource: metadata immutables, and the status fields
/// that have a fixed set of values or a range.
pub fn validate_status_update(res: &ResourceInfo, new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_metadata_update(new, old, &mut errs);
    let status = new.get("status").unwrap_or(&Value::Null);
    res.strategy.validate_status(status, &mut errs);
    errs
}

fn validate_metadata_update(new: &Value, old: &Value, errs: &mut Errors) {
    let path = Path::new("metadata");
    for key in ["name", "namespace", "uid"] {
        let o = old
            .pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let n = new
            .pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_str)
            .unwrap_or("");
        // An empty uid in the new object means "keep" (the server carries it over).
        if key == "uid" && n.is_empty() {
            continue;
        }
        if o != n {
            errs.push(FieldError::invalid(
                &path.child(key),
                Value::String(n.into()),
                "field is immutable",
            ));
        }
    }
}

pub(crate) const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

pub(crate) fn validate_port_number(
    errs: &mut Errors,
    path: &Path,
    v: &Value,
    key: &str,
    required: bool,
) {
    match v.get(key).filter(|x| !x.is_null()) {
        None if required => errs.push(FieldError::required(&path.child(key), "")),
        None => {}
        Some(p) => match p.as_i64() {
            Some(n) => {
                for m in names::port_number(n) {
                    errs.push(FieldError::invalid(&path.child(key), p.clone(), m));
                }
            }
            None => errs.push(FieldError::invalid(
                &path.child(key),
                p.clone(),
                "must be an integer",
            )),
        },
    }
}

/// Validates `spec.selector` as a `metav1.LabelSelector` and returns it when usable.
pub(crate) fn validate_label_selector(sel: &Value, path: &Path, errs: &mut Errors) {
    validate_labels(sel.get("matchLabels"), &path.child("matchLabels"), errs);
    for (i, e) in arr(sel, "matchExpressions").iter().enumerate() {
        let ep = path.child("matchExpressions").index(i);
        match s(e, "key") {
            Some(k) if !k.is_empty() => {
                push_msgs(errs, &ep.child("key"), k, names::qualified_name(k))
            }
            _ => errs.push(FieldError::required(&ep.child("key"), "")),
        }
        let values = arr(e, "values");
        match s(e, "operator") {
            Some("In") | Some("NotIn") => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        &ep.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            Some("Exists") | Some("DoesNotExist") => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        &ep.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                &ep.child("operator"),
                Value::String(other.unwrap_or("").into()),
                "not a valid selector operator",
            )),
        }
        for (j, v) in values.iter().enumerate() {
            if let Some(v) = v.as_str() {
                push_msgs(errs, &ep.child("values").index(j), v, names::label_value(v));
            }
        }
    }
}

pub(crate) fn is_empty_selector(sel: &Value) -> bool {
    sel.get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty)
        && arr(sel, "matchExpressions").is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::apply_defaults;
    use crate::kinds::test_support::{check, fields, nginx_deployment, pod};
    use crate::registry::by_kind;
    use serde_json::json;

    #[test]
    fn valid_manifests_pass() {
        assert_eq!(
            check(
                "Pod",
                pod(
                    json!({"containers": [{"name": "nginx", "image": "nginx:1.14.2",
                                                   "ports": [{"containerPort": 80}]}]})
                )
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            check("Deployment", nginx_deployment()),
            Vec::<String>::new()
        );
        assert_eq!(
            check(
                "Service",
                json!({"metadata": {"name": "web", "namespace": "default"},
                "spec": {"selector": {"app": "nginx"}, "ports": [{"port": 80}]}})
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            check("Namespace", json!({"metadata": {"name": "team-a"}})),
            Vec::<String>::new()
        );
        assert_eq!(
            check(
                "Node",
                json!({"metadata": {"name": "node-1.lab"},
            "spec": {"podCIDR": "10.244.1.0/24"}})
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn messages_and_reasons() {
        let e = FieldError::required(
            &Path::new("spec")
                .child("containers")
                .index(0)
                .child("image"),
            "",
        );
        assert_eq!(e.to_string(), "spec.containers[0].image: Required value");
        assert_eq!(e.reason(), "FieldValueRequired");
        let e = FieldError::not_supported(
            &Path::new("spec.restartPolicy"),
            json!("Sometimes"),
            &["Always", "OnFailure", "Never"],
        );
        assert_eq!(
            e.to_string(),
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
        );
        assert_eq!(e.reason(), "FieldValueNotSupported");
        assert_eq!(
            FieldError::duplicate(&Path::new("a"), json!("x")).reason(),
            "FieldValueDuplicate"
        );
        assert_eq!(
            FieldError::forbidden(&Path::new("a"), "no").to_string(),
            "a: Forbidden: no"
        );
        assert_eq!(
            FieldError::too_long(&Path::new("a"), 5).reason(),
            "FieldValueTooLong"
        );
        assert_eq!(
            FieldError::invalid(&Path::new("a"), json!(0), "x").reason(),
            "FieldValueInvalid"
        );
        assert_eq!(
            FieldError::invalid(&Path::new("a"), json!(70000), "bad").message_without_field(),
            "Invalid value: 70000: bad"
        );
        assert_eq!(
            Path::new("r").child("requests").key("cpu").as_str(),
            "r.requests[cpu]"
        );
    }

    #[test]
    fn metadata_names() {
        let mut p = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        p["metadata"]["name"] = json!("Nginx_1");
        let errs = check("Pod", p);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with(
                "metadata.name: Invalid value: \"Nginx_1\": a lowercase RFC 1123 subdomain"
            ),
            "{errs:?}"
        );
        let mut p = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        p["metadata"] = json!({"namespace": "default"});
        assert_eq!(
            check("Pod", p.clone()),
            ["metadata.name: Required value: name or generateName is required"]
        );
        p["metadata"]["generateName"] = json!("web-");
        assert!(check("Pod", p.clone()).is_empty());
        p["metadata"]["generateName"] = json!("Web-");
        assert_eq!(
            fields("Pod", p),
            [("metadata.generateName".to_string(), "FieldValueInvalid")]
        );
        // services are DNS-1035 labels: no dots, start with a letter
        assert_eq!(
            fields(
                "Service",
                json!({"metadata": {"name": "1web", "namespace": "default"},
                "spec": {"ports": [{"port": 80}]}})
            ),
            [("metadata.name".to_string(), "FieldValueInvalid")]
        );
        assert_eq!(
            fields("Namespace", json!({"metadata": {"name": "a.b"}})),
            [("metadata.name".to_string(), "FieldValueInvalid")]
        );
        // namespace required for namespaced kinds, forbidden for cluster-scoped ones
        assert_eq!(
            fields(
                "Pod",
                json!({"metadata": {"name": "a"}, "spec": {"containers": [{"name": "a", "image": "x"}]}})
            ),
            [("metadata.namespace".to_string(), "FieldValueRequired")]
        );
        assert_eq!(
            fields(
                "Node",
                json!({"metadata": {"name": "n", "namespace": "default"}})
            ),
            [("metadata.namespace".to_string(), "FieldValueForbidden")]
        );
    }

    #[test]
    fn labels_and_annotations() {
        let mut d = nginx_deployment();
        d["metadata"]["labels"] = json!({"-bad": "ok", "good": "bad value", "example.com/x": ""});
        let errs = check("Deployment", d);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("metadata.labels: Invalid value: \"-bad\": name part must consist")
        );
        assert!(errs[1]
            .starts_with("metadata.labels: Invalid value: \"bad value\": a valid label must"));
        let mut d = nginx_deployment();
        d["metadata"]["annotations"] = json!({"big": "x".repeat(300 * 1024)});
        assert_eq!(
            check("Deployment", d),
            ["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
    }

    #[test]
    fn owner_references_and_finalizers() {
        let mut p = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        p["metadata"]["ownerReferences"] = json!([
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": true},
            {"apiVersion": "", "kind": "ReplicaSet", "name": "rs2", "uid": "u2", "controller": true}
        ]);
        p["metadata"]["finalizers"] = json!(["example.com/cleanup", "bad finalizer"]);
        let got = fields("Pod", p);
        assert_eq!(
            got,
            [
                (
                    "metadata.ownerReferences.apiVersion".to_string(),
                    "FieldValueInvalid"
                ),
                ("metadata.ownerReferences".to_string(), "FieldValueInvalid"),
                ("metadata.finalizers".to_string(), "FieldValueInvalid"),
            ]
        );
    }

    #[test]
    fn other_kinds() {
        assert_eq!(
            fields(
                "EndpointSlice",
                json!({"metadata": {"name": "web-abc", "namespace": "default"},
                "addressType": "IPv5", "endpoints": [{"addresses": []}], "ports": [{"port": 0}]})
            ),
            [
                ("addressType".to_string(), "FieldValueNotSupported"),
                ("endpoints[0].addresses".to_string(), "FieldValueRequired"),
                ("ports[0].port".to_string(), "FieldValueInvalid"),
            ]
        );
        assert_eq!(
            fields(
                "EndpointSlice",
                json!({"metadata": {"name": "e", "namespace": "default"}})
            ),
            [("addressType".to_string(), "FieldValueRequired")]
        );
        assert_eq!(
            fields(
                "Event",
                json!({"metadata": {"name": "e", "namespace": "default"}, "type": "Bad"})
            ),
            [
                ("involvedObject".to_string(), "FieldValueRequired"),
                ("type".to_string(), "FieldValueNotSupported")
            ]
        );
        assert!(fields("Event", json!({"metadata": {"name": "e.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "nginx", "namespace": "default"}, "type": "Normal"})).is_empty());
        assert_eq!(
            fields(
                "Lease",
                json!({"metadata": {"name": "l", "namespace": "default"}, "spec": {"leaseDurationSeconds": 0}})
            ),
            [("spec.leaseDurationSeconds".to_string(), "FieldValueInvalid")]
        );
        assert_eq!(
            fields(
                "Endpoints",
                json!({"metadata": {"name": "web", "namespace": "default"},
                "subsets": [{"addresses": [{"ip": "10.244.0.300"}], "ports": [{"port": 80, "protocol": "X"}]}]})
            ),
            [
                (
                    "subsets[0].addresses[0].ip".to_string(),
                    "FieldValueInvalid"
                ),
                (
                    "subsets[0].ports[0].protocol".to_string(),
                    "FieldValueNotSupported"
                )
            ]
        );
        assert_eq!(
            fields(
                "Binding",
                json!({"metadata": {"name": "nginx", "namespace": "default"}, "target": {"kind": "Pod"}})
            ),
            [
                ("target.name".to_string(), "FieldValueRequired"),
                ("target.kind".to_string(), "FieldValueNotSupported")
            ]
        );
        assert_eq!(
            fields(
                "Node",
                json!({"metadata": {"name": "n"}, "spec": {"podCIDR": "10.244.1.0/33",
                "taints": [{"key": "k", "effect": "Sometimes"}]}})
            ),
            [
                ("spec.podCIDR".to_string(), "FieldValueInvalid"),
                (
                    "spec.taints[0].effect".to_string(),
                    "FieldValueNotSupported"
                )
            ]
        );
    }

    #[test]
    fn immutable_fields() {
        let res = by_kind("Deployment").unwrap();
        let mut old = nginx_deployment();
        apply_defaults(res, &mut old);
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(3);
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.16.1");
        assert!(validate_update(res, &new, &old).is_empty());
        new["spec"]["selector"] = json!({"matchLabels": {"app": "web"}});
        new["spec"]["template"]["metadata"]["labels"] = json!({"app": "web"});
        let errs: Vec<String> = validate_update(res, &new, &old)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errs, ["spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\"}}: field is immutable"]);
        let mut renamed = old.clone();
        renamed["metadata"]["name"] = json!("other");
        assert_eq!(
            validate_update(res, &renamed, &old)[0].field,
            "metadata.name"
        );
        let mut uid_old = old.clone();
        uid_old["metadata"]["uid"] = json!("u1");
        let mut uid_new = old.clone();
        uid_new["metadata"]["uid"] = json!("u2");
        assert_eq!(
            validate_update(res, &uid_new, &uid_old)[0].field,
            "metadata.uid"
        );
        assert!(validate_update(res, &old, &uid_old).is_empty());

        let svc_res = by_kind("Service").unwrap();
        let mut svc = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}});
        apply_defaults(svc_res, &mut svc);
        let mut moved = svc.clone();
        moved["spec"]["clusterIP"] = json!("10.96.0.11");
        moved["spec"]["clusterIPs"] = json!(["10.96.0.11"]);
        assert_eq!(
            validate_update(svc_res, &moved, &svc)
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>(),
            ["spec.clusterIP: Invalid value: \"10.96.0.11\": field is immutable"]
        );
        let mut unset = svc.clone();
        unset["spec"].as_object_mut().unwrap().remove("clusterIP");
        assert!(validate_update(svc_res, &unset, &svc).is_empty());

        let pod_res = by_kind("Pod").unwrap();
        let mut p = pod(json!({"containers": [{"name": "a", "image": "x:1"}]}));
        apply_defaults(pod_res, &mut p);
        let mut img = p.clone();
        img["spec"]["containers"][0]["image"] = json!("x:2");
        img["spec"]["activeDeadlineSeconds"] = json!(10);
        assert!(validate_update(pod_res, &img, &p).is_empty());
        let mut restart = p.clone();
        restart["spec"]["restartPolicy"] = json!("Never");
        let errs = validate_update(pod_res, &restart, &p);
        assert_eq!(
            (errs[0].field.as_str(), errs[0].reason()),
            ("spec", "FieldValueForbidden")
        );
        // binding assigns the node once; moving the pod afterwards is forbidden
        let mut bound = p.clone();
        bound["spec"]["nodeName"] = json!("node-1");
        assert!(validate_update(pod_res, &bound, &p).is_empty());
        let mut moved = bound.clone();
        moved["spec"]["nodeName"] = json!("node-2");
        assert_eq!(validate_update(pod_res, &moved, &bound)[0].field, "spec");

        let node_res = by_kind("Node").unwrap();
        let n0 = json!({"metadata": {"name": "n"}, "spec": {}});
        let n1 = json!({"metadata": {"name": "n"}, "spec": {"podCIDR": "10.244.1.0/24"}});
        let n2 = json!({"metadata": {"name": "n"}, "spec": {"podCIDR": "10.244.2.0/24"}});
        assert!(validate_update(node_res, &n1, &n0).is_empty());
        assert_eq!(validate_update(node_res, &n2, &n1)[0].field, "spec.podCIDR");
    }

    #[test]
    fn status_updates() {
        let res = by_kind("Pod").unwrap();
        let old = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        let mut new = old.clone();
        new["status"] = json!({"phase": "Running"});
        assert!(validate_status_update(res, &new, &old).is_empty());
        new["status"] = json!({"phase": "Sleeping"});
        assert_eq!(
            validate_status_update(res, &new, &old)[0].field,
            "status.phase"
        );
        let d = by_kind("Deployment").unwrap();
        let mut dn = nginx_deployment();
        dn["status"] = json!({"replicas": -1});
        assert_eq!(
            validate_status_update(d, &dn, &nginx_deployment())[0].field,
            "status.replicas"
        );
    }
}
