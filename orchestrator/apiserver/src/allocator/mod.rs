//! The API server's allocator: the ClusterIP range and the NodePort range, each address held
//! by a key in etcd (`/registry/ranges/...`) whose value names the owning Service. Kinds whose
//! strategy says [`Allocates::ServiceAddresses`] get their addresses claimed here on create
//! and update and given back on delete; [`repair`] makes the keys agree with the Services at
//! start.

mod cluster_ip;
mod node_port;
pub mod repair;

use std::net::Ipv4Addr;

use bpfk_apimachinery::kinds::core::service::{cluster_ip, node_ports};
use bpfk_apimachinery::kinds::Allocates;
use bpfk_apimachinery::registry::ResourceInfo;
use serde_json::Value;

use crate::error::{ApiError, Cause, Result};
use crate::object;
use crate::state::AppState;

pub use repair::{repair_allocations, RepairReport};

const IP_KEYS: &str = "/registry/ranges/serviceips/";
const PORT_KEYS: &str = "/registry/ranges/servicenodeports/";

/// What a create claimed, to give back if the create fails.
#[derive(Default)]
pub struct Allocation {
    keys: Vec<String>,
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

/// Claim what a new object needs (a Service's ClusterIP and NodePorts).
pub async fn allocate(state: &AppState, res: &ResourceInfo, obj: &mut Value) -> Result<Allocation> {
    claim_addresses(state, res, obj, None).await
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
    claim_addresses(state, res, obj, Some(old)).await
}

/// Claims the ClusterIP and NodePorts `obj` needs and `old` (its stored version) did not
/// hold; on failure nothing stays claimed.
async fn claim_addresses(
    state: &AppState,
    res: &ResourceInfo,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<Allocation> {
    let mut alloc = Allocation::default();
    if res.strategy.allocation() != Allocates::ServiceAddresses {
        return Ok(alloc);
    }
    let result = async {
        cluster_ip::allocate(state, obj, &mut alloc, old).await?;
        node_port::allocate(state, obj, &mut alloc, old).await
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
    if res.strategy.allocation() != Allocates::ServiceAddresses {
        return;
    }
    let kept = allocation_keys(new);
    let dropped = allocation_keys(old)
        .into_iter()
        .filter(|k| !kept.contains(k))
        .collect();
    Allocation { keys: dropped }.release(state).await;
}

/// Give back what a deleted object held.
pub async fn after_delete(state: &AppState, res: &ResourceInfo, obj: &Value) {
    if res.strategy.allocation() != Allocates::ServiceAddresses {
        return;
    }
    Allocation {
        keys: allocation_keys(obj),
    }
    .release(state)
    .await;
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

impl Allocation {
    /// Give the claimed keys back.
    pub async fn release(self, state: &AppState) {
        for key in self.keys {
            if let Err(e) = state.store.delete(&key, None).await {
                tracing::warn!(%key, "cannot release allocation: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn services() -> &'static ResourceInfo {
        bpfk_apimachinery::registry::find("", "v1", "services").unwrap()
    }

    #[test]
    fn update_keeps_allocations_the_body_leaves_out() {
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "https", "port": 443, "nodePort": 30443}]}});
        let mut new = json!({"spec": {"type": "NodePort",
            "ports": [{"name": "https", "port": 443}, {"name": "http", "port": 80, "nodePort": 0}, {"name": "extra", "port": 8080}]}});
        services().strategy.prepare_update(&old, &mut new);
        assert_eq!(new["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.96.0.10"]));
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30443);
        assert_eq!(new["spec"]["ports"][1]["nodePort"], 30080);
        assert!(new["spec"]["ports"][2].get("nodePort").is_none());
        // a NodePort another port of the new object already uses is not patched in
        let mut taken = json!({"spec": {"type": "NodePort",
            "ports": [{"name": "x", "port": 81, "nodePort": 30080}, {"name": "http", "port": 80}]}});
        services().strategy.prepare_update(&old, &mut taken);
        assert!(taken["spec"]["ports"][1].get("nodePort").is_none());
    }

    #[test]
    fn type_changes_drop_what_the_new_type_does_not_hold() {
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}});
        let mut cluster_ip = old.clone();
        cluster_ip["spec"]["type"] = json!("ClusterIP");
        services().strategy.prepare_update(&old, &mut cluster_ip);
        assert!(cluster_ip["spec"]["ports"][0].get("nodePort").is_none());
        assert_eq!(cluster_ip["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(
            allocation_keys(&cluster_ip),
            ["/registry/ranges/serviceips/10.96.0.10"]
        );
        let mut external = json!({"spec": {"type": "ExternalName", "externalName": "example.test",
            "clusterIP": "10.96.0.10", "ports": [{"port": 80}]}});
        services().strategy.prepare_update(&old, &mut external);
        assert!(external["spec"].get("clusterIP").is_none());
        assert!(allocation_keys(&external).is_empty());
    }
}
