//! Kind-specific rules around writes: namespace lifecycle, ClusterIP and NodePort allocation,
//! what the server resets on create.

use std::net::Ipv4Addr;

use bpfk_apimachinery::registry::{self, ResourceInfo};
use rand::Rng;
use serde_json::{json, Value};

use crate::error::{ApiError, Cause, Result};
use crate::object;
use crate::state::AppState;

/// The service ClusterIP range, 10.96.0.0/12. 10.96.0.1 is kept for the `kubernetes` service.
const SERVICE_NET: u32 = u32::from_be_bytes([10, 96, 0, 0]);
const SERVICE_NET_SIZE: u32 = 1 << 20;
/// NodePort range.
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

const IP_KEYS: &str = "/registry/ranges/serviceips/";
const PORT_KEYS: &str = "/registry/ranges/servicenodeports/";

/// Namespaces that always exist and can never be deleted.
pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// Reset what a client may not set on create.
pub fn prepare_create(res: &ResourceInfo, obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    match (res.group, res.plural) {
        ("", "pods") => {
            map.insert("status".into(), json!({"phase": "Pending"}));
        }
        ("", "namespaces") => {
            map.insert("status".into(), json!({"phase": "Active"}));
            let spec = map.entry("spec").or_insert_with(|| json!({}));
            if spec.get("finalizers").is_none() {
                spec["finalizers"] = json!(["kubernetes"]);
            }
        }
        ("apps", "deployments") | ("apps", "replicasets") | ("", "services") => {
            map.remove("status");
        }
        _ => {}
    }
}

/// Endpoints may be created by a PUT, as in Kubernetes.
pub fn create_on_update(res: &ResourceInfo) -> bool {
    matches!((res.group, res.plural), ("", "endpoints"))
}

/// Whether all non-metadata finalization of an object being deleted is done.
pub fn finalizers_done(res: &ResourceInfo, obj: &Value) -> bool {
    if (res.group, res.plural) == ("", "namespaces") {
        return obj
            .get("spec")
            .and_then(|s| s.get("finalizers"))
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
    }
    true
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
    let key = format!("/registry/namespaces/{ns}");
    // the namespaces watch cache answers without an etcd round trip; a namespace it does
    // not hold (yet) is looked up in etcd, as Kubernetes' NamespaceLifecycle admission does
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
    match found {
        None => Err(ApiError::NotFound {
            group: String::new(),
            kind: "namespaces".into(),
            name: ns.into(),
        }),
        Some(kv) => {
            let obj: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
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

/// What a create claimed, to give back if the create fails.
#[derive(Default)]
pub struct Allocation {
    keys: Vec<String>,
}

impl Allocation {
    pub async fn release(self, state: &AppState) {
        for key in self.keys {
            if let Err(e) = state.store.delete(&key, None).await {
                tracing::warn!(%key, "cannot release allocation: {e}");
            }
        }
    }
}

fn owner_of(obj: &Value) -> Vec<u8> {
    format!(
        "{}/{}",
        object::namespace(obj).unwrap_or_default(),
        object::name(obj).unwrap_or_default()
    )
    .into_bytes()
}

fn invalid_service(obj: &Value, field: &str, message: String) -> ApiError {
    ApiError::Invalid {
        group: String::new(),
        kind: "Service".into(),
        name: object::name(obj).unwrap_or_default().into(),
        causes: vec![Cause {
            reason: "FieldValueInvalid".into(),
            message,
            field: field.into(),
        }],
    }
}

/// Claim one key; false when someone holds it.
async fn claim(state: &AppState, key: &str, owner: Vec<u8>) -> Result<bool> {
    match state.store.create(key, owner).await {
        Ok(_) => Ok(true),
        Err(bpfk_store::StoreError::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn allocate_cluster_ip(
    state: &AppState,
    obj: &mut Value,
    alloc: &mut Allocation,
    old: Option<&Value>,
) -> Result<()> {
    let requested = cluster_ip(obj).to_string();
    if requested == "None" {
        obj["spec"]["clusterIPs"] = json!(["None"]);
        return Ok(());
    }
    if !needs_cluster_ip(obj) {
        return Ok(());
    }
    if !requested.is_empty() && old.is_some_and(|o| cluster_ip(o) == requested) {
        // kept by an update: already held
        return Ok(());
    }
    let ip = if requested.is_empty() {
        let mut found = None;
        for _ in 0..64 {
            let offset = rand::thread_rng().gen_range(2..SERVICE_NET_SIZE - 1);
            let ip = Ipv4Addr::from(SERVICE_NET + offset);
            if claim(state, &format!("{IP_KEYS}{ip}"), owner_of(obj)).await? {
                found = Some(ip);
                break;
            }
        }
        found.ok_or_else(|| ApiError::internal("no free ClusterIP in 10.96.0.0/12"))?
    } else {
        let ip: Ipv4Addr = requested.parse().map_err(|_| {
            invalid_service(
                obj,
                "spec.clusterIP",
                format!("Invalid value: {requested:?}: must be a valid IP address"),
            )
        })?;
        let n = u32::from(ip);
        if !(SERVICE_NET..SERVICE_NET + SERVICE_NET_SIZE).contains(&n) {
            return Err(invalid_service(
                obj,
                "spec.clusterIPs",
                format!("Invalid value: [{requested:?}]: failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is 10.96.0.0/12"),
            ));
        }
        if !claim(state, &format!("{IP_KEYS}{ip}"), owner_of(obj)).await? {
            return Err(invalid_service(
                obj,
                "spec.clusterIPs",
                format!("Invalid value: [{requested:?}]: failed to allocate IP {requested}: provided IP is already allocated"),
            ));
        }
        ip
    };
    alloc.keys.push(format!("{IP_KEYS}{ip}"));
    obj["spec"]["clusterIP"] = json!(ip.to_string());
    obj["spec"]["clusterIPs"] = json!([ip.to_string()]);
    Ok(())
}

fn wants_node_ports(obj: &Value) -> bool {
    matches!(
        obj.pointer("/spec/type").and_then(Value::as_str),
        Some("NodePort") | Some("LoadBalancer")
    )
}

async fn allocate_node_ports(
    state: &AppState,
    obj: &mut Value,
    alloc: &mut Allocation,
    old: Option<&Value>,
) -> Result<()> {
    if !wants_node_ports(obj) {
        return Ok(());
    }
    let count = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    for i in 0..count {
        let current = obj["spec"]["ports"][i]
            .get("nodePort")
            .and_then(Value::as_u64)
            .filter(|p| *p != 0);
        let held_before = |port: u64| {
            old.and_then(|o| o.pointer("/spec/ports"))
                .and_then(Value::as_array)
                .is_some_and(|ports| {
                    ports
                        .iter()
                        .any(|p| p.get("nodePort").and_then(Value::as_u64) == Some(port))
                })
        };
        match current {
            Some(port) if held_before(port) => continue,
            Some(port) => {
                if !(u64::from(*NODE_PORTS.start())..=u64::from(*NODE_PORTS.end())).contains(&port)
                {
                    return Err(invalid_service(obj, &format!("spec.ports[{i}].nodePort"), format!("Invalid value: {port}: provided port is not in the valid range. The range of valid ports is 30000-32767")));
                }
                if !claim(state, &format!("{PORT_KEYS}{port}"), owner_of(obj)).await? {
                    return Err(invalid_service(
                        obj,
                        &format!("spec.ports[{i}].nodePort"),
                        format!("Invalid value: {port}: provided port is already allocated"),
                    ));
                }
                alloc.keys.push(format!("{PORT_KEYS}{port}"));
            }
            None => {
                let mut found = None;
                for _ in 0..64 {
                    let port = rand::thread_rng().gen_range(NODE_PORTS);
                    if claim(state, &format!("{PORT_KEYS}{port}"), owner_of(obj)).await? {
                        found = Some(port);
                        break;
                    }
                }
                let port =
                    found.ok_or_else(|| ApiError::internal("no free NodePort in 30000-32767"))?;
                alloc.keys.push(format!("{PORT_KEYS}{port}"));
                obj["spec"]["ports"][i]["nodePort"] = json!(port);
            }
        }
    }
    Ok(())
}

/// Claim what a new object needs (a Service's ClusterIP and NodePorts).
pub async fn allocate(state: &AppState, res: &ResourceInfo, obj: &mut Value) -> Result<Allocation> {
    let mut alloc = Allocation::default();
    if !is_service(res) {
        return Ok(alloc);
    }
    let result = async {
        allocate_cluster_ip(state, obj, &mut alloc, None).await?;
        allocate_node_ports(state, obj, &mut alloc, None).await
    }
    .await;
    match result {
        Ok(()) => Ok(alloc),
        Err(e) => {
            alloc.release(state).await;
            Err(e)
        }
    }
}

/// Claim what a Service update needs that the old object did not hold (a ClusterIP when the
/// type leaves ExternalName, NodePorts when the type becomes NodePort or ports are added).
/// The caller releases the returned claims when the update is not stored.
pub async fn allocate_on_update(
    state: &AppState,
    res: &ResourceInfo,
    old: &Value,
    obj: &mut Value,
) -> Result<Allocation> {
    let mut alloc = Allocation::default();
    if !is_service(res) {
        return Ok(alloc);
    }
    let result = async {
        allocate_cluster_ip(state, obj, &mut alloc, Some(old)).await?;
        allocate_node_ports(state, obj, &mut alloc, Some(old)).await
    }
    .await;
    match result {
        Ok(()) => Ok(alloc),
        Err(e) => {
            alloc.release(state).await;
            Err(e)
        }
    }
}

/// Give back what an updated Service held before and no longer holds (NodePorts of removed
/// ports or of a type changed away from NodePort/LoadBalancer, a ClusterIP dropped by a
/// change to ExternalName). Called once the update is stored; a crash before this leaks
/// the keys until [`repair_allocations`] runs at the next start.
pub async fn release_after_update(state: &AppState, res: &ResourceInfo, old: &Value, new: &Value) {
    if !is_service(res) {
        return;
    }
    let kept = allocation_keys(new);
    let dropped = allocation_keys(old)
        .into_iter()
        .filter(|k| !kept.contains(k))
        .collect();
    Allocation { keys: dropped }.release(state).await;
}

fn is_service(res: &ResourceInfo) -> bool {
    (res.group, res.plural) == ("", "services")
}

fn service_type(svc: &Value) -> &str {
    svc.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

fn needs_cluster_ip(svc: &Value) -> bool {
    service_type(svc) != "ExternalName"
}

fn cluster_ip(svc: &Value) -> &str {
    svc.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn node_ports(svc: &Value) -> Vec<u64> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
        .filter(|p| *p != 0)
        .collect()
}

/// The allocation keys a stored Service holds.
fn allocation_keys(svc: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    if let Ok(ip) = cluster_ip(svc).parse::<Ipv4Addr>() {
        keys.push(format!("{IP_KEYS}{ip}"));
    }
    for port in node_ports(svc) {
        keys.push(format!("{PORT_KEYS}{port}"));
    }
    keys
}

/// Fill in what a Service update left out and the old object holds, as Kubernetes does: a
/// PUT without `spec.clusterIP`/`clusterIPs` (`kubectl replace -f` of the original manifest)
/// keeps the allocated ones, and a port without `nodePort` keeps the NodePort of the old port
/// with the same name. A type change to ClusterIP drops the old NodePorts (they are released
/// once the update is stored); a change to ExternalName drops the old ClusterIP.
pub fn prepare_update(res: &ResourceInfo, old: &Value, new: &mut Value) {
    if !is_service(res) || !new.get("spec").is_some_and(Value::is_object) {
        return;
    }
    let old_ip = cluster_ip(old).to_string();
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        if cluster_ip(new).is_empty() && !old_ip.is_empty() {
            new["spec"]["clusterIP"] = json!(old_ip);
        }
        let ips_missing = new
            .pointer("/spec/clusterIPs")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
        if ips_missing {
            if let Some(ips) = old.pointer("/spec/clusterIPs").filter(|v| v.is_array()) {
                new["spec"]["clusterIPs"] = ips.clone();
            }
        }
    } else if needs_cluster_ip(old) && !needs_cluster_ip(new) && cluster_ip(new) == old_ip {
        if let Some(spec) = new["spec"].as_object_mut() {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
    }
    let old_ports = node_ports(old);
    match (wants_node_ports(old), wants_node_ports(new)) {
        (true, true) => {
            let new_ports = node_ports(new);
            let by_name: std::collections::HashMap<&str, u64> = old
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    let port = p.get("nodePort").and_then(Value::as_u64)?;
                    Some((p.get("name").and_then(Value::as_str).unwrap_or(""), port))
                })
                .collect();
            if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut() {
                    let unset = p
                        .get("nodePort")
                        .is_none_or(|v| v.is_null() || v.as_u64() == Some(0));
                    if !unset {
                        continue;
                    }
                    let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                    if let Some(&port) = by_name.get(name) {
                        // not when another port of the new object already uses it
                        if !new_ports.contains(&port) {
                            p["nodePort"] = json!(port);
                        }
                    }
                }
            }
        }
        (true, false) => {
            if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut() {
                    let held = p
                        .get("nodePort")
                        .and_then(Value::as_u64)
                        .is_some_and(|n| old_ports.contains(&n));
                    if held {
                        if let Some(m) = p.as_object_mut() {
                            m.remove("nodePort");
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// What [`repair_allocations`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// Keys a Service holds that were missing (restored).
    pub restored: Vec<String>,
    /// Keys no Service holds (released).
    pub released: Vec<String>,
    /// Keys held by more than one Service (cannot be repaired automatically).
    pub doubly_held: Vec<String>,
}

/// Make the ClusterIP and NodePort allocation keys agree with the stored Services: a crash
/// between claiming a key and storing (or deleting) its Service leaves a key without a Service
/// (a leak) or a Service without its key (which could give its address twice). Service writes
/// wait while this runs (see [`AppState::allocations`]).
pub async fn repair_allocations(state: &AppState) -> Result<RepairReport> {
    let _exclusive = state.allocations.write().await;
    let mut report = RepairReport::default();
    let list_all = |prefix: &'static str| async move {
        state
            .store
            .list(prefix, bpfk_store::ListOptions::default())
            .await
            .map(|r| r.items)
            .map_err(ApiError::from)
    };
    let mut wanted: std::collections::BTreeMap<String, Vec<Vec<u8>>> = Default::default();
    for kv in list_all("/registry/services/").await? {
        let Ok(svc) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        for key in allocation_keys(&svc) {
            wanted.entry(key).or_default().push(owner_of(&svc));
        }
    }
    let mut existing = std::collections::BTreeMap::new();
    for kv in list_all(IP_KEYS)
        .await?
        .into_iter()
        .chain(list_all(PORT_KEYS).await?)
    {
        existing.insert(kv.key.clone(), kv.mod_revision);
    }
    for (key, owners) in &wanted {
        if owners.len() > 1 {
            tracing::error!(%key, "allocated to more than one Service");
            report.doubly_held.push(key.clone());
        }
        if !existing.contains_key(key) {
            match state.store.create(key, owners[0].clone()).await {
                Ok(_) | Err(bpfk_store::StoreError::AlreadyExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
            tracing::warn!(%key, "restored an allocation a Service holds");
            report.restored.push(key.clone());
        }
    }
    for (key, rev) in existing {
        if wanted.contains_key(&key) {
            continue;
        }
        match state.store.delete(&key, Some(rev)).await {
            Ok(_)
            | Err(bpfk_store::StoreError::NotFound(_))
            | Err(bpfk_store::StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::warn!(%key, "released an allocation no Service holds");
        report.released.push(key);
    }
    Ok(report)
}

/// Give back what a deleted object held.
pub async fn after_delete(state: &AppState, res: &ResourceInfo, obj: &Value) {
    if !is_service(res) {
        return;
    }
    Allocation {
        keys: allocation_keys(obj),
    }
    .release(state)
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> &'static ResourceInfo {
        bpfk_apimachinery::registry::find("", "v1", "services").unwrap()
    }

    #[test]
    fn update_keeps_allocations_the_body_leaves_out() {
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "https", "port": 443, "nodePort": 30443}]}});
        let mut new = json!({"spec": {"type": "NodePort",
            "ports": [{"name": "https", "port": 443}, {"name": "http", "port": 80, "nodePort": 0}, {"name": "extra", "port": 8080}]}});
        prepare_update(services(), &old, &mut new);
        assert_eq!(new["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.96.0.10"]));
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30443);
        assert_eq!(new["spec"]["ports"][1]["nodePort"], 30080);
        assert!(new["spec"]["ports"][2].get("nodePort").is_none());
        // a NodePort another port of the new object already uses is not patched in
        let mut taken = json!({"spec": {"type": "NodePort",
            "ports": [{"name": "x", "port": 81, "nodePort": 30080}, {"name": "http", "port": 80}]}});
        prepare_update(services(), &old, &mut taken);
        assert!(taken["spec"]["ports"][1].get("nodePort").is_none());
    }

    #[test]
    fn type_changes_drop_what_the_new_type_does_not_hold() {
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}});
        let mut cluster_ip = old.clone();
        cluster_ip["spec"]["type"] = json!("ClusterIP");
        prepare_update(services(), &old, &mut cluster_ip);
        assert!(cluster_ip["spec"]["ports"][0].get("nodePort").is_none());
        assert_eq!(cluster_ip["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(
            allocation_keys(&cluster_ip),
            ["/registry/ranges/serviceips/10.96.0.10"]
        );
        let mut external = json!({"spec": {"type": "ExternalName", "externalName": "example.test",
            "clusterIP": "10.96.0.10", "ports": [{"port": 80}]}});
        prepare_update(services(), &old, &mut external);
        assert!(external["spec"].get("clusterIP").is_none());
        assert!(allocation_keys(&external).is_empty());
    }
}
