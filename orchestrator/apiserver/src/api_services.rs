//! The local APIServices, kept as kube-apiserver's autoregister controller keeps them: one
//! `apiregistration.k8s.io/v1 APIService` for every group version this server serves
//! (`v1.`, `v1.apps`, …, labelled `kube-aggregator.kubernetes.io/automanaged: onstart`), with
//! the priorities Kubernetes gives them and the `Available` condition a local one always has.
//! A missing one is created, an edited one gets its spec and condition back, and an
//! automanaged one for a group version no longer served is deleted; checked at start and then
//! every [`RESYNC_PERIOD`].

use std::sync::Arc;
use std::time::Duration;

use bpfk_apimachinery::kinds::apiregistration::api_service::{
    self, AUTOMANAGED_LABEL, AUTOMANAGED_ON_START, RESOURCE,
};
use bpfk_apimachinery::registry;
use serde_json::Value;

use crate::error::{ApiError, Result};
use crate::query::Query;
use crate::rest::delete::{self, DeleteOptions};
use crate::rest::{read, write};
use crate::state::AppState;

/// How often the local APIServices are checked again (a deleted or edited one comes back).
const RESYNC_PERIOD: Duration = Duration::from_secs(30);

/// Keeps the local APIServices, retrying until the store answers.
pub async fn keep(state: Arc<AppState>) {
    loop {
        match ensure_once(&state).await {
            Ok(()) => tracing::debug!("local APIServices present"),
            Err(e) => tracing::warn!("cannot ensure the local APIServices yet: {}", e.message()),
        }
        tokio::time::sleep(RESYNC_PERIOD).await;
    }
}

/// One pass: create or repair every served group version's APIService, delete the stale.
pub async fn ensure_once(state: &AppState) -> Result<()> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut wanted = Vec::new();
    for (group, version) in registry::group_versions() {
        if let Some(obj) = api_service::local(group, version, &now) {
            ensure_one(state, obj).await?;
            wanted.push(api_service::name_of(group, version));
        }
    }
    delete_stale(state, &wanted).await
}

async fn ensure_one(state: &AppState, wanted: Value) -> Result<()> {
    let name = crate::object::name(&wanted).unwrap_or_default().to_string();
    let q = Query::default();
    let current = match read::get(state, &RESOURCE, None, &name, &q).await {
        Ok(obj) => obj,
        Err(ApiError::NotFound { .. }) => {
            match write::create(state, &RESOURCE, None, wanted.clone(), &q).await {
                Ok(created) => created.object,
                Err(ApiError::AlreadyExists { .. }) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    if !differs(&current, &wanted) {
        return Ok(());
    }
    tracing::info!(apiservice = %name, "restoring a local APIService");
    write::modify(
        state,
        &RESOURCE,
        None,
        &name,
        write::Part::Whole,
        &q,
        |stored| Ok(repaired(stored, &wanted)),
    )
    .await
    .map(|_| ())
}

/// Whether `current` lacks what the local APIService `wanted` holds: its spec, its label,
/// or an `Available=True` condition.
fn differs(current: &Value, wanted: &Value) -> bool {
    let label = format!("/metadata/labels/{}", AUTOMANAGED_LABEL.replace('/', "~1"));
    current.get("spec") != wanted.get("spec")
        || current.pointer(&label) != wanted.pointer(&label)
        || available(current).is_none_or(|c| !same_condition(c, available(wanted)))
}

fn available(obj: &Value) -> Option<&Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Available"))
}

fn same_condition(have: &Value, want: Option<&Value>) -> bool {
    ["status", "reason", "message"]
        .iter()
        .all(|k| have.get(k) == want.and_then(|w| w.get(k)))
}

/// `stored` with `wanted`'s spec, label and status (other labels and metadata stay).
fn repaired(stored: &Value, wanted: &Value) -> Value {
    let mut next = stored.clone();
    next["spec"] = wanted["spec"].clone();
    if !next["metadata"]["labels"].is_object() {
        next["metadata"]["labels"] = Value::Object(Default::default());
    }
    next["metadata"]["labels"][AUTOMANAGED_LABEL] = AUTOMANAGED_ON_START.into();
    next["status"] = wanted["status"].clone();
    next
}

/// Deletes automanaged APIServices whose group version is not in `wanted`.
async fn delete_stale(state: &AppState, wanted: &[String]) -> Result<()> {
    let q = Query {
        label_selector: Some(format!("{AUTOMANAGED_LABEL}={AUTOMANAGED_ON_START}")),
        ..Query::default()
    };
    let listed = read::list(state, &RESOURCE, None, &q).await?;
    for obj in listed.items {
        let name = crate::object::name(&obj).unwrap_or_default().to_string();
        if wanted.contains(&name) {
            continue;
        }
        tracing::info!(apiservice = %name, "deleting the APIService of a group version no longer served");
        match delete::delete(state, &RESOURCE, None, &name, &DeleteOptions::default()).await {
            Ok(_) | Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_edited_local_api_service_is_repaired_and_keeps_what_else_it_has() {
        let wanted = api_service::local("apps", "v1", "2026-01-01T00:00:00Z").unwrap();
        assert!(!differs(&wanted, &wanted));
        let mut edited = wanted.clone();
        edited["spec"]["groupPriorityMinimum"] = json!(10);
        edited["metadata"]["labels"] = json!({"team": "x"});
        edited["status"] = json!({});
        assert!(differs(&edited, &wanted));
        let fixed = repaired(&edited, &wanted);
        assert!(!differs(&fixed, &wanted));
        assert_eq!(fixed["metadata"]["labels"]["team"], "x");
        // a later transition time alone is no difference
        let later = api_service::local("apps", "v1", "2027-01-01T00:00:00Z").unwrap();
        assert!(!differs(&wanted, &later));
    }
}
