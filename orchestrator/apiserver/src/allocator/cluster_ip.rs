//! ClusterIPs from 10.96.0.0/12 (10.96.0.1 is kept for the `kubernetes` service).

use std::net::Ipv4Addr;

use bpfk_apimachinery::kinds::core::service::{cluster_ip, needs_cluster_ip};
use rand::Rng;
use serde_json::{json, Value};

use super::{claim, invalid_service, owner_of, Allocation, IP_KEYS};
use crate::error::{ApiError, Result};
use crate::state::AppState;

/// The service ClusterIP range, 10.96.0.0/12.
const SERVICE_NET: u32 = u32::from_be_bytes([10, 96, 0, 0]);
const SERVICE_NET_SIZE: u32 = 1 << 20;

/// Claim the Service's ClusterIP (the requested one, or a free one), unless it has none
/// (`ExternalName`, headless) or an update keeps the one it holds.
pub(super) async fn allocate(
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
