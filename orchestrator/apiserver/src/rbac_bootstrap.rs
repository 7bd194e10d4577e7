//! The bootstrap RBAC policy, ensured at every start as kube-apiserver's
//! `rbac/bootstrap-roles` post-start hook does: missing roles and bindings are created, and
//! those still annotated `rbac.authorization.kubernetes.io/autoupdate: "true"` get back the
//! rules and subjects they lack (what an operator added stays).

use std::time::Duration;

use bpfk_apimachinery::registry::{self, ResourceInfo};
use bpfk_auth::rbac::bootstrap::{self, AUTOUPDATE_ANNOTATION};
use serde_json::Value;

use crate::error::{ApiError, Result};
use crate::query::Query;
use crate::rest::{read, write};
use crate::state::AppState;

/// Ensures every bootstrap ClusterRole and ClusterRoleBinding, retrying until the store
/// answers.
pub async fn ensure(state: &AppState) {
    let mut delay = Duration::from_millis(200);
    loop {
        match ensure_once(state).await {
            Ok(()) => {
                tracing::info!("bootstrap RBAC policy present");
                return;
            }
            Err(e) => tracing::warn!(
                "cannot ensure the bootstrap RBAC policy yet: {}",
                e.message()
            ),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn ensure_once(state: &AppState) -> Result<()> {
    let roles = find("clusterroles")?;
    for role in bootstrap::cluster_roles() {
        ensure_object(state, roles, to_value(&role)?, "rules").await?;
    }
    let bindings = find("clusterrolebindings")?;
    for binding in bootstrap::cluster_role_bindings() {
        ensure_object(state, bindings, to_value(&binding)?, "subjects").await?;
    }
    Ok(())
}

fn find(plural: &str) -> Result<&'static ResourceInfo> {
    registry::find(bpfk_auth::rbac::GROUP, "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not served")))
}

fn to_value<T: serde::Serialize>(obj: &T) -> Result<Value> {
    serde_json::to_value(obj).map_err(|e| ApiError::internal(e.to_string()))
}

/// Creates `wanted` or adds to the stored object's `list` (rules, subjects) what it lacks.
async fn ensure_object(
    state: &AppState,
    res: &'static ResourceInfo,
    wanted: Value,
    list: &str,
) -> Result<()> {
    let name = crate::object::name(&wanted).unwrap_or_default().to_string();
    let q = Query::default();
    let current = match read::get(state, res, None, &name, &q).await {
        Ok(obj) => obj,
        Err(ApiError::NotFound { .. }) => {
            return match write::create(state, res, None, wanted, &q).await {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    let autoupdate = current
        .pointer(&format!(
            "/metadata/annotations/{}",
            AUTOUPDATE_ANNOTATION.replace('/', "~1")
        ))
        .and_then(Value::as_str);
    // aggregated roles' rules belong to the aggregation controller
    if autoupdate == Some("false") || current.get("aggregationRule").is_some_and(|a| !a.is_null()) {
        return Ok(());
    }
    let missing = missing_items(&current, &wanted, list);
    if missing.is_empty() {
        return Ok(());
    }
    tracing::info!(resource = res.plural, %name, added = missing.len(), "restoring bootstrap {list}");
    write::modify(state, res, None, &name, write::Part::Main, &q, |stored| {
        let mut next = stored.clone();
        let items = next
            .as_object_mut()
            .map(|o| o.entry(list).or_insert_with(|| Value::Array(Vec::new())));
        if let Some(Value::Array(items)) = items {
            for item in missing_items(stored, &wanted, list) {
                items.push(item);
            }
        }
        Ok(next)
    })
    .await
    .map(|_| ())
}

/// The entries of `wanted[list]` that `current[list]` lacks.
fn missing_items(current: &Value, wanted: &Value, list: &str) -> Vec<Value> {
    let have = current.get(list).and_then(Value::as_array);
    wanted
        .get(list)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|w| !have.is_some_and(|h| h.contains(w)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_what_is_missing_is_added() {
        let current =
            json!({"subjects": [{"kind": "Group", "name": "a"}, {"kind": "User", "name": "x"}]});
        let wanted =
            json!({"subjects": [{"kind": "Group", "name": "a"}, {"kind": "Group", "name": "b"}]});
        assert_eq!(
            missing_items(&current, &wanted, "subjects"),
            [json!({"kind": "Group", "name": "b"})]
        );
        assert_eq!(missing_items(&json!({}), &wanted, "subjects").len(), 2);
    }
}
