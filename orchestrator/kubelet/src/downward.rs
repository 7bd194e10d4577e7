//! The Downward API: pod fields (`fieldRef`) and container resources (`resourceFieldRef`),
//! read by env vars and downwardAPI / projected volumes (pure).

use std::collections::BTreeMap;

use bpfk_common::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};

use crate::cri_config::PodRef;

/// What the pod object does not hold but `fieldRef` / `resourceFieldRef` may read.
#[derive(Debug, Clone, Default)]
pub struct FieldValues {
    pub pod_ip: Option<String>,
    pub host_ip: Option<String>,
    pub node_name: String,
    /// The node's allocatable CPU and memory: a container limit that is not set reads as
    /// these, as in Kubernetes.
    pub node_cpu: Option<String>,
    pub node_memory: Option<String>,
}

/// `k="v"` lines, sorted by key, as Kubernetes writes whole label or annotation maps.
pub fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    let lines: Vec<String> = map
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    lines.join("\n")
}

fn label_or_annotation(pod: &Pod, path: &str) -> Option<String> {
    let (key, labels) = path
        .strip_prefix("metadata.labels['")
        .map(|k| (k, true))
        .or_else(|| {
            path.strip_prefix("metadata.annotations['")
                .map(|k| (k, false))
        })?;
    let name = key.strip_suffix("']")?;
    let map = if labels {
        pod.metadata.labels.as_ref()
    } else {
        pod.metadata.annotations.as_ref()
    };
    Some(map.and_then(|m| m.get(name).cloned()).unwrap_or_default())
}

/// The value of `fieldRef` `path`; None for a path Kubernetes does not support. Whole
/// `metadata.labels` / `metadata.annotations` are for volumes only (`volume`).
pub fn field_value(
    pod: &Pod,
    id: &PodRef,
    path: &str,
    values: &FieldValues,
    volume: bool,
) -> Option<String> {
    let spec = pod.spec.as_ref();
    match path {
        "metadata.name" => Some(id.name.clone()),
        "metadata.namespace" => Some(id.namespace.clone()),
        "metadata.uid" => Some(id.uid.clone()),
        "metadata.labels" if volume => Some(format_map(pod.metadata.labels.as_ref())),
        "metadata.annotations" if volume => Some(format_map(pod.metadata.annotations.as_ref())),
        "spec.nodeName" if !volume => Some(values.node_name.clone()),
        "spec.serviceAccountName" if !volume => Some(
            spec.and_then(|s| s.service_account_name.clone())
                .unwrap_or_default(),
        ),
        "status.podIP" | "status.podIPs" if !volume => {
            Some(values.pod_ip.clone().unwrap_or_default())
        }
        "status.hostIP" | "status.hostIPs" if !volume => {
            Some(values.host_ip.clone().unwrap_or_default())
        }
        other => label_or_annotation(pod, other),
    }
}

fn quantity_of(container: &Container, limits: bool, name: &str) -> Option<Quantity> {
    let r = container.resources.as_ref()?;
    let map = if limits {
        r.limits.as_ref()
    } else {
        r.requests.as_ref()
    }?;
    map.get(name).and_then(|q| Quantity::parse(&q.0).ok())
}

/// The value of `resourceFieldRef` for `container`: the quantity divided by the divisor
/// (default 1), rounded up. An unset limit reads as the node's allocatable amount; an
/// unset request as the limit (the API server's defaulting) or 0.
pub fn resource_value(
    container: &Container,
    selector: &ResourceFieldSelector,
    values: &FieldValues,
) -> Result<String, String> {
    let resource = selector.resource.as_str();
    let (kind, name) = resource
        .split_once('.')
        .filter(|(k, _)| *k == "limits" || *k == "requests")
        .ok_or_else(|| format!("resourceFieldRef {resource:?}: unsupported resource"))?;
    let node = match name {
        "cpu" => values.node_cpu.as_deref(),
        "memory" => values.node_memory.as_deref(),
        _ => None,
    }
    .and_then(|q| Quantity::parse(q).ok());
    let limit = quantity_of(container, true, name).or(node);
    let value = if kind == "limits" {
        limit
    } else {
        quantity_of(container, false, name).or(quantity_of(container, true, name))
    }
    .unwrap_or_default();
    let divisor = match &selector.divisor {
        Some(d) => Quantity::parse(&d.0)
            .map_err(|e| format!("resourceFieldRef {resource:?}: divisor: {e}"))?,
        None => Quantity::from_milli(1000),
    };
    if divisor.milli() <= 0 {
        return Err(format!(
            "resourceFieldRef {resource:?}: divisor must be positive"
        ));
    }
    let (num, den) = (i128::from(value.milli()), i128::from(divisor.milli()));
    let rounded_up = (num + den - 1).div_euclid(den);
    Ok(rounded_up.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

    fn pod() -> (Pod, PodRef) {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "prod", "uid": "u-1",
                         "labels": {"app": "web", "tier": "front\"end"}},
            "spec": {"containers": [], "serviceAccountName": "sa"}
        }))
        .unwrap();
        let id = PodRef::of(&pod).unwrap();
        (pod, id)
    }

    #[test]
    fn fields_for_env_and_volumes() {
        let (pod, id) = pod();
        let v = FieldValues {
            pod_ip: Some("10.244.0.5".into()),
            node_name: "n1".into(),
            ..Default::default()
        };
        let get = |p: &str, vol: bool| field_value(&pod, &id, p, &v, vol);
        assert_eq!(get("metadata.name", false).as_deref(), Some("web"));
        assert_eq!(get("status.podIP", false).as_deref(), Some("10.244.0.5"));
        assert_eq!(get("status.podIP", true), None, "not for volumes");
        assert_eq!(get("spec.serviceAccountName", false).as_deref(), Some("sa"));
        assert_eq!(get("metadata.labels['app']", true).as_deref(), Some("web"));
        assert_eq!(get("metadata.labels['none']", false).as_deref(), Some(""));
        assert_eq!(
            get("metadata.labels", true).as_deref(),
            Some("app=\"web\"\ntier=\"front\\\"end\"")
        );
        assert_eq!(
            get("metadata.labels", false),
            None,
            "whole maps: volumes only"
        );
        assert_eq!(get("spec.nope", false), None);
    }

    #[test]
    fn resources_round_up_and_default_to_the_node() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "64Mi"}}
        }))
        .unwrap();
        let v = FieldValues {
            node_cpu: Some("4".into()),
            node_memory: Some("8Gi".into()),
            ..Default::default()
        };
        let sel = |r: &str, d: Option<&str>| ResourceFieldSelector {
            resource: r.into(),
            divisor: d.map(|d| K8sQuantity(d.into())),
            container_name: None,
        };
        let get = |r: &str, d: Option<&str>| resource_value(&c, &sel(r, d), &v);
        assert_eq!(get("requests.cpu", None).unwrap(), "1");
        assert_eq!(get("requests.cpu", Some("1m")).unwrap(), "250");
        assert_eq!(get("limits.cpu", None).unwrap(), "4", "node allocatable");
        assert_eq!(get("limits.memory", Some("1Mi")).unwrap(), "64");
        assert_eq!(get("requests.memory", None).unwrap(), "67108864");
        assert!(get("limits.gpu", None).is_ok());
        assert!(get("bogus", None).unwrap_err().contains("bogus"));
        assert!(get("limits.cpu", Some("0")).is_err());
    }
}
