//! The review resources, answered and never stored: SelfSubjectAccessReview,
//! SubjectAccessReview and LocalSubjectAccessReview (may a user do this?),
//! SelfSubjectRulesReview (what may I do here?), SelfSubjectReview (who am I?) and
//! TokenReview (whose is this token?).

use std::collections::BTreeMap;

use bpfk_apimachinery::registry::ResourceInfo;
use bpfk_auth::authz::{Attributes, Decision, ResourceAttributes};
use bpfk_auth::user::UserInfo;
use serde_json::{json, Value};

use crate::authz::requester;
use crate::error::{ApiError, Result};
use crate::state::AppState;

/// Whether `res` is a review this module answers.
pub fn is_review(res: &ResourceInfo) -> bool {
    matches!(res.group, "authorization.k8s.io" | "authentication.k8s.io")
}

/// The answered review: `obj` with its `status`.
pub async fn create(
    state: &AppState,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    mut obj: Value,
) -> Result<Value> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "a {} must be a JSON object",
            res.kind
        )));
    }
    let mut errors = Vec::new();
    res.strategy.validate(&obj, &mut errors);
    if !errors.is_empty() {
        return Err(super::invalid(res, "", &errors));
    }
    let me = requester().ok_or_else(|| ApiError::internal("a review outside a request"))?;
    let status = match res.kind {
        "SelfSubjectAccessReview" => access_status(state, &me, spec(&obj), None).await?,
        "SubjectAccessReview" => {
            access_status(state, &subject_of(spec(&obj)), spec(&obj), None).await?
        }
        "LocalSubjectAccessReview" => {
            let ns = ns.unwrap_or_default();
            access_status(state, &subject_of(spec(&obj)), spec(&obj), Some(ns)).await?
        }
        "SelfSubjectRulesReview" => rules_status(state, &me, spec(&obj)).await?,
        "SelfSubjectReview" => json!({"userInfo": user_info_json(&me)}),
        "TokenReview" => token_status(state, spec(&obj)).await,
        other => return Err(ApiError::internal(format!("{other} is not a review"))),
    };
    if let Some(map) = obj.as_object_mut() {
        map.insert("status".into(), status);
        map.insert("apiVersion".into(), json!(res.api_version()));
        map.insert("kind".into(), json!(res.kind));
        map.entry("metadata").or_insert_with(|| json!({}));
    }
    Ok(obj)
}

fn spec(obj: &Value) -> &Value {
    obj.get("spec").unwrap_or(&Value::Null)
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

/// The user a SubjectAccessReview asks about.
fn subject_of(spec: &Value) -> UserInfo {
    let extra: BTreeMap<String, Vec<String>> = spec
        .get("extra")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), strings(Some(v))))
        .collect();
    UserInfo {
        name: text(spec, "user").to_string(),
        uid: text(spec, "uid").to_string(),
        groups: strings(spec.get("groups")),
        extra,
    }
}

/// `status` of an access review of `spec` for `user`; `namespace` is the URL's for a local
/// review (the spec must name the same one).
async fn access_status(
    state: &AppState,
    user: &UserInfo,
    spec: &Value,
    namespace: Option<&str>,
) -> Result<Value> {
    let (verb, resource, path) = match spec.get("resourceAttributes") {
        Some(r) => {
            let attrs = ResourceAttributes {
                namespace: text(r, "namespace").to_string(),
                api_group: text(r, "group").to_string(),
                resource: text(r, "resource").to_string(),
                subresource: text(r, "subresource").to_string(),
                name: text(r, "name").to_string(),
            };
            if let Some(ns) = namespace.filter(|ns| *ns != attrs.namespace) {
                return Err(ApiError::bad_request(format!(
                    "spec.resourceAttributes.namespace must match the namespace of the request ({ns:?})"
                )));
            }
            (text(r, "verb").to_string(), Some(attrs), String::new())
        }
        None => {
            let n = spec.get("nonResourceAttributes").unwrap_or(&Value::Null);
            (
                text(n, "verb").to_string(),
                None,
                text(n, "path").to_string(),
            )
        }
    };
    let attrs = Attributes {
        user,
        verb: &verb,
        resource: resource.as_ref(),
        path: &path,
    };
    Ok(match state.authz.decide(state, &attrs).await? {
        Decision::Allow(reason) => json!({"allowed": true, "reason": reason}),
        Decision::Deny(reason) => json!({"allowed": false, "denied": true, "reason": reason}),
        Decision::NoOpinion => json!({"allowed": false}),
    })
}

/// What `user` may do in `spec.namespace`, as RBAC grants it (`kubectl auth can-i --list`).
async fn rules_status(state: &AppState, user: &UserInfo, spec: &Value) -> Result<Value> {
    let policy = state.authz.rbac_policy(state).await?;
    let rules = policy.rules_for(user, text(spec, "namespace"));
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for rule in &rules {
        let urls = rule.non_resource_urls.clone().unwrap_or_default();
        if urls.is_empty() {
            resource_rules.push(json!({
                "verbs": rule.verbs,
                "apiGroups": rule.api_groups.clone().unwrap_or_default(),
                "resources": rule.resources.clone().unwrap_or_default(),
                "resourceNames": rule.resource_names.clone().unwrap_or_default(),
            }));
        } else {
            non_resource_rules.push(json!({"verbs": rule.verbs, "nonResourceURLs": urls}));
        }
    }
    Ok(
        json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false}),
    )
}

/// The user of a token, as the server's authenticators see it (for the review's
/// `audiences`, when it names any).
async fn token_status(state: &AppState, spec: &Value) -> Value {
    let audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let asked = (!audiences.is_empty()).then_some(audiences.as_slice());
    match state
        .authn
        .token_user(state, text(spec, "token"), asked)
        .await
    {
        Ok(user) => {
            let mut status = json!({"authenticated": true, "user": user_info_json(&user)});
            if let Some(aud) = asked {
                status["audiences"] = json!(aud);
            }
            status
        }
        // as kube-apiserver: why, never the token itself
        Err(reason) => {
            json!({"authenticated": false, "error": format!("[invalid bearer token, {reason}]")})
        }
    }
}

fn user_info_json(user: &UserInfo) -> Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}
