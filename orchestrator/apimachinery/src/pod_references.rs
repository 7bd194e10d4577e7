//! What a pod refers to by name in its namespace: the ConfigMaps and Secrets of its env,
//! envFrom, volumes (projected sources too) and imagePullSecrets, and its
//! PersistentVolumeClaims. The kubelet reads these for the pod; the Node authorizer lets a
//! node read exactly these for the pods bound to it.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, Pod, Volume};

/// The names of the ConfigMaps, Secrets and PersistentVolumeClaims a pod refers to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// ConfigMap names.
    pub config_maps: BTreeSet<String>,
    /// Secret names.
    pub secrets: BTreeSet<String>,
    /// PersistentVolumeClaim names.
    pub persistent_volume_claims: BTreeSet<String>,
}

fn container_references(c: &Container, out: &mut References) {
    for e in c.env.iter().flatten() {
        let Some(from) = &e.value_from else { continue };
        if let Some(r) = &from.config_map_key_ref {
            out.config_maps.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_key_ref {
            out.secrets.insert(r.name.clone());
        }
    }
    for from in c.env_from.iter().flatten() {
        if let Some(r) = &from.config_map_ref {
            out.config_maps.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_ref {
            out.secrets.insert(r.name.clone());
        }
    }
}

fn volume_references(v: &Volume, out: &mut References) {
    if let Some(claim) = &v.persistent_volume_claim {
        out.persistent_volume_claims
            .insert(claim.claim_name.clone());
    }
    if let Some(cm) = &v.config_map {
        out.config_maps.insert(cm.name.clone());
    }
    if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
        out.secrets.insert(name);
    }
    let sources = v.projected.iter().flat_map(|p| p.sources.iter().flatten());
    for s in sources {
        if let Some(cm) = &s.config_map {
            out.config_maps.insert(cm.name.clone());
        }
        if let Some(secret) = &s.secret {
            out.secrets.insert(secret.name.clone());
        }
    }
}

/// Everything `pod` refers to (its containers, init containers, volumes and pull secrets).
pub fn references(pod: &Pod) -> References {
    let mut out = References::default();
    let Some(spec) = pod.spec.as_ref() else {
        return out;
    };
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        container_references(c, &mut out);
    }
    for v in spec.volumes.iter().flatten() {
        volume_references(v, &mut out);
    }
    for s in spec.image_pull_secrets.iter().flatten() {
        out.secrets.insert(s.name.clone());
    }
    out.config_maps.retain(|n| !n.is_empty());
    out.secrets.retain(|n| !n.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_of_env_volumes_and_pull_secrets() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "imagePullSecrets": [{"name": "regcred"}],
                "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "init-cm"}}]}],
                "containers": [{"name": "c", "env": [
                    {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm1", "key": "a"}}},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s1", "key": "b"}}},
                    {"name": "C", "value": "x"}
                ], "envFrom": [{"secretRef": {"name": "s2"}, "prefix": "S_"}]}],
                "volumes": [
                    {"name": "v1", "configMap": {"name": "cm2"}},
                    {"name": "v2", "secret": {"secretName": "s3"}},
                    {"name": "v3", "projected": {"sources": [
                        {"configMap": {"name": "cm3"}}, {"secret": {"name": "s4"}},
                        {"downwardAPI": {"items": []}}
                    ]}},
                    {"name": "v4", "emptyDir": {}},
                    {"name": "v5", "persistentVolumeClaim": {"claimName": "data"}}
                ]
            }
        }))
        .unwrap();
        let r = references(&pod);
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(r.config_maps, set(&["cm1", "cm2", "cm3", "init-cm"]));
        assert_eq!(r.secrets, set(&["regcred", "s1", "s2", "s3", "s4"]));
        assert_eq!(r.persistent_volume_claims, set(&["data"]));
    }
}
