//! Admission around writes that is not the kind's own strategy: the namespace lifecycle
//! (objects only in an existing, non-terminating namespace), the create-time reset the
//! kind's strategy asks for, and DefaultTolerationSeconds (pods tolerate a not-ready or
//! unreachable node for a while unless they say otherwise). ClusterIP/NodePort allocation is in [`crate::allocator`].

use bpfk_apimachinery::registry::{self, ResourceInfo};
use serde_json::{json, Value};

use crate::error::{ApiError, Result};
use crate::object;
use crate::state::AppState;

pub use bpfk_apimachinery::kinds::core::namespace::SYSTEM_NAMESPACES;

/// Taint of a node whose Ready condition is False.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
/// Taint of a node whose Ready condition is Unknown.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// The admission plugins' settings (kube-apiserver's flags of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionSettings {
    /// `--default-not-ready-toleration-seconds`.
    pub not_ready_toleration_seconds: i64,
    /// `--default-unreachable-toleration-seconds`.
    pub unreachable_toleration_seconds: i64,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        AdmissionSettings {
            not_ready_toleration_seconds: 300,
            unreachable_toleration_seconds: 300,
        }
    }
}

/// Reset what a client may not set on create (the kind's `prepare_create`), then the
/// mutating admission of new objects.
pub fn prepare_create(state: &AppState, res: &ResourceInfo, obj: &mut Value) {
    if let Some(map) = obj.as_object_mut() {
        res.strategy.prepare_create(map);
    }
    if res.group.is_empty() && res.plural == "pods" {
        add_default_tolerations(obj, &state.admission);
    }
}

/// DefaultTolerationSeconds: a pod with no toleration of the not-ready (unreachable)
/// NoExecute taint gets one for the configured seconds, so taint-based eviction moves it
/// that long after its node fails.
pub fn add_default_tolerations(pod: &mut Value, settings: &AdmissionSettings) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    let defaults = [
        (NOT_READY_TAINT, settings.not_ready_toleration_seconds),
        (UNREACHABLE_TAINT, settings.unreachable_toleration_seconds),
    ];
    for (taint, seconds) in defaults {
        if !list.iter().any(|t| tolerates_no_execute(t, taint)) {
            list.push(json!({"key": taint, "operator": "Exists",
                "effect": "NoExecute", "tolerationSeconds": seconds}));
        }
    }
}

/// Whether toleration `t` (of any duration) covers the NoExecute taint `key`, as the
/// admission plugin decides: the key matches or is empty, the effect is NoExecute or empty.
fn tolerates_no_execute(t: &Value, key: &str) -> bool {
    let field = |f: &str| t.get(f).and_then(Value::as_str).unwrap_or("");
    (field("key") == key || field("key").is_empty()) && matches!(field("effect"), "NoExecute" | "")
}

/// Refuse objects in a namespace that does not exist (404) or is terminating (403, worded
/// as Kubernetes' NamespaceLifecycle admission: `pods "x" is forbidden: unable to create new
/// content in namespace ns because it is being terminated`).
pub async fn check_namespace_accepts(
    state: &AppState,
    res: &ResourceInfo,
    name: &str,
    ns: &str,
) -> Result<()> {
    match namespace_object(state, ns).await? {
        None => Err(ApiError::NotFound {
            group: String::new(),
            kind: "namespaces".into(),
            name: ns.into(),
        }),
        Some(obj) => {
            if object::is_deleting(&obj) {
                Err(ApiError::Forbidden {
                    group: res.group.into(),
                    kind: res.plural.into(),
                    name: name.into(),
                    message: format!("unable to create new content in namespace {ns} because it is being terminated"),
                })
            } else {
                Ok(())
            }
        }
    }
}

/// The namespace `ns` as stored, None when it does not exist: from the namespaces watch
/// cache, else from etcd (a namespace the cache does not hold yet), as Kubernetes'
/// NamespaceLifecycle admission looks it up.
pub async fn namespace_object(state: &AppState, ns: &str) -> Result<Option<Value>> {
    let key = format!("/registry/namespaces/{ns}");
    let cache = registry::find("", "v1", "namespaces")
        .and_then(|r| state.cache(r).ok())
        .filter(|c| c.is_ready());
    let cached = match cache {
        Some(cache) => cache.get(&key).await,
        None => None,
    };
    let found = match cached {
        Some(kv) => Some(kv),
        None => state.store.get(&key).await.map_err(ApiError::from)?,
    };
    Ok(found.map(|kv| serde_json::from_slice(&kv.value).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tolerations_after(spec: Value) -> Value {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": spec});
        let settings = AdmissionSettings {
            not_ready_toleration_seconds: 300,
            unreachable_toleration_seconds: 7,
        };
        add_default_tolerations(&mut pod, &settings);
        pod["spec"]["tolerations"].clone()
    }

    #[test]
    fn a_pod_without_node_failure_tolerations_gets_both() {
        assert_eq!(
            tolerations_after(json!({"containers": []})),
            json!([
                {"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 7},
            ])
        );
    }

    #[test]
    fn a_pod_tolerating_a_taint_keeps_its_own_toleration() {
        let own = json!({"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5});
        let got = tolerations_after(json!({"tolerations": [own.clone()]}));
        assert_eq!(got.as_array().map(Vec::len), Some(2));
        assert_eq!(got[0], own);
        assert_eq!(got[1]["key"], NOT_READY_TAINT);
        let everything = json!({"operator": "Exists"});
        let got = tolerations_after(json!({"tolerations": [everything.clone()]}));
        assert_eq!(got, json!([everything]));
        let no_schedule =
            json!({"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoSchedule"});
        let got = tolerations_after(json!({"tolerations": [no_schedule]}));
        assert_eq!(got.as_array().map(Vec::len), Some(3));
    }
}
