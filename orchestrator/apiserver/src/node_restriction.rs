//! NodeRestriction admission, as Kubernetes': a node's identity writes only its own Node
//! (and its status), its own Lease in `kube-node-lease`, the status of pods bound to it, and
//! deletes or evicts only those pods; it creates no pods (bpfk has no mirror pods) and
//! requests tokens only bound to its own pods. Everyone else passes untouched.

use bpfk_apimachinery::registry::{self, ResourceInfo};
use bpfk_auth::authz::ResourceAttributes;
use bpfk_auth::UserInfo;
use serde_json::Value;

use crate::authz::RequestAttributes;
use crate::error::{ApiError, Result};
use crate::state::AppState;

/// The namespace of the nodes' heartbeat leases.
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// 403 as kube-apiserver words it: `nodes "n2" is forbidden: node "n1" is not allowed …`.
fn refuse(node: &str, (group, resource, name): (&str, &str, &str), why: String) -> ApiError {
    ApiError::Forbidden {
        group: group.into(),
        kind: resource.into(),
        name: name.into(),
        message: format!("node {node:?} {why}"),
    }
}

/// The checks that need only the request (its verb, resource and name) and, for pods,
/// the stored pod.
pub async fn check_request(
    state: &AppState,
    user: &UserInfo,
    attrs: &RequestAttributes,
) -> Result<()> {
    let (Some(node), Some(r)) = (user.node_name(), attrs.resource.as_ref()) else {
        return Ok(());
    };
    let writes = matches!(
        attrs.verb.as_str(),
        "update" | "patch" | "delete" | "create"
    );
    if !writes || r.name.is_empty() {
        return Ok(());
    }
    match (r.api_group.as_str(), r.resource.as_str()) {
        ("", "nodes") if r.name != node => Err(refuse(
            node,
            ("", "nodes", &r.name),
            format!("is not allowed to modify node {:?}", r.name),
        )),
        ("coordination.k8s.io", "leases") => own_lease(node, &r.namespace, &r.name),
        ("", "pods") => pod_write(state, node, &attrs.verb, r).await,
        _ => Ok(()),
    }
}

fn own_lease(node: &str, namespace: &str, name: &str) -> Result<()> {
    match namespace == NODE_LEASE_NAMESPACE && name == node {
        true => Ok(()),
        false => Err(refuse(
            node,
            ("coordination.k8s.io", "leases", name),
            format!("is not allowed to modify lease {namespace}/{name}"),
        )),
    }
}

async fn pod_write(state: &AppState, node: &str, verb: &str, r: &ResourceAttributes) -> Result<()> {
    let allowed = match (r.subresource.as_str(), verb) {
        ("status", "update" | "patch") | ("eviction", "create") | ("", "delete") => true,
        // exec, attach, portforward, log, binding…: not a node's writes
        _ => false,
    };
    if !allowed {
        let why = format!(
            "can only update the status of, evict or delete pods, not {verb} pods/{}",
            r.subresource
        );
        return Err(refuse(node, ("", "pods", &r.name), why));
    }
    let res = registry::find("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("pods are not served"))?;
    let key = crate::state::key(res, Some(&r.namespace), &r.name);
    let bound = state.ready_cache(res).await?.get(&key).await;
    let bound_to = bound
        .as_ref()
        .and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
        .and_then(|pod| {
            pod.pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .map(String::from)
        });
    match bound_to.as_deref() {
        Some(n) if n == node => Ok(()),
        // a pod that is gone: the request finds that out itself (404)
        None if bound.is_none() => Ok(()),
        _ => Err(refuse(
            node,
            ("", "pods", &r.name),
            format!(
                "can only modify pods bound to it; {}/{} is not",
                r.namespace, r.name
            ),
        )),
    }
}

/// The checks of a create, with the object's name: a node registers only itself, takes only
/// its own lease, and creates no pods.
pub fn check_create(
    user: Option<&UserInfo>,
    res: &ResourceInfo,
    ns: &str,
    obj: &Value,
) -> Result<()> {
    let Some(node) = user.and_then(UserInfo::node_name) else {
        return Ok(());
    };
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if res.is("", "Node") && name != node {
        let why = format!("is not allowed to modify node {name:?}");
        return Err(refuse(node, ("", "nodes", name), why));
    }
    if res.is("coordination.k8s.io", "Lease") {
        return own_lease(node, ns, name);
    }
    if res.is("", "Pod") {
        let why = "can only create mirror pods, which bpfk does not have".to_string();
        return Err(refuse(node, ("", "pods", name), why));
    }
    Ok(())
}

/// A node's TokenRequest must be bound to a pod bound to that node.
pub fn check_token_binding(user: Option<&UserInfo>, bound_pod_node: Option<&str>) -> Result<()> {
    let Some(node) = user.and_then(UserInfo::node_name) else {
        return Ok(());
    };
    match bound_pod_node == Some(node) {
        true => Ok(()),
        false => Err(refuse(
            node,
            ("", "serviceaccounts", ""),
            "can only request tokens bound to pods bound to it".into(),
        )),
    }
}
