//! PodSecurity admission, as kube-apiserver's built-in plugin: a namespace's
//! `pod-security.kubernetes.io/{enforce,warn,audit}` labels choose the Pod Security Standard
//! its pods are held to ([`bpfk_auth::pod_security`] evaluates it). `enforce` refuses a pod
//! (403 `violates PodSecurity "baseline:latest": …`), `warn` answers with a warning, `audit`
//! writes the server log; workload templates (Deployments, Jobs, …) get warn and audit only.
//! Namespace labels must parse (422), and tightening `enforce` warns of the pods that
//! already violate it.

use std::collections::BTreeMap;

use bpfk_apimachinery::registry::{self, ResourceInfo};
use bpfk_apimachinery::validation::{FieldError, Path};
use bpfk_auth::pod_security::{self, LevelVersion, NamespacePolicy, Violation};
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::error::{ApiError, Result};
use crate::state::AppState;
use crate::{admission, warnings};

/// Pods named in the warning about a namespace's existing violations, at most.
const EXISTING_PODS_NAMED: usize = 10;

/// The policy of namespace `ns`, as Kubernetes' `PolicyToEvaluate` reads its labels (a bad
/// enforce level is restricted, a bad version latest).
async fn policy_of(state: &AppState, ns: &str) -> Result<NamespacePolicy> {
    let labels = admission::namespace_object(state, ns)
        .await?
        .map(|obj| labels_of(&obj))
        .unwrap_or_default();
    Ok(policy_for(&labels))
}

fn policy_for(labels: &BTreeMap<String, String>) -> NamespacePolicy {
    pod_security::policy_to_evaluate(labels, &NamespacePolicy::default()).0
}

fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The metadata and pod spec of a pod, or of a workload's pod template (where the kind's
/// strategy says its pod spec lives: `spec`, `spec.template.spec`).
fn pod_parts(res: &ResourceInfo, obj: &Value) -> Option<(ObjectMeta, PodSpec)> {
    let spec_path = res.strategy.pod_spec_path()?;
    let template = match spec_path.rsplit_once('.') {
        Some((parent, _)) => obj.pointer(&format!("/{}", parent.replace('.', "/")))?,
        None => obj,
    };
    let meta = template.get("metadata").cloned().unwrap_or_default();
    let spec = template.get("spec")?.clone();
    Some((
        serde_json::from_value(meta).unwrap_or_default(),
        serde_json::from_value(spec).ok()?,
    ))
}

fn evaluate(lv: &LevelVersion, meta: &ObjectMeta, spec: &PodSpec) -> Vec<Violation> {
    pod_security::evaluate(lv, meta, spec)
}

/// Admit a new pod or workload in namespace `ns`: enforce (pods only), then audit and warn.
pub async fn admit_create(
    state: &AppState,
    res: &ResourceInfo,
    ns: &str,
    obj: &Value,
) -> Result<()> {
    let Some((meta, spec)) = pod_parts(res, obj) else {
        return Ok(());
    };
    let policy = policy_of(state, ns).await?;
    let name = crate::rest::display_name(obj);
    if res.is("", "Pod") {
        let violations = evaluate(&policy.enforce, &meta, &spec);
        if !violations.is_empty() {
            return Err(ApiError::Forbidden {
                group: String::new(),
                kind: "pods".into(),
                name,
                message: format!(
                    "violates PodSecurity \"{}\": {}",
                    policy.enforce,
                    pod_security::forbidden_detail(&violations)
                ),
            });
        }
    }
    audit_and_warn(&policy, res, ns, &name, &meta, &spec);
    Ok(())
}

/// Admit a change of a pod or workload: only changes of what the checks can see matter; a
/// pod's spec changes only in its images (the rest is immutable), so an update that keeps
/// them is let through as Kubernetes does.
pub async fn admit_update(
    state: &AppState,
    res: &ResourceInfo,
    ns: &str,
    current: &Value,
    next: &Value,
) -> Result<()> {
    let (Some((_, old)), Some((_, new))) = (pod_parts(res, current), pod_parts(res, next)) else {
        return Ok(());
    };
    if res.is("", "Pod") && images(&old) == images(&new) {
        return Ok(());
    }
    if !res.is("", "Pod") && old == new {
        return Ok(());
    }
    admit_create(state, res, ns, next).await
}

fn images(spec: &PodSpec) -> Vec<Option<&str>> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| c.image.as_deref())
        .collect()
}

fn audit_and_warn(
    policy: &NamespacePolicy,
    res: &ResourceInfo,
    ns: &str,
    name: &str,
    meta: &ObjectMeta,
    spec: &PodSpec,
) {
    let audited = evaluate(&policy.audit, meta, spec);
    if !audited.is_empty() {
        tracing::info!(
            namespace = ns,
            kind = res.kind,
            name,
            "pod-security.kubernetes.io/audit-violations: would violate PodSecurity \"{}\": {}",
            policy.audit,
            pod_security::forbidden_detail(&audited)
        );
    }
    let warned = evaluate(&policy.warn, meta, spec);
    if !warned.is_empty() {
        warnings::add(format!(
            "would violate PodSecurity \"{}\": {}",
            policy.warn,
            pod_security::forbidden_detail(&warned)
        ));
    }
}

/// A namespace's PodSecurity labels must parse: 422 naming the label, its value and why.
pub fn check_namespace_labels(name: &str, res: &ResourceInfo, obj: &Value) -> Result<()> {
    let Err(errors) = pod_security::policy_from_labels(&labels_of(obj)) else {
        return Ok(());
    };
    let fields: Vec<FieldError> = errors
        .iter()
        .map(|e| {
            let path = Path::new("metadata").child("labels").key(&e.label);
            FieldError::invalid(&path, Value::String(e.value.clone()), e.reason.clone())
        })
        .collect();
    Err(crate::rest::invalid(res, name, &fields))
}

/// Check a namespace's new labels; when its enforce level changed, warn of the pods there
/// that violate the new one (as kube-apiserver's `EvaluatePodsInNamespace`).
pub async fn admit_namespace_update(
    state: &AppState,
    res: &ResourceInfo,
    current: &Value,
    next: &Value,
) -> Result<()> {
    let name = crate::rest::display_name(next);
    if labels_of(current) == labels_of(next) {
        return Ok(());
    }
    check_namespace_labels(&name, res, next)?;
    let old = policy_for(&labels_of(current));
    let new = policy_for(&labels_of(next));
    if old.enforce == new.enforce || new.enforce.level == pod_security::Level::Privileged {
        return Ok(());
    }
    warn_existing_pods(state, &name, &new.enforce).await
}

async fn warn_existing_pods(state: &AppState, ns: &str, level: &LevelVersion) -> Result<()> {
    let Some(pods) = registry::find("", "v1", "pods") else {
        return Ok(());
    };
    let prefix = crate::state::prefix(pods, Some(ns));
    let (items, _) = state.ready_cache(pods).await?.list_prefix(&prefix).await;
    // pods with the same violations are named once: "web-1 (and 3 other pods): …"
    let mut by_reasons: Vec<(String, String, usize)> = Vec::new();
    for kv in items {
        let Ok(pod) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        let Some((meta, spec)) = pod_parts(pods, &pod) else {
            continue;
        };
        let violations = evaluate(level, &meta, &spec);
        if violations.is_empty() {
            continue;
        }
        let reasons = reasons_of(&violations);
        match by_reasons.iter_mut().find(|(r, _, _)| *r == reasons) {
            Some((_, _, others)) => *others += 1,
            None => by_reasons.push((reasons, crate::rest::display_name(&pod), 0)),
        }
    }
    if by_reasons.is_empty() {
        return Ok(());
    }
    warnings::add(format!(
        "existing pods in namespace \"{ns}\" violate the new PodSecurity enforce level \"{level}\""
    ));
    for (reasons, first, others) in by_reasons.into_iter().take(EXISTING_PODS_NAMED) {
        warnings::add(match others {
            0 => format!("{first}: {reasons}"),
            1 => format!("{first} (and 1 other pod): {reasons}"),
            n => format!("{first} (and {n} other pods): {reasons}"),
        });
    }
    Ok(())
}

fn reasons_of(violations: &[Violation]) -> String {
    let reasons: Vec<&str> = violations.iter().map(|v| v.reason.as_str()).collect();
    reasons.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_and_workload_templates_are_found_where_their_kind_keeps_them() {
        let pods = registry::find("", "v1", "pods").unwrap();
        let pod = json!({"metadata": {"name": "p", "annotations": {"a": "b"}},
            "spec": {"hostNetwork": true, "containers": [{"name": "c"}]}});
        let (meta, spec) = pod_parts(pods, &pod).unwrap();
        assert_eq!(meta.name.as_deref(), Some("p"));
        assert_eq!(spec.host_network, Some(true));
        let deployments = registry::find("apps", "v1", "deployments").unwrap();
        let deployment = json!({"metadata": {"name": "d"}, "spec": {"template": {
            "metadata": {"labels": {"app": "x"}},
            "spec": {"hostPID": true, "containers": [{"name": "c"}]}}}});
        let (meta, spec) = pod_parts(deployments, &deployment).unwrap();
        assert!(meta.labels.unwrap().contains_key("app"));
        assert_eq!(spec.host_pid, Some(true));
        let services = registry::find("", "v1", "services").unwrap();
        assert!(pod_parts(services, &json!({"spec": {}})).is_none());
    }

    #[test]
    fn a_bad_enforce_label_enforces_restricted_and_is_refused_on_write() {
        let labels: BTreeMap<String, String> = [(
            "pod-security.kubernetes.io/enforce".to_string(),
            "strictest".to_string(),
        )]
        .into();
        assert_eq!(
            policy_for(&labels).enforce.level,
            pod_security::Level::Restricted
        );
        let namespaces = registry::find("", "v1", "namespaces").unwrap();
        let ns = json!({"metadata": {"name": "n", "labels": labels}});
        let err = check_namespace_labels("n", namespaces, &ns).unwrap_err();
        assert_eq!(err.code(), 422);
        assert!(err.message().contains("metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \"strictest\": must be one of privileged, baseline, restricted"), "{}", err.message());
    }
}
