//! NodePorts from 30000-32767.

use bpfk_apimachinery::kinds::core::service::wants_node_ports;
use rand::Rng;
use serde_json::{json, Value};

use super::{claim, invalid_service, owner_of, Allocation, PORT_KEYS};
use crate::error::{ApiError, Result};
use crate::state::AppState;

/// NodePort range.
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// Claim a NodePort for each port of a NodePort/LoadBalancer Service that has none, and the
/// requested ones an update did not hold before.
pub(super) async fn allocate(
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
