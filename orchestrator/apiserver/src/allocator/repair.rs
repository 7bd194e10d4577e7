//! Startup repair of the allocation keys.

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
