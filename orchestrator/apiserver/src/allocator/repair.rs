//! Startup repair of the allocation keys.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{allocation_keys, owner_of, IP_KEYS, PORT_KEYS};
use crate::error::{ApiError, Result};
use crate::state::AppState;

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
    let wanted = wanted_keys(state).await?;
    let mut existing = BTreeMap::new();
    for kv in list_all(state, IP_KEYS)
        .await?
        .into_iter()
        .chain(list_all(state, PORT_KEYS).await?)
    {
        existing.insert(kv.key.clone(), kv.mod_revision);
    }
    for (key, owners) in &wanted {
        if owners.len() > 1 {
            tracing::error!(%key, "allocated to more than one Service");
            report.doubly_held.push(key.clone());
        }
        if !existing.contains_key(key) {
            restore(state, key, owners).await?;
            report.restored.push(key.clone());
        }
    }
    for (key, rev) in existing {
        if !wanted.contains_key(&key) {
            release(state, &key, rev).await?;
            report.released.push(key);
        }
    }
    Ok(report)
}

async fn list_all(state: &AppState, prefix: &str) -> Result<Vec<bpfk_store::KeyValue>> {
    state
        .store
        .list(prefix, bpfk_store::ListOptions::default())
        .await
        .map(|r| r.items)
        .map_err(ApiError::from)
}

/// Every allocation key the stored Services hold, with the Services (`ns/name`) holding it.
async fn wanted_keys(state: &AppState) -> Result<BTreeMap<String, Vec<Vec<u8>>>> {
    let mut wanted: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for kv in list_all(state, "/registry/services/").await? {
        let Ok(svc) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        for key in allocation_keys(&svc) {
            wanted.entry(key).or_default().push(owner_of(&svc));
        }
    }
    Ok(wanted)
}

/// Recreate a key a Service holds, owned by the first of its holders.
async fn restore(state: &AppState, key: &str, owners: &[Vec<u8>]) -> Result<()> {
    let owner = owners.first().cloned().unwrap_or_default();
    match state.store.create(key, owner).await {
        Ok(_) | Err(bpfk_store::StoreError::AlreadyExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    tracing::warn!(%key, "restored an allocation a Service holds");
    Ok(())
}

/// Delete a key no Service holds (unless it changed since it was listed).
async fn release(state: &AppState, key: &str, rev: i64) -> Result<()> {
    match state.store.delete(key, Some(rev)).await {
        Ok(_)
        | Err(bpfk_store::StoreError::NotFound(_))
        | Err(bpfk_store::StoreError::Conflict { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    tracing::warn!(%key, "released an allocation no Service holds");
    Ok(())
}
