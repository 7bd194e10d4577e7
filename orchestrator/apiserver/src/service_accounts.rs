//! ServiceAccount tokens on the server: issuing them (the `serviceaccounts/token`
//! TokenRequest subresource, as `kubectl create token` and the kubelet ask for them) and
//! authenticating them (signature, issuer, audience and expiry by [`ServiceAccountKey`],
//! then whether what the token is bound to still exists: the ServiceAccount, the pod, the
//! Secret, the node, with the uids the token names, as Kubernetes' legacy and bound token
//! validators do).

use std::time::Duration;

use bpfk_apimachinery::registry::{self, ResourceInfo};
use bpfk_apimachinery::validation::{FieldError, Path};
use bpfk_auth::service_account::{ObjectRef, ServiceAccountKey, TokenSubject};
use bpfk_auth::user::UserInfo;
use serde_json::{json, Value};

use crate::error::{ApiError, Result};
use crate::object;
use crate::state::{self, AppState};

/// The least and the default lifetime of a requested token (Kubernetes': 10 minutes, 1 hour).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// How the server issues and accepts ServiceAccount tokens.
#[derive(Debug)]
pub struct ServiceAccountTokens {
    pub key: ServiceAccountKey,
    /// `--service-account-issuer`.
    pub issuer: String,
    /// `--api-audiences` (the issuer when not set): tokens for the API server.
    pub audiences: Vec<String>,
    /// `--service-account-max-token-expiration`.
    pub max_expiration: Duration,
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn resource(plural: &str) -> Result<&'static ResourceInfo> {
    registry::find("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not served")))
}

/// The stored object `ns/name` of `plural` (core/v1), or none.
pub async fn lookup_object(
    state: &AppState,
    plural: &str,
    ns: Option<&str>,
    name: &str,
) -> Result<Option<Value>> {
    lookup(state, plural, ns, name, "").await
}

/// The stored object, from the watch cache when it holds it with `uid` (or any uid when
/// `uid` is empty), else from etcd (a cache a moment behind must not refuse a new pod).
async fn lookup(
    state: &AppState,
    plural: &str,
    ns: Option<&str>,
    name: &str,
    uid: &str,
) -> Result<Option<Value>> {
    let res = resource(plural)?;
    let key = state::key(res, ns, name);
    let uid_matches = |obj: &Value| uid.is_empty() || object::uid(obj) == Some(uid);
    if let Ok(cache) = state.cache(res) {
        if let Some(kv) = cache.get(&key).await {
            let obj = state::decode(res, &kv)?;
            if uid_matches(&obj) {
                return Ok(Some(obj));
            }
        }
    }
    let kv = state
        .store
        .get(&key)
        .await
        .map_err(|e| crate::rest::store_err(res, name, e))?;
    kv.map(|kv| state::decode(res, &kv)).transpose()
}

impl ServiceAccountTokens {
    /// The user of `token` when it is a valid ServiceAccount token of this cluster for one
    /// of `audiences` (the API server's when `None`) whose bound objects still exist, else
    /// why not (never the token itself).
    pub async fn authenticate(
        &self,
        state: &AppState,
        token: &str,
        audiences: Option<&[String]>,
    ) -> std::result::Result<UserInfo, String> {
        let audiences = audiences.unwrap_or(&self.audiences);
        let verified = self
            .key
            .verify(token, &self.issuer, audiences, unix_now())
            .map_err(|e| e.to_string())?;
        let s = &verified.subject;
        let ns = Some(s.namespace.as_str());
        let found = |what: &str, obj: Option<Value>, uid: &str| match obj {
            Some(o) if uid.is_empty() || object::uid(&o) == Some(uid) => Ok(o),
            Some(_) => Err(format!(
                "the {what} was deleted and recreated (uid differs)"
            )),
            None => Err(format!("the {what} no longer exists")),
        };
        let db = |e: ApiError| e.message();
        let sa_ref = &s.service_account;
        let sa = lookup(state, "serviceaccounts", ns, &sa_ref.name, &sa_ref.uid).await;
        found("service account", sa.map_err(db)?, &sa_ref.uid)?;
        if let Some(pod) = &s.pod {
            let obj = lookup(state, "pods", ns, &pod.name, &pod.uid).await;
            let obj = found("pod it is bound to", obj.map_err(db)?, &pod.uid)?;
            if deleted_before_now(&obj) {
                return Err("the pod it is bound to is being deleted".into());
            }
        }
        if let Some(secret) = &s.secret {
            let obj = lookup(state, "secrets", ns, &secret.name, &secret.uid).await;
            let obj = found("secret it is bound to", obj.map_err(db)?, &secret.uid)?;
            if verified.legacy && !secret_holds(&obj, token) {
                return Err("the secret no longer holds this token".into());
            }
        }
        if let Some(node) = s.node.as_ref().filter(|_| s.pod.is_none()) {
            let obj = lookup(state, "nodes", None, &node.name, &node.uid).await;
            found("node it is bound to", obj.map_err(db)?, &node.uid)?;
        }
        Ok(verified.user())
    }

    /// Answer a TokenRequest for ServiceAccount `ns/name`: the request with its `status`
    /// (token, expirationTimestamp).
    pub async fn request(
        &self,
        state: &AppState,
        ns: &str,
        name: &str,
        body: Value,
    ) -> Result<Value> {
        let sa_res = resource("serviceaccounts")?;
        let sa = lookup(state, "serviceaccounts", Some(ns), name, "")
            .await?
            .ok_or_else(|| crate::rest::not_found(sa_res, name))?;
        let spec = TokenRequestSpec::parse(&body, &self.audiences)?;
        let lifetime = spec
            .expiration_seconds
            .min(self.max_expiration.as_secs() as i64);
        let mut subject = TokenSubject {
            namespace: ns.to_string(),
            service_account: ObjectRef {
                name: name.to_string(),
                uid: object::uid(&sa).unwrap_or_default().to_string(),
            },
            ..Default::default()
        };
        bind(state, &mut subject, spec.bound.as_ref()).await?;
        let requester = crate::authz::requester();
        let pod_node = subject.pod.as_ref().and(subject.node.as_ref());
        let pod_node = pod_node.map(|n| n.name.as_str());
        crate::node_restriction::check_token_binding(requester.as_deref(), pod_node)?;
        let issued = self
            .key
            .issue(
                &self.issuer,
                &spec.audiences,
                &subject,
                unix_now(),
                lifetime,
            )
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let expires = chrono::DateTime::from_timestamp(issued.expires_at, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Ok(json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
            "spec": spec.to_json(lifetime),
            "status": {"token": issued.token, "expirationTimestamp": expires},
        }))
    }
}

/// A deletionTimestamp in the past (a token of a pod in its grace period still works).
fn deleted_before_now(obj: &Value) -> bool {
    object::meta_str(obj, "deletionTimestamp")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t < chrono::Utc::now())
}

/// Whether a service-account-token Secret holds `token` in `data.token`.
fn secret_holds(secret: &Value, token: &str) -> bool {
    use base64::Engine;
    let stored = secret.pointer("/data/token").and_then(Value::as_str);
    let decoded = stored.and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok());
    decoded.is_some_and(|d| d == token.as_bytes())
}

/// What a TokenRequest asks for.
struct TokenRequestSpec {
    audiences: Vec<String>,
    expiration_seconds: i64,
    bound: Option<BoundObject>,
}

struct BoundObject {
    kind: String,
    name: String,
    uid: String,
}

fn token_invalid(name: &str, errors: &[FieldError]) -> ApiError {
    let causes = errors
        .iter()
        .map(|e| crate::error::Cause {
            reason: e.reason().to_string(),
            message: e.message_without_field(),
            field: e.field.clone(),
        })
        .collect();
    ApiError::Invalid {
        group: "authentication.k8s.io".into(),
        kind: "TokenRequest".into(),
        name: name.into(),
        causes,
    }
}

impl TokenRequestSpec {
    fn parse(body: &Value, default_audiences: &[String]) -> Result<Self> {
        let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
        let path = Path::new("spec");
        let mut errors = Vec::new();
        let audiences: Vec<String> = spec
            .get("audiences")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .filter(|a: &Vec<String>| !a.is_empty())
            .unwrap_or_else(|| default_audiences.to_vec());
        let expiration = spec.get("expirationSeconds").map(Value::as_i64);
        let expiration_seconds = match expiration {
            None => DEFAULT_EXPIRATION_SECONDS,
            Some(Some(s)) if s < MIN_EXPIRATION_SECONDS => {
                let detail = "may not specify a duration less than 10 minutes";
                errors.push(FieldError::invalid(
                    &path.child("expirationSeconds"),
                    json!(s),
                    detail,
                ));
                s
            }
            Some(Some(s)) if s > 1 << 32 => {
                let detail = "may not specify a duration larger than 2^32 seconds";
                errors.push(FieldError::invalid(
                    &path.child("expirationSeconds"),
                    json!(s),
                    detail,
                ));
                s
            }
            Some(Some(s)) => s,
            Some(None) => {
                let value = spec["expirationSeconds"].clone();
                errors.push(FieldError::invalid(
                    &path.child("expirationSeconds"),
                    value,
                    "must be an integer",
                ));
                0
            }
        };
        let bound = parse_bound(
            spec.get("boundObjectRef"),
            &path.child("boundObjectRef"),
            &mut errors,
        );
        if !errors.is_empty() {
            return Err(token_invalid(
                object::name(body).unwrap_or_default(),
                &errors,
            ));
        }
        Ok(TokenRequestSpec {
            audiences,
            expiration_seconds,
            bound,
        })
    }

    fn to_json(&self, lifetime: i64) -> Value {
        let mut spec = json!({"audiences": self.audiences, "expirationSeconds": lifetime});
        if let Some(b) = &self.bound {
            spec["boundObjectRef"] =
                json!({"kind": b.kind, "apiVersion": "v1", "name": b.name, "uid": b.uid});
        }
        spec
    }
}

fn parse_bound(
    value: Option<&Value>,
    path: &Path,
    errors: &mut Vec<FieldError>,
) -> Option<BoundObject> {
    let value = value.filter(|v| !v.is_null())?;
    let text = |f: &str| {
        value
            .get(f)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let kind = text("kind");
    if !matches!(kind.as_str(), "Pod" | "Secret" | "Node") {
        errors.push(FieldError::not_supported(
            &path.child("kind"),
            json!(kind),
            &["Pod", "Secret", "Node"],
        ));
        return None;
    }
    let api_version = text("apiVersion");
    if !api_version.is_empty() && api_version != "v1" {
        errors.push(FieldError::not_supported(
            &path.child("apiVersion"),
            json!(api_version),
            &["v1"],
        ));
    }
    let name = text("name");
    if name.is_empty() {
        errors.push(FieldError::required(&path.child("name"), ""));
    }
    Some(BoundObject {
        kind,
        name,
        uid: text("uid"),
    })
}

/// Fill the bound object (and, for a pod, its node) into `subject`, checking it exists with
/// the uid asked for and, for a pod, that it runs as this ServiceAccount.
async fn bind(
    state: &AppState,
    subject: &mut TokenSubject,
    bound: Option<&BoundObject>,
) -> Result<()> {
    let Some(b) = bound else { return Ok(()) };
    let (plural, ns) = match b.kind.as_str() {
        "Pod" => ("pods", Some(subject.namespace.as_str())),
        "Secret" => ("secrets", Some(subject.namespace.as_str())),
        _ => ("nodes", None),
    };
    let res = resource(plural)?;
    let obj = lookup(state, plural, ns, &b.name, &b.uid)
        .await?
        .ok_or_else(|| crate::rest::not_found(res, &b.name))?;
    let uid = object::uid(&obj).unwrap_or_default().to_string();
    if !b.uid.is_empty() && b.uid != uid {
        return Err(ApiError::Conflict {
            group: res.group.into(),
            kind: res.plural.into(),
            name: b.name.clone(),
            message: format!(
                "the UID in the bound object reference ({}) does not match the UID in record ({uid}). The object might have been deleted and then recreated",
                b.uid
            ),
        });
    }
    let reference = ObjectRef {
        name: b.name.clone(),
        uid,
    };
    match b.kind.as_str() {
        "Pod" => {
            let runs_as = obj
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str);
            if runs_as.unwrap_or("default") != subject.service_account.name {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount {:?} to pod running with different serviceaccount name.",
                    subject.service_account.name
                )));
            }
            if let Some(node) = obj.pointer("/spec/nodeName").and_then(Value::as_str) {
                let node_obj = lookup(state, "nodes", None, node, "").await?;
                let node_uid = node_obj.as_ref().and_then(object::uid).unwrap_or_default();
                subject.node = Some(ObjectRef {
                    name: node.to_string(),
                    uid: node_uid.to_string(),
                });
            }
            subject.pod = Some(reference);
        }
        "Secret" => subject.secret = Some(reference),
        _ => subject.node = Some(reference),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_request_spec_defaults_and_refuses_as_kubernetes() {
        let aud = vec!["https://kubernetes.default.svc.cluster.local".to_string()];
        let spec = TokenRequestSpec::parse(&json!({}), &aud).unwrap();
        assert_eq!(spec.audiences, aud);
        assert_eq!(spec.expiration_seconds, 3600);
        assert!(spec.bound.is_none());
        let body = json!({"spec": {"audiences": ["vault"], "expirationSeconds": 7200,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "u"}}});
        let spec = TokenRequestSpec::parse(&body, &aud).unwrap();
        assert_eq!(spec.audiences, ["vault"]);
        assert_eq!(spec.bound.as_ref().map(|b| b.name.as_str()), Some("web"));
        let message = |body: Value| match TokenRequestSpec::parse(&body, &aud) {
            Err(e) => e.message(),
            Ok(_) => panic!("accepted {body}"),
        };
        assert!(
            message(json!({"spec": {"expirationSeconds": 60}})).contains("less than 10 minutes")
        );
        assert!(message(json!({"spec": {"expirationSeconds": "soon"}}))
            .contains("spec.expirationSeconds"));
        let m = message(json!({"spec": {"boundObjectRef": {"kind": "Deployment", "name": "x"}}}));
        assert!(
            m.contains("spec.boundObjectRef.kind") && m.contains("Unsupported value"),
            "{m}"
        );
        assert!(
            message(json!({"spec": {"boundObjectRef": {"kind": "Pod"}}}))
                .contains("spec.boundObjectRef.name")
        );
    }

    #[test]
    fn a_legacy_secret_must_still_hold_the_token() {
        let secret = json!({"data": {"token": "dG9rZW4="}});
        assert!(secret_holds(&secret, "token"));
        assert!(!secret_holds(&secret, "other"));
        assert!(!secret_holds(&json!({}), "token"));
    }
}
