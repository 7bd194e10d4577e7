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

/// One pass over the stored APIServices: create or repair every served group version's,
/// delete the stale automanaged ones.
pub async fn ensure_once(state: &AppState) -> Result<()> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let q = Query::default();
    let stored = read::list(state, &RESOURCE, None, &q).await?.items;
    let find = |name: &str| stored.iter().find(|o| crate::object::name(o) == Some(name));
    let mut wanted = Vec::new();
    for (group, version) in registry::group_versions() {
        let Some(local) = api_service::local(group, version, &now) else {
            continue;
        };
        let name = api_service::name_of(group, version);
        ensure_one(state, &name, find(&name), local).await?;
        wanted.push(name);
    }
    for obj in &stored {
        let name = crate::object::name(obj).unwrap_or_default();
        if is_automanaged(obj) && !wanted.iter().any(|w| w == name) {
            delete_stale(state, name).await?;
        }
    }
    Ok(())
}

/// Creates `wanted` (named `name`) when nothing is stored, and repairs what is stored (its
/// status included) until it holds what `wanted` does.
async fn ensure_one(
    state: &AppState,
    name: &str,
    current: Option<&Value>,
    wanted: Value,
) -> Result<()> {
    let q = Query::default();
    let created;
    let current = match current {
        Some(current) => current,
        // a create stores no status: the Available condition is written next
        None => match write::create(state, &RESOURCE, None, wanted.clone(), &q).await {
            Ok(written) => {
                created = written.object;
                &created
            }
            Err(ApiError::AlreadyExists { .. }) => return Ok(()),
            Err(e) => return Err(e),
        },
    };
    if !differs(current, &wanted) {
        return Ok(());
    }
    tracing::info!(apiservice = %name, "restoring a local APIService");
    let restore = |stored: &Value| Ok(repaired(stored, &wanted));
    write::modify(
        state,
        &RESOURCE,
        None,
        name,
        write::Part::Whole,
        &q,
        restore,
    )
    .await
    .map(|_| ())
}

fn is_automanaged(obj: &Value) -> bool {
    obj.pointer(&automanaged_pointer()).and_then(Value::as_str) == Some(AUTOMANAGED_ON_START)
}

fn automanaged_pointer() -> String {
    format!("/metadata/labels/{}", AUTOMANAGED_LABEL.replace('/', "~1"))
}

/// Whether `current` lacks what the local APIService `wanted` holds: its spec, its label,
/// or an `Available=True` condition.
fn differs(current: &Value, wanted: &Value) -> bool {
    let label = automanaged_pointer();
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

/// Deletes the automanaged APIService `name` of a group version no longer served.
async fn delete_stale(state: &AppState, name: &str) -> Result<()> {
    tracing::info!(apiservice = %name, "deleting the APIService of a group version no longer served");
    match delete::delete(state, &RESOURCE, None, name, &DeleteOptions::default()).await {
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_edited_local_api_service_is_repaired_and_keeps_what_else_it_has() {
        let wanted = api_service::local("apps", "v1", "2026-01-01T00:00:00Z").unwrap();
        assert!(!differs(&wanted, &wanted) && is_automanaged(&wanted));
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
