//! `certificates.k8s.io/v1 CertificateSigningRequest` (cluster-scoped, `csr`), as
//! kube-apiserver's `pkg/registry/certificates` and `pkg/apis/certificates/validation`: a
//! PKCS#10 request in PEM for a signer, with the usages asked for. The requester's identity
//! (`spec.username`, `uid`, `groups`, `extra`) is the server's to set on create; the spec never
//! changes afterwards. Three write paths own three parts of the status:
//! - the main resource: nothing of the status;
//! - `approval` (`kubectl certificate approve|deny`): the conditions, the only writer that
//!   may add Approved or Denied (as kube-apiserver's approval strategy, which keeps all the
//!   requested conditions and nothing else of the request);
//! - `status` (signers): `status.certificate` and the other conditions; it may not add or
//!   remove an Approved or Denied condition (changes to one are dropped).
//!
//! No write may remove an Approved, Denied or Failed condition or change an issued
//! certificate, and a certificate is only issued to an approved request. The API server parses
//! the request itself (its signature and subject) and checks the `approve` and `sign` verbs
//! on `signers`.

use base64::Engine;

use crate::kinds::prelude::*;
use crate::validation::FieldErrorKind;

/// The API group.
pub const GROUP: &str = "certificates.k8s.io";

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: GROUP,
    version: "v1",
    kind: "CertificateSigningRequest",
    plural: "certificatesigningrequests",
    singular: "certificatesigningrequest",
    namespaced: false,
    short_names: &["csr"],
    categories: &[],
    list_kind: "CertificateSigningRequestList",
    subresources: &[status_of("CertificateSigningRequest"), APPROVAL],
    verbs: ALL_VERBS,
    strategy: &CertificateSigningRequestStrategy,
};

/// The `approval` subresource: the whole object in, its conditions kept.
const APPROVAL: Subresource = Subresource {
    name: "approval",
    ..status_of("CertificateSigningRequest")
};

/// The condition an approver adds.
pub const APPROVED: &str = "Approved";
/// The condition a refusing approver adds.
pub const DENIED: &str = "Denied";
/// The condition a signer adds when it cannot issue.
pub const FAILED: &str = "Failed";

/// The built-in signer of client certificates for the API server.
pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
/// The built-in signer of kubelets' client certificates (`system:node:<name>`).
pub const KUBE_APISERVER_CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The built-in signer of kubelets' serving certificates.
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
/// The v1beta1 default, refused by v1.
pub const LEGACY_UNKNOWN: &str = "kubernetes.io/legacy-unknown";

/// Kubernetes' `KeyUsage` values, sorted (as its "supported values" message lists them).
pub const KEY_USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

/// The spec fields the server derives from the requester.
pub const REQUESTER_FIELDS: [&str; 4] = ["username", "uid", "groups", "extra"];

/// The least `spec.expirationSeconds` (10 minutes).
const MIN_EXPIRATION_SECONDS: i64 = 600;

/// What validation shows in place of an issued certificate.
const CERTIFICATE_DATA: &str = "<certificate data>";

/// The strategy of `CertificateSigningRequest`.
pub struct CertificateSigningRequestStrategy;

impl KindStrategy for CertificateSigningRequestStrategy {
    fn name_rule(&self) -> fn(&str) -> Vec<String> {
        names::path_segment
    }

    fn validate(&self, obj: &Value, errs: &mut Errors) {
        validate_spec(spec_of(obj), &Path::new("spec"), errs);
        validate_conditions(conditions(obj), errs);
        validate_certificate(obj, errs);
    }

    fn validate_update(&self, new: &Value, old: &Value, errs: &mut Errors) {
        validate_spec_unchanged(spec_of(new), spec_of(old), errs);
        for kind in [APPROVED, DENIED, FAILED] {
            if count(new, kind) < count(old, kind) {
                let detail = format!("updates may not remove a condition of type {kind:?}");
                errs.push(FieldError::forbidden(&conditions_path(), detail));
            }
        }
        let old_cert = certificate(old);
        if !old_cert.is_empty() && certificate(new) != old_cert {
            errs.push(FieldError::forbidden(
                &Path::new("status.certificate"),
                "updates may not modify existing certificate content",
            ));
        }
    }

    fn validate_subresource_update(&self, sub: &str, new: &Value, old: &Value, errs: &mut Errors) {
        if sub != "status" {
            return;
        }
        for kind in [APPROVED, DENIED] {
            if count(new, kind) > count(old, kind) {
                let detail = format!("updates may not add a condition of type {kind:?}");
                errs.push(FieldError::forbidden(&conditions_path(), detail));
            }
        }
    }

    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::certificates::v1::CertificateSigningRequest>(res, obj)
    }

    fn table_columns(&self) -> Vec<Column> {
        vec![
            NAME,
            AGE,
            col("SignerName", "string", "signerName indicates the requested signer, and is a qualified name.", 0),
            col("Requestor", "string", "Name of the user which made this request.", 0),
            col("RequestedDuration", "string", "expirationSeconds is the requested duration of validity of the issued certificate.", 0),
            col("Condition", "string", "Current condition of this request.", 0),
        ]
    }

    fn table_cells(&self, obj: &Value, row: RowContext) -> Vec<Value> {
        let spec = spec_of(obj);
        let duration = int(spec, "expirationSeconds")
            .map(|s| human_duration(chrono::TimeDelta::seconds(s)))
            .unwrap_or_else(|| "<none>".into());
        vec![
            row.name,
            row.age,
            json!(or_none(s(spec, "signerName").unwrap_or(""))),
            json!(s(spec, "username").unwrap_or("")),
            json!(duration),
            json!(condition_summary(obj)),
        ]
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.signerName"]
    }

    fn prepare_create(&self, obj: &mut Map<String, Value>) {
        obj.remove("status");
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            for field in REQUESTER_FIELDS {
                spec.remove(field);
            }
        }
    }

    fn prepare_update(&self, old: &Value, new: &mut Value) {
        let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        for field in REQUESTER_FIELDS {
            match spec_of(old).get(field) {
                Some(v) => spec.insert(field.into(), v.clone()),
                None => spec.remove(field),
            };
        }
    }

    fn merge_subresource(&self, sub: &str, current: &Value, requested: &Value) -> Option<Value> {
        let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match sub {
            "status" => Some(merge_status(current, requested, &now)),
            "approval" => Some(merge_approval(current, requested, &now)),
            _ => None,
        }
    }
}

/// `spec.request` decoded: the PEM text of the PKCS#10 request (`None` when missing or not
/// base64 of UTF-8).
pub fn request_pem(obj: &Value) -> Option<String> {
    let encoded = s(spec_of(obj), "request")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// `Invalid value` at `spec.request`, without echoing the request.
pub fn invalid_request(detail: impl Into<String>) -> FieldError {
    FieldError {
        field: "spec.request".into(),
        kind: FieldErrorKind::Invalid,
        bad_value: None,
        detail: detail.into(),
    }
}

/// `spec.signerName`.
pub fn signer_name(obj: &Value) -> &str {
    s(spec_of(obj), "signerName").unwrap_or("")
}

/// Whether the request carries a condition of type `kind` (`Approved`, ...).
pub fn has_condition(obj: &Value, kind: &str) -> bool {
    count(obj, kind) > 0
}

fn conditions(obj: &Value) -> &[Value] {
    list_at(obj, "/status/conditions")
}

fn conditions_path() -> Path {
    Path::new("status.conditions")
}

fn type_of(condition: &Value) -> &str {
    s(condition, "type").unwrap_or("")
}

fn count(obj: &Value, kind: &str) -> usize {
    conditions(obj).iter().filter(|c| type_of(c) == kind).count()
}

/// `status.certificate` as sent (base64), `""` when unset.
fn certificate(obj: &Value) -> &str {
    str_at(obj, "/status/certificate")
}

fn validate_spec(spec: &Value, path: &Path, errs: &mut Errors) {
    match s(spec, "request").filter(|r| !r.is_empty()) {
        None => errs.push(FieldError::required(&path.child("request"), "")),
        Some(_) => {
            let pem = request_pem(&json!({ "spec": spec })).unwrap_or_default();
            if pem_blocks(&pem).first().map(|b| b.label.as_str()) != Some("CERTIFICATE REQUEST") {
                errs.push(invalid_request("PEM block type must be CERTIFICATE REQUEST"));
            }
        }
    }
    validate_usages(arr(spec, "usages"), &path.child("usages"), errs);
    validate_signer_name(&path.child("signerName"), s(spec, "signerName").unwrap_or(""), errs);
    if let Some(seconds) = int(spec, "expirationSeconds").filter(|s| *s < MIN_EXPIRATION_SECONDS) {
        errs.push(FieldError::invalid(
            &path.child("expirationSeconds"),
            seconds.into(),
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
}

fn validate_usages(usages: &[Value], path: &Path, errs: &mut Errors) {
    if usages.is_empty() {
        errs.push(FieldError::required(path, ""));
    }
    let mut seen = BTreeSet::new();
    for (i, usage) in usages.iter().enumerate() {
        if !usage.as_str().is_some_and(|u| KEY_USAGES.contains(&u)) {
            errs.push(FieldError::not_supported(&path.index(i), usage.clone(), KEY_USAGES));
        }
        if !seen.insert(usage.to_string()) {
            errs.push(FieldError::duplicate(&path.index(i), usage.clone()));
        }
    }
}

/// A signer name is `<domain>/<path>`: a domain of at least two DNS labels, a path of
/// dot-separated DNS subdomains (room for `<namespace>.<name>`), 571 characters at most.
fn validate_signer_name(path: &Path, name: &str, errs: &mut Errors) {
    if name.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    if name == LEGACY_UNKNOWN {
        let detail = "the legacy signerName is not allowed via this API version";
        errs.push(FieldError::invalid(path, json!(name), detail));
        return;
    }
    let Some((domain, signer)) = name.split_once('/').filter(|(_, p)| !p.contains('/')) else {
        let detail = "must be a fully qualified domain and path of the form 'example.com/signer-name'";
        errs.push(FieldError::invalid(path, json!(name), detail));
        return;
    };
    if domain.len() > names::DNS1123_SUBDOMAIN_MAX {
        errs.push(FieldError::too_long(path, names::DNS1123_SUBDOMAIN_MAX));
    }
    first_bad_label(path, domain, names::dns1123_label, errs);
    if domain.split('.').count() < 2 {
        let detail = "should be a domain with at least two segments separated by dots";
        errs.push(FieldError::invalid(path, json!(domain), detail));
    }
    first_bad_label(path, signer, names::dns1123_subdomain, errs);
    let max = 2 * names::DNS1123_SUBDOMAIN_MAX + names::DNS1123_LABEL_MAX + 2;
    if name.len() > max {
        errs.push(FieldError::too_long(path, max));
    }
}

/// The problems of the first of `segment`'s dot-separated labels that breaks `rule` (one
/// label's: the next ones would repeat them).
fn first_bad_label(path: &Path, segment: &str, rule: fn(&str) -> Vec<String>, errs: &mut Errors) {
    let bad = segment
        .split('.')
        .map(|label| (label, rule(label)))
        .find(|(_, problems)| !problems.is_empty());
    if let Some((label, problems)) = bad {
        for p in problems {
            let detail = format!("validating label {label:?}: {p}");
            errs.push(FieldError::invalid(path, json!(segment), detail));
        }
    }
}

fn validate_conditions(conditions: &[Value], errs: &mut Errors) {
    let (mut approved, mut denied) = (false, false);
    let mut seen = BTreeSet::new();
    for (i, c) in conditions.iter().enumerate() {
        let path = conditions_path().index(i);
        let kind = type_of(c);
        if kind.is_empty() {
            errs.push(FieldError::required(&path.child("type"), ""));
        }
        validate_condition_status(c, kind, &path, errs);
        approved |= kind == APPROVED;
        denied |= kind == DENIED;
        if (kind == APPROVED && denied) || (kind == DENIED && approved) {
            let detail = "Approved and Denied conditions are mutually exclusive";
            errs.push(FieldError::invalid(&path.child("type"), json!(kind), detail));
        }
        if !seen.insert(kind) {
            errs.push(FieldError::duplicate(&path.child("type"), json!(kind)));
        }
    }
}

/// Approved, Denied and Failed are only ever `True`; other conditions any of the three.
fn validate_condition_status(c: &Value, kind: &str, path: &Path, errs: &mut Errors) {
    let allowed: &[&str] = match kind {
        APPROVED | DENIED | FAILED => &["True"],
        _ => &["False", "True", "Unknown"],
    };
    match s(c, "status").unwrap_or("") {
        "" => errs.push(FieldError::required(&path.child("status"), "")),
        status if !allowed.contains(&status) => errs.push(FieldError::not_supported(
            &path.child("status"),
            json!(status),
            allowed,
        )),
        _ => {}
    }
}

/// An issued certificate is one or more PEM `CERTIFICATE` blocks without headers (text around
/// them allowed), on an approved request.
fn validate_certificate(obj: &Value, errs: &mut Errors) {
    let encoded = certificate(obj);
    if encoded.is_empty() {
        return;
    }
    let path = Path::new("status.certificate");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    if let Err(detail) = certificate_blocks(&pem) {
        errs.push(FieldError::invalid(&path, json!(CERTIFICATE_DATA), detail));
    }
    if !has_condition(obj, APPROVED) {
        errs.push(FieldError::forbidden(&path, "may only be set on an approved request"));
    }
}

fn certificate_blocks(pem: &str) -> Result<(), String> {
    let blocks = pem_blocks(pem);
    if let Some(other) = blocks.iter().find(|b| b.label != "CERTIFICATE") {
        return Err(format!("only CERTIFICATE PEM blocks are allowed, found {:?}", other.label));
    }
    if blocks.iter().any(|b| b.headers) {
        return Err("no PEM block headers are permitted".into());
    }
    if blocks.iter().any(|b| b.empty) {
        return Err("found CERTIFICATE PEM block containing 0 certificates".into());
    }
    if blocks.is_empty() {
        return Err("must contain at least one CERTIFICATE PEM block".into());
    }
    Ok(())
}

/// One PEM block.
struct PemBlock {
    label: String,
    headers: bool,
    empty: bool,
}

/// The well-formed PEM blocks of `text`, in order (Go's `pem.Decode` in a loop: text around
/// blocks, and blocks without an end line or with a body that is not base64, are skipped).
fn pem_blocks(text: &str) -> Vec<PemBlock> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let begin = line.trim_end().strip_prefix("-----BEGIN ");
        let Some(label) = begin.and_then(|l| l.strip_suffix("-----")) else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let (mut body, mut headers, mut closed) = (String::new(), false, false);
        for line in lines.by_ref() {
            let line = line.trim();
            if line == end {
                closed = true;
                break;
            }
            headers |= line.contains(':');
            if !line.contains(':') {
                body.push_str(line);
            }
        }
        let der = base64::engine::general_purpose::STANDARD.decode(&body);
        if let (true, Ok(der)) = (closed, der) {
            let (label, empty) = (label.to_string(), der.is_empty());
            blocks.push(PemBlock { label, headers, empty });
        }
    }
    blocks
}

/// The spec never changes after create (the requester's fields are carried over before).
fn validate_spec_unchanged(new: &Value, old: &Value, errs: &mut Errors) {
    let path = Path::new("spec");
    if new.get("request") != old.get("request") {
        errs.push(FieldError::forbidden(&path.child("request"), "field is immutable"));
    }
    for field in ["signerName", "usages", "expirationSeconds"] {
        check_immutable(path.child(field).as_str(), new.get(field), old.get(field), errs);
    }
}

/// kubectl's CONDITION column: `Denied`, `Approved` or `Pending`, then `,Failed` and
/// `,Issued`.
fn condition_summary(obj: &Value) -> String {
    let mut out = if has_condition(obj, DENIED) {
        "Denied".to_string()
    } else if has_condition(obj, APPROVED) {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if has_condition(obj, FAILED) {
        out.push_str(",Failed");
    }
    if !certificate(obj).is_empty() {
        out.push_str(",Issued");
    }
    out
}

/// A write through `status`: the requested status, but the stored Approved and Denied
/// conditions stay as they are (when a write adds or removes one, its own are kept for
/// validation to refuse).
fn merge_status(current: &Value, requested: &Value, now: &str) -> Value {
    let mut status = requested.get("status").cloned().unwrap_or(Value::Null);
    if let Some(Value::Array(asked)) = status.get_mut("conditions") {
        for kind in [APPROVED, DENIED] {
            keep_instances(conditions(current), asked, kind);
        }
        stamp_times(asked, conditions(current), now);
    }
    with_status(current, status)
}

/// Replaces the conditions of type `kind` in `asked` by the stored ones, when as many.
fn keep_instances(stored: &[Value], asked: &mut [Value], kind: &str) {
    let stored: Vec<&Value> = stored.iter().filter(|c| type_of(c) == kind).collect();
    let slots: Vec<&mut Value> = asked.iter_mut().filter(|c| type_of(c) == kind).collect();
    if stored.len() == slots.len() {
        for (slot, old) in slots.into_iter().zip(stored) {
            *slot = old.clone();
        }
    }
}

/// A write through `approval`: the stored object with the requested conditions (validation
/// refuses one that drops an Approved, Denied or Failed condition).
fn merge_approval(current: &Value, requested: &Value, now: &str) -> Value {
    let mut merged: Vec<Value> = conditions(requested).to_vec();
    stamp_times(&mut merged, conditions(current), now);
    let mut status = current.get("status").cloned().unwrap_or_else(|| json!({}));
    if let Some(map) = status.as_object_mut() {
        match merged.is_empty() {
            true => map.remove("conditions"),
            false => map.insert("conditions".into(), Value::Array(merged)),
        };
    }
    with_status(current, status)
}

/// `current` with `status` (none when null or empty).
fn with_status(current: &Value, status: Value) -> Value {
    let mut out = current.clone();
    if let Some(map) = out.as_object_mut() {
        match status.as_object().is_some_and(|s| !s.is_empty()) {
            true => map.insert("status".into(), status),
            false => map.remove("status"),
        };
    }
    out
}

/// Conditions without times get them, as kube-apiserver stamps them: `lastUpdateTime` now,
/// `lastTransitionTime` that of the stored condition of the same type and status, else now.
fn stamp_times(conditions: &mut [Value], stored: &[Value], now: &str) {
    let unset = |c: &Map<String, Value>, key: &str| c.get(key).and_then(Value::as_str).unwrap_or("").is_empty();
    for c in conditions.iter_mut().filter_map(Value::as_object_mut) {
        if unset(c, "lastUpdateTime") {
            c.insert("lastUpdateTime".into(), json!(now));
        }
        if unset(c, "lastTransitionTime") {
            let same = |o: &&Value| o.get("type") == c.get("type") && o.get("status") == c.get("status");
            let since = stored
                .iter()
                .filter(same)
                .find_map(|o| o.get("lastTransitionTime").and_then(Value::as_str).filter(|t| !t.is_empty()))
                .unwrap_or(now)
                .to_string();
            c.insert("lastTransitionTime".into(), json!(since));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::test_support::check;
    use crate::validation::{validate_subresource_update, validate_update};

    const NOW: &str = "2025-01-02T03:04:05Z";

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn pem(label: &str) -> String {
        format!("-----BEGIN {label}-----\nMIIB\n-----END {label}-----\n")
    }

    fn csr(spec: Value) -> Value {
        let mut full = json!({"request": b64(&pem("CERTIFICATE REQUEST")),
            "signerName": KUBE_APISERVER_CLIENT, "usages": ["client auth"]});
        for (k, v) in spec.as_object().unwrap() {
            full[k] = v.clone();
        }
        json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
               "metadata": {"name": "node-csr-1"}, "spec": full})
    }

    fn with(mut obj: Value, status: Value) -> Value {
        obj["status"] = status;
        obj
    }

    fn condition(kind: &str) -> Value {
        json!({"type": kind, "status": "True", "reason": "R",
               "lastUpdateTime": "2025-01-01T00:00:00Z", "lastTransitionTime": "2025-01-01T00:00:00Z"})
    }

    fn approved() -> Value {
        with(csr(json!({})), json!({"conditions": [condition(APPROVED)]}))
    }

    #[test]
    fn a_well_formed_request_is_valid() {
        assert!(check("CertificateSigningRequest", csr(json!({}))).is_empty());
        let mut named = csr(json!({"expirationSeconds": 600}));
        named["metadata"]["name"] = json!("system:node:n1");
        assert!(check("CertificateSigningRequest", named.clone()).is_empty());
        named["metadata"]["name"] = json!("a/b");
        assert_eq!(check("CertificateSigningRequest", named).len(), 1);
    }

    #[test]
    fn request_usages_and_duration() {
        let errs = check("CertificateSigningRequest", csr(json!({"request": null, "usages": []})));
        assert_eq!(errs, ["spec.request: Required value", "spec.usages: Required value"]);
        let not_a_request = csr(json!({"request": b64(&pem("CERTIFICATE"))}));
        assert_eq!(
            check("CertificateSigningRequest", not_a_request),
            ["spec.request: Invalid value: PEM block type must be CERTIFICATE REQUEST"]
        );
        let garbage = csr(json!({"request": b64("hello")}));
        assert_eq!(check("CertificateSigningRequest", garbage).len(), 1);
        let errs = check(
            "CertificateSigningRequest",
            csr(json!({"usages": ["client auth", "flying", "client auth"], "expirationSeconds": 599})),
        );
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with(r#"spec.usages[1]: Unsupported value: "flying": supported values: "any", "cert sign""#), "{errs:?}");
        assert_eq!(errs[1], r#"spec.usages[2]: Duplicate value: "client auth""#);
        assert_eq!(
            errs[2],
            "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 600 seconds (10 minutes)"
        );
    }

    #[test]
    fn signer_names_are_domain_slash_path() {
        let errs = |name: &str| check("CertificateSigningRequest", csr(json!({"signerName": name})));
        assert!(errs("example.com/team.signer").is_empty());
        assert_eq!(errs(""), ["spec.signerName: Required value"]);
        assert_eq!(
            errs("signer"),
            [r#"spec.signerName: Invalid value: "signer": must be a fully qualified domain and path of the form 'example.com/signer-name'"#]
        );
        assert_eq!(errs("a/b/c").len(), 1);
        assert_eq!(
            errs("example/signer"),
            [r#"spec.signerName: Invalid value: "example": should be a domain with at least two segments separated by dots"#]
        );
        let bad_label = errs("Example.com/signer");
        assert!(bad_label[0].starts_with(r#"spec.signerName: Invalid value: "Example.com": validating label "Example": a lowercase RFC 1123 label"#), "{bad_label:?}");
        assert_eq!(errs("example.com/Signer").len(), 1);
        assert_eq!(
            errs(LEGACY_UNKNOWN),
            [r#"spec.signerName: Invalid value: "kubernetes.io/legacy-unknown": the legacy signerName is not allowed via this API version"#]
        );
    }

    #[test]
    fn conditions_types_and_statuses() {
        let of = |conditions: Value| check("CertificateSigningRequest", with(csr(json!({})), json!({"conditions": conditions})));
        assert!(of(json!([condition(APPROVED), condition(FAILED), {"type": "Custom", "status": "Unknown"}])).is_empty());
        assert_eq!(
            of(json!([condition(APPROVED), condition(DENIED)])),
            [r#"status.conditions[1].type: Invalid value: "Denied": Approved and Denied conditions are mutually exclusive"#]
        );
        assert_eq!(
            of(json!([{"type": "Approved", "status": "False"}])),
            [r#"status.conditions[0].status: Unsupported value: "False": supported values: "True""#]
        );
        assert_eq!(
            of(json!([{"type": "", "status": ""}, {"type": "Custom", "status": "Maybe"}])),
            [
                "status.conditions[0].type: Required value",
                "status.conditions[0].status: Required value",
                r#"status.conditions[1].status: Unsupported value: "Maybe": supported values: "False", "True", "Unknown""#
            ]
        );
        assert_eq!(
            of(json!([condition(FAILED), condition(FAILED)])),
            [r#"status.conditions[1].type: Duplicate value: "Failed""#]
        );
    }

    #[test]
    fn certificates_are_pem_certificates_on_approved_requests() {
        let cert = |status: Value| check("CertificateSigningRequest", with(csr(json!({})), status));
        let chain = format!("issued:\n{}{}", pem("CERTIFICATE"), pem("CERTIFICATE"));
        let approved = json!([condition(APPROVED)]);
        assert!(cert(json!({"conditions": approved, "certificate": b64(&chain)})).is_empty());
        assert_eq!(
            cert(json!({"certificate": b64(&pem("CERTIFICATE"))})),
            ["status.certificate: Forbidden: may only be set on an approved request"]
        );
        let mixed = format!("{}{}", pem("CERTIFICATE"), pem("PRIVATE KEY"));
        assert_eq!(
            cert(json!({"conditions": approved, "certificate": b64(&mixed)})),
            [r#"status.certificate: Invalid value: "<certificate data>": only CERTIFICATE PEM blocks are allowed, found "PRIVATE KEY""#]
        );
        assert_eq!(
            cert(json!({"conditions": approved, "certificate": b64("none")})),
            [r#"status.certificate: Invalid value: "<certificate data>": must contain at least one CERTIFICATE PEM block"#]
        );
        let headers = "-----BEGIN CERTIFICATE-----\nProc-Type: 4\n\nMIIB\n-----END CERTIFICATE-----\n";
        assert_eq!(cert(json!({"conditions": approved, "certificate": b64(headers)})).len(), 1);
    }

    fn update_errors(sub: Option<&str>, new: &Value, old: &Value) -> Vec<String> {
        let errs = match sub {
            Some(sub) => validate_subresource_update(&RESOURCE, sub, new, old),
            None => validate_update(&RESOURCE, new, old),
        };
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_spec_is_immutable_and_the_requester_carried_over() {
        let mut old = csr(json!({}));
        old["spec"]["username"] = json!("alice");
        old["spec"]["groups"] = json!(["system:authenticated"]);
        let mut new = csr(json!({"usages": ["server auth"]}));
        new["spec"]["username"] = json!("mallory");
        CertificateSigningRequestStrategy.prepare_update(&old, &mut new);
        assert_eq!(new["spec"]["username"], "alice");
        assert_eq!(new["spec"]["groups"], json!(["system:authenticated"]));
        assert_eq!(
            update_errors(None, &new, &old),
            [r#"spec.usages: Invalid value: []string{"server auth"}: field is immutable"#]
        );
        let other_request = csr(json!({"request": b64(&format!("x\n{}", pem("CERTIFICATE REQUEST")))}));
        assert_eq!(
            update_errors(None, &other_request, &csr(json!({}))),
            ["spec.request: Forbidden: field is immutable"]
        );
    }

    #[test]
    fn create_drops_status_and_the_requester() {
        let mut obj = with(csr(json!({"username": "root", "groups": ["system:masters"]})), json!({"conditions": [condition(APPROVED)]}));
        CertificateSigningRequestStrategy.prepare_create(obj.as_object_mut().unwrap());
        assert!(obj.get("status").is_none());
        assert!(obj["spec"].get("username").is_none() && obj["spec"].get("groups").is_none());
        assert_eq!(obj["spec"]["signerName"], KUBE_APISERVER_CLIENT);
    }

    #[test]
    fn approval_takes_the_conditions_only() {
        let stored = with(csr(json!({})), json!({"conditions": [condition("Custom")]}));
        let mut asked = with(csr(json!({"signerName": "evil.io/x"})), json!({
            "certificate": b64(&pem("CERTIFICATE")),
            "conditions": [{"type": "Custom", "status": "False"},
                           {"type": "Approved", "status": "True", "reason": "KubectlApprove",
                            "lastUpdateTime": "2025-01-02T00:00:00Z"}]}));
        asked["metadata"]["labels"] = json!({"x": "y"});
        let merged = merge_approval(&stored, &asked, NOW);
        assert_eq!(merged["spec"], stored["spec"]);
        assert_eq!(merged["metadata"], stored["metadata"]);
        assert!(merged["status"].get("certificate").is_none());
        // every requested condition, of any type (kube-rs approves with its own types too)
        assert_eq!(
            merged["status"]["conditions"][0],
            json!({"type": "Custom", "status": "False", "lastUpdateTime": NOW, "lastTransitionTime": NOW})
        );
        assert_eq!(
            merged["status"]["conditions"][1],
            json!({"type": "Approved", "status": "True", "reason": "KubectlApprove",
                   "lastUpdateTime": "2025-01-02T00:00:00Z", "lastTransitionTime": NOW})
        );
        assert!(update_errors(Some("approval"), &merged, &stored).is_empty());
        // the same approval again changes nothing; one removing Approved is refused
        assert_eq!(merge_approval(&merged, &merged, NOW), merged);
        let removed = merge_approval(&merged, &stored, NOW);
        assert_eq!(
            update_errors(Some("approval"), &removed, &merged),
            [r#"status.conditions: Forbidden: updates may not remove a condition of type "Approved""#]
        );
        let denied_too = merge_approval(&merged, &with(csr(json!({})), json!({"conditions": [condition(APPROVED), condition(DENIED)]})), NOW);
        assert_eq!(update_errors(Some("approval"), &denied_too, &merged).len(), 1);
    }

    #[test]
    fn status_keeps_approval_and_issues_once() {
        let stored = approved();
        let cert = b64(&pem("CERTIFICATE"));
        let asked = with(csr(json!({"usages": ["server auth"]})), json!({"certificate": cert,
            "conditions": [{"type": "Approved", "status": "True", "reason": "Forged"}]}));
        let merged = merge_status(&stored, &asked, NOW);
        assert_eq!(merged["spec"], stored["spec"]);
        assert_eq!(merged["status"]["conditions"], json!([condition(APPROVED)]), "the stored Approved stays");
        assert_eq!(merged["status"]["certificate"], cert);
        assert!(update_errors(Some("status"), &merged, &stored).is_empty());
        assert_eq!(condition_summary(&merged), "Approved,Issued");
        // a signer's Failed condition is stamped; changing the issued certificate is refused
        let failed = with(merged.clone(), json!({"certificate": b64(&format!("{}{}", pem("CERTIFICATE"), pem("CERTIFICATE"))),
            "conditions": [condition(APPROVED), {"type": "Failed", "status": "True"}]}));
        let next = merge_status(&merged, &failed, NOW);
        assert_eq!(next["status"]["conditions"][1]["lastTransitionTime"], NOW);
        assert_eq!(
            update_errors(Some("status"), &next, &merged),
            ["status.certificate: Forbidden: updates may not modify existing certificate content"]
        );
    }

    #[test]
    fn status_may_not_add_or_remove_approval() {
        let pending = csr(json!({}));
        let self_approved = merge_status(&pending, &approved(), NOW);
        assert_eq!(
            update_errors(Some("status"), &self_approved, &pending),
            [r#"status.conditions: Forbidden: updates may not add a condition of type "Approved""#]
        );
        let approved = approved();
        let cleared = merge_status(&approved, &csr(json!({})), NOW);
        assert!(cleared.get("status").is_none());
        assert_eq!(
            update_errors(Some("status"), &cleared, &approved),
            [r#"status.conditions: Forbidden: updates may not remove a condition of type "Approved""#]
        );
        // the approval path may add it
        assert!(update_errors(Some("approval"), &merge_approval(&pending, &approved, NOW), &pending).is_empty());
    }

    #[test]
    fn table_columns_and_cells() {
        let names: Vec<_> = CertificateSigningRequestStrategy.table_columns().iter().map(|c| c.name).collect();
        assert_eq!(names, ["Name", "Age", "SignerName", "Requestor", "RequestedDuration", "Condition"]);
        let row = || RowContext { name: json!("node-csr-1"), age: json!("5m"), now: Utc::now() };
        let mut pending = csr(json!({"expirationSeconds": 86400}));
        pending["spec"]["username"] = json!("alice");
        assert_eq!(
            CertificateSigningRequestStrategy.table_cells(&pending, row()),
            [json!("node-csr-1"), json!("5m"), json!(KUBE_APISERVER_CLIENT), json!("alice"), json!("24h"), json!("Pending")]
        );
        let denied_failed = with(csr(json!({"signerName": null})), json!({"conditions": [condition(DENIED), condition(FAILED)]}));
        let cells = CertificateSigningRequestStrategy.table_cells(&denied_failed, row());
        assert_eq!(cells[2..], [json!("<none>"), json!(""), json!("<none>"), json!("Denied,Failed")]);
    }
}
