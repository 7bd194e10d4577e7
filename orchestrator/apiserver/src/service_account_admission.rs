//! The ServiceAccount admission of new pods, as Kubernetes' plugin of that name: a pod runs
//! as `default` unless it names another ServiceAccount, which must exist; unless the pod
//! or its ServiceAccount opts out (`automountServiceAccountToken: false`), every container
//! gets the projected `kube-api-access-*` volume at
//! `/var/run/secrets/kubernetes.io/serviceaccount` (a bound token, the cluster CA from the
//! `kube-root-ca.crt` ConfigMap, the namespace); the ServiceAccount's imagePullSecrets are
//! the pod's when it has none.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{ApiError, Result};
use crate::object;
use crate::state::AppState;

/// Where the token, ca.crt and namespace appear in containers.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The ConfigMap with the cluster CA the root-CA publisher keeps in every namespace.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// The lifetime the kubelet asks for the projected token (Kubernetes' 3607 s).
pub const PROJECTED_TOKEN_SECONDS: i64 = 3607;
/// How long a pod waits for the `default` ServiceAccount of a namespace just created or a server just started (the
/// ServiceAccount controller makes it within moments).
const DEFAULT_SA_WAIT: Duration = Duration::from_secs(15);

/// Admit a new pod in `ns`: its ServiceAccount, token volume and pull secrets.
pub async fn admit_pod(state: &AppState, ns: &str, pod: &mut Value) -> Result<()> {
    let name = object::name(pod).unwrap_or_default().to_string();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let named = ["serviceAccountName", "serviceAccount"]
        .iter()
        .find_map(|f| {
            spec.get(*f)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        });
    let sa_name = named.unwrap_or("default").to_string();
    spec.insert("serviceAccountName".into(), json!(sa_name));
    spec.insert("serviceAccount".into(), json!(sa_name));
    let sa = find_service_account(state, ns, &sa_name).await?.ok_or_else(|| {
        ApiError::Forbidden {
            group: String::new(),
            kind: "pods".into(),
            name: name.clone(),
            message: format!(
                "error looking up service account {ns}/{sa_name}: serviceaccount \"{sa_name}\" not found"
            ),
        }
    })?;
    let Some(spec) = pod.get_mut("spec") else {
        return Ok(());
    };
    if automounts(spec, &sa) {
        mount_token(spec);
    }
    let pod_pull_secrets = spec.get("imagePullSecrets").and_then(Value::as_array);
    if pod_pull_secrets.is_none_or(|s| s.is_empty()) {
        if let Some(secrets) = sa
            .get("imagePullSecrets")
            .filter(|s| s.as_array().is_some_and(|a| !a.is_empty()))
        {
            spec["imagePullSecrets"] = secrets.clone();
        }
    }
    Ok(())
}

/// The ServiceAccount `ns/name`; `default` is waited for a moment (a namespace just made).
async fn find_service_account(state: &AppState, ns: &str, name: &str) -> Result<Option<Value>> {
    let deadline = Instant::now() + DEFAULT_SA_WAIT;
    loop {
        let found =
            crate::service_accounts::lookup_object(state, "serviceaccounts", Some(ns), name)
                .await?;
        if found.is_some() || name != "default" || Instant::now() >= deadline {
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pod's `automountServiceAccountToken`, else the ServiceAccount's, else true.
fn automounts(spec: &Value, sa: &Value) -> bool {
    let pod = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool);
    let account = sa
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool);
    pod.or(account).unwrap_or(true)
}

/// The projected volume Kubernetes adds (`kube-api-access-<5 chars>`).
fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": PROJECTED_TOKEN_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

/// Add the token volume and mount it in every (init) container that has nothing mounted at
/// [`TOKEN_MOUNT_PATH`] yet; nothing when every container already has.
fn mount_token(spec: &mut Value) {
    let volume = format!("kube-api-access-{}", crate::rest::write::random_suffix());
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers {
            let mounts = c
                .as_object_mut()
                .map(|c| c.entry("volumeMounts").or_insert_with(|| json!([])));
            let Some(mounts) = mounts.and_then(Value::as_array_mut) else {
                continue;
            };
            let taken = mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH));
            if !taken {
                mounts
                    .push(json!({"name": volume, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}));
                mounted = true;
            }
        }
    }
    if mounted {
        let volumes = spec
            .as_object_mut()
            .map(|s| s.entry("volumes").or_insert_with(|| json!([])));
        if let Some(list) = volumes.and_then(Value::as_array_mut) {
            list.push(token_volume(&volume));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_gets_the_token_volume_once() {
        let mut spec = json!({
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "app"},
                {"name": "own", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]}],
        });
        mount_token(&mut spec);
        let volumes = spec["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 1);
        let name = volumes[0]["name"].as_str().unwrap();
        assert!(
            name.starts_with("kube-api-access-") && name.len() == 21,
            "{name}"
        );
        let sources = &volumes[0]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(spec["initContainers"][0]["volumeMounts"][0]["name"], name);
        assert_eq!(spec["containers"][0]["volumeMounts"][0]["readOnly"], true);
        assert_eq!(
            spec["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );

        let mut all_own = json!({"containers": [{"name": "own",
            "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]}]});
        mount_token(&mut all_own);
        assert!(all_own.get("volumes").is_none());
    }

    #[test]
    fn the_pod_decides_then_the_service_account() {
        let sa_off = json!({"automountServiceAccountToken": false});
        assert!(automounts(&json!({}), &json!({})));
        assert!(!automounts(&json!({}), &sa_off));
        assert!(automounts(
            &json!({"automountServiceAccountToken": true}),
            &sa_off
        ));
        assert!(!automounts(
            &json!({"automountServiceAccountToken": false}),
            &json!({})
        ));
    }
}
