//! Subresources with their own shape: pods/binding, pods/eviction, */scale,
//! namespaces/finalize.

use bpfk_apimachinery::registry::ResourceInfo;
use serde_json::{json, Value};

use super::write::{self, Part, PatchKind};
use super::{conflict, not_found};
use crate::error::{ApiError, Result};
use crate::object;
use crate::query::Query;
use crate::state::AppState;

/// Evict a pod (`pods/eviction`, what `kubectl drain` posts): the Eviction names the pod and
/// may carry the delete's options; with no PodDisruptionBudgets served, nothing refuses it,
/// so it is the pod's delete. Answers a `Success` Status, as kube-apiserver (201).
pub async fn evict(
    state: &AppState,
    pods: &'static ResourceInfo,
    ns: Option<&str>,
    pod: &str,
    eviction: &Value,
    q: &Query,
) -> Result<Value> {
    let named = eviction.pointer("/metadata/name").and_then(Value::as_str);
    if named.is_some_and(|n| n != pod) {
        return Err(ApiError::bad_request(format!(
            "name in URL does not match name in Eviction object ({pod} vs {})",
            named.unwrap_or_default()
        )));
    }
    let opts = super::delete::DeleteOptions::from_request(q, eviction.get("deleteOptions"))?;
    super::delete::delete(state, pods, ns, pod, &opts).await?;
    Ok(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

/// Bind a pod to a node (`pods/binding` or the `bindings` collection).
pub async fn bind(
    state: &AppState,
    pods: &'static ResourceInfo,
    ns: &str,
    pod: &str,
    binding: &Value,
) -> Result<Value> {
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::Invalid {
            group: String::new(),
            kind: "Binding".into(),
            name: pod.into(),
            causes: vec![crate::error::Cause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: "target.name".into(),
            }],
        })?
        .to_string();
    let q = Query::default();
    // spec.nodeName and the PodScheduled condition in one write (one etcd transaction, one
    // watch event), as Kubernetes' binding storage does
    write::modify(state, pods, Some(ns), pod, Part::Whole, &q, |cur| {
        if object::is_deleting(cur) {
            return Err(conflict(
                pods,
                pod,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        if let Some(existing) = cur
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(conflict(
                pods,
                pod,
                format!("pod {pod} is already assigned to node \"{existing}\""),
            ));
        }
        if let Some(uid) = binding.pointer("/metadata/uid").and_then(Value::as_str) {
            if object::uid(cur) != Some(uid) {
                return Err(conflict(
                    pods,
                    pod,
                    "the pod's UID does not match the binding's",
                ));
            }
        }
        let mut next = cur.clone();
        next["spec"]["nodeName"] = json!(node);
        set_pod_scheduled(&mut next);
        Ok(next)
    })
    .await?;
    Ok(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

/// Sets the `PodScheduled=True` condition in a pod's status, replacing an earlier one.
fn set_pod_scheduled(pod: &mut Value) {
    let Some(map) = pod.as_object_mut() else {
        return;
    };
    let status = map.entry("status").or_insert_with(|| json!({}));
    let Some(status) = status.as_object_mut() else {
        return;
    };
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if let Value::Array(conds) = conditions {
        conds.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
        conds.push(json!({
            "type": "PodScheduled", "status": "True",
            "lastProbeTime": null, "lastTransitionTime": object::now_rfc3339()
        }));
    }
}

/// The `autoscaling/v1 Scale` view of a Deployment or ReplicaSet.
pub fn scale_of(res: &ResourceInfo, obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector")
        .and_then(|s| bpfk_apimachinery::selectors::Selector::from_value(s).ok())
        .map(|s| s.to_string())
        .unwrap_or_default();
    let _ = res;
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj.pointer("/metadata/name"),
            "namespace": obj.pointer("/metadata/namespace"),
            "uid": obj.pointer("/metadata/uid"),
            "resourceVersion": obj.pointer("/metadata/resourceVersion"),
            "creationTimestamp": obj.pointer("/metadata/creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        }
    })
}

/// GET of `<res>/scale`.
pub async fn get_scale(
    state: &AppState,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<Value> {
    let (obj, _) = write::load(state, res, ns, name).await?;
    Ok(scale_of(res, &obj))
}

/// PUT or PATCH of `<res>/scale`: only `spec.replicas` changes.
pub async fn write_scale(
    state: &AppState,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    change: ScaleChange<'_>,
    q: &Query,
) -> Result<Value> {
    let obj = write::modify(state, res, ns, name, Part::Main, q, |cur| {
        let scale = scale_of(res, cur);
        let new_scale = match &change {
            ScaleChange::Replace(body) => {
                if let Some(rv) = body.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
                    if Some(rv) != object::resource_version(cur) {
                        return Err(conflict(res, name, "the object has been modified; please apply your changes to the latest version and try again"));
                    }
                }
                (*body).clone()
            }
            ScaleChange::Patch(kind, doc) => write::apply_patch(res, *kind, &scale, doc)?,
        };
        let replicas = scale_replicas(&new_scale, name)?.unwrap_or(0);
        let mut next = cur.clone();
        next["spec"]["replicas"] = json!(replicas);
        Ok(next)
    })
    .await?;
    Ok(scale_of(res, &obj))
}

/// A Scale's `spec.replicas` (`None` when unset), refused when not an i32 or negative.
fn scale_replicas(scale: &Value, name: &str) -> Result<Option<i64>> {
    let replicas = match scale.pointer("/spec/replicas") {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v.as_i64().filter(|r| i32::try_from(*r).is_ok()).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Scale in version \"v1\" cannot be handled as a Scale: strict decoding error: field \"spec.replicas\": invalid type: {v}, expected i32"
            ))
        })?,
    };
    if replicas < 0 {
        return Err(ApiError::Invalid {
            group: "autoscaling".into(),
            kind: "Scale".into(),
            name: name.into(),
            causes: vec![crate::error::Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                field: "spec.replicas".into(),
            }],
        });
    }
    Ok(Some(replicas))
}

/// Server-side apply to `<res>/scale` (a Scale as `application/apply-patch+yaml`): its
/// `spec.replicas` applied to the object's by the request's field manager and recorded as
/// applied through `scale`, so a replica count another manager owns is a conflict (409) unless
/// forced, and leaving it out gives the count up, as Kubernetes' scale apply does.
pub async fn apply_scale(
    state: &AppState,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    config: &Value,
    q: &Query,
) -> Result<Value> {
    let api_version = config.get("apiVersion").and_then(Value::as_str);
    let kind = config.get("kind").and_then(Value::as_str);
    if (api_version, kind) != (Some("autoscaling/v1"), Some("Scale")) {
        return Err(ApiError::bad_request(format!(
            "an apply to {}/scale takes an autoscaling/v1 Scale, not {}/{}",
            res.plural,
            api_version.unwrap_or("<no apiVersion>"),
            kind.unwrap_or("<no kind>")
        )));
    }
    let named = config.pointer("/metadata/name").and_then(Value::as_str);
    if named.is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(format!(
            "the Scale's metadata.name {:?} does not match the object {name:?}",
            named.unwrap_or_default()
        )));
    }
    let replicas = scale_replicas(config, name)?;
    let mut object = json!({"apiVersion": res.api_version(), "kind": res.kind,
                            "metadata": {"name": name}});
    if let Some(ns) = ns {
        object["metadata"]["namespace"] = json!(ns);
    }
    if let Some(replicas) = replicas {
        object["spec"] = json!({ "replicas": replicas });
    }
    let target = write::Target { res, ns, name };
    let written = write::apply_through(state, target, Part::Main, "scale", object, q).await?;
    Ok(scale_of(res, &written.object))
}

pub enum ScaleChange<'a> {
    Replace(&'a Value),
    Patch(PatchKind, &'a Value),
}

/// PUT of `namespaces/<name>/finalize`: only `spec.finalizers` changes; the namespace goes away
/// when it is terminating and no finalizer is left.
pub async fn finalize_namespace(
    state: &AppState,
    res: &'static ResourceInfo,
    name: &str,
    body: &Value,
) -> Result<Value> {
    let finalizers = body
        .pointer("/spec/finalizers")
        .cloned()
        .unwrap_or_else(|| json!([]));
    let q = Query::default();
    write::modify(state, res, None, name, Part::Main, &q, |cur| {
        let mut next = cur.clone();
        next["spec"]["finalizers"] = finalizers.clone();
        Ok(next)
    })
    .await
    .map_err(|e| match e {
        ApiError::NotFound { .. } => not_found(res, name),
        other => other,
    })
}
