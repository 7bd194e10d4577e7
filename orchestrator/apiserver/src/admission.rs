//! Kind-specific rules around writes: namespace lifecycle, ClusterIP and NodePort allocation,
//! what the server resets on create.

use std::net::Ipv4Addr;

use bpfk_apimachinery::registry::ResourceInfo;
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

/// Refuse objects in a namespace that does not exist or is terminating.
pub async fn check_namespace_accepts(state: &AppState, ns: &str) -> Result<()> {
    let key = format!("/registry/namespaces/{ns}");
    let found = state.store.get(&key).await.map_err(ApiError::from)?;
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
                    group: String::new(),
                    kind: "namespaces".into(),
                    name: ns.into(),
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
) -> Result<()> {
    let requested = obj
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if requested == "None" {
        obj["spec"]["clusterIPs"] = json!(["None"]);
        return Ok(());
    }
    if obj.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName") {
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
            .and_then(Value::as_u64);
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
    if (res.group, res.plural) != ("", "services") {
        return Ok(alloc);
    }
    let result = async {
        allocate_cluster_ip(state, obj, &mut alloc).await?;
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

/// Claim NodePorts a Service update needs (type changed to NodePort, ports added).
pub async fn allocate_on_update(
    state: &AppState,
    res: &ResourceInfo,
    old: &Value,
    obj: &mut Value,
) -> Result<()> {
    if (res.group, res.plural) != ("", "services") {
        return Ok(());
    }
    let mut alloc = Allocation::default();
    if let Err(e) = allocate_node_ports(state, obj, &mut alloc, Some(old)).await {
        alloc.release(state).await;
        return Err(e);
    }
    Ok(())
}

/// Give back what a deleted object held.
pub async fn after_delete(state: &AppState, res: &ResourceInfo, obj: &Value) {
    if (res.group, res.plural) != ("", "services") {
        return;
    }
    let mut keys = Vec::new();
    if let Some(ip) = obj
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| ip.parse::<Ipv4Addr>().is_ok())
    {
        keys.push(format!("{IP_KEYS}{ip}"));
    }
    for port in obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(p) = port.get("nodePort").and_then(Value::as_u64) {
            keys.push(format!("{PORT_KEYS}{p}"));
        }
    }
    Allocation { keys }.release(state).await;
}
