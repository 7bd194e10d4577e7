//! DELETE of one object and of a collection: finalizers, graceful pod deletion, propagation.

use bpfk_apimachinery::registry::{self, ResourceInfo};
use serde_json::{json, Value};

use super::write::{load, Part};
use super::{conflict, store_err};
use crate::allocator;
use crate::error::{ApiError, Result};
use crate::object;
use crate::query::Query;
use crate::state::{self, AppState};

/// DeleteOptions from the body and the query (the body wins).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    pub fn from_request(q: &Query, body: Option<&Value>) -> Result<DeleteOptions> {
        q.check_write_options("DeleteOptions")?;
        let mut o = DeleteOptions {
            propagation_policy: q.propagation_policy.clone(),
            grace_period_seconds: q.grace_period_seconds,
            dry_run: q.dry_run,
            ..Default::default()
        };
        if let Some(body) = body.filter(|b| !b.is_null()) {
            if !body.is_object() {
                return Err(ApiError::bad_request("DeleteOptions must be a JSON object"));
            }
            if let Some(p) = body.get("propagationPolicy").and_then(Value::as_str) {
                o.propagation_policy = Some(p.into());
            }
            if let Some(g) = body.get("gracePeriodSeconds").and_then(Value::as_i64) {
                o.grace_period_seconds = Some(g);
            }
            if let Some(pre) = body.get("preconditions") {
                o.precondition_uid = pre.get("uid").and_then(Value::as_str).map(String::from);
                o.precondition_rv = pre
                    .get("resourceVersion")
                    .and_then(Value::as_str)
                    .map(String::from);
            }
            if let Some(d) = body.get("dryRun").and_then(Value::as_array) {
                let body_query = Query {
                    invalid_dry_run: d
                        .iter()
                        .find(|v| v.as_str() != Some("All"))
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from)),
                    ..Query::default()
                };
                body_query.check_write_options("DeleteOptions")?;
                o.dry_run |= !d.is_empty();
            }
        }
        if let Some(p) = &o.propagation_policy {
            if !["Orphan", "Background", "Foreground"].contains(&p.as_str()) {
                return Err(ApiError::Invalid {
                    group: String::new(),
                    kind: "DeleteOptions".into(),
                    name: String::new(),
                    causes: vec![crate::error::Cause {
                        reason: "FieldValueNotSupported".into(),
                        message: format!("Unsupported value: {p:?}: supported values: \"Orphan\", \"Background\", \"Foreground\""),
                        field: "propagationPolicy".into(),
                    }],
                });
            }
        }
        Ok(o)
    }
}

/// The outcome of a delete: the object as last seen and whether it is gone.
pub struct Deleted {
    pub object: Value,
    /// False when deletion only started (finalizers or graceful termination pending).
    pub gone: bool,
}

/// DELETE of one object.
pub async fn delete(
    state: &AppState,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Deleted> {
    if let Some(why) = res.strategy.undeletable(name) {
        return Err(ApiError::Forbidden {
            group: res.group.into(),
            kind: res.plural.into(),
            name: name.into(),
            message: why.into(),
        });
    }
    let key = state::key(res, ns, name);
    let mut attempts = super::retry::Attempts::default();
    while attempts.next().await {
        let (current, rev) = load(state, res, ns, name).await?;
        if let Some(uid) = &opts.precondition_uid {
            if object::uid(&current) != Some(uid.as_str()) {
                return Err(conflict(
                    res,
                    name,
                    format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        object::uid(&current).unwrap_or_default()
                    ),
                ));
            }
        }
        if let Some(rv) = &opts.precondition_rv {
            if *rv != rev.to_string() {
                return Err(conflict(
                    res,
                    name,
                    format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {rev}"),
                ));
            }
        }
        let policy = opts.propagation_policy.as_deref().unwrap_or("Background");
        let mut next = current.clone();
        let mut finalizers = object::finalizers(&current);
        if policy == "Foreground" && !finalizers.iter().any(|f| f == "foregroundDeletion") {
            finalizers.push("foregroundDeletion".into());
        }
        let namespace_pending = !res.strategy.finalization_done(&current);
        let grace = res
            .strategy
            .deletion_grace_seconds(&current, opts.grace_period_seconds);
        if !finalizers.is_empty() || namespace_pending || grace > 0 {
            // deletion starts; the object stays until finalizers/kubelet are done
            if object::is_deleting(&current)
                && finalizers == object::finalizers(&current)
                && grace == 0
            {
                return Ok(Deleted {
                    object: current,
                    gone: false,
                });
            }
            if !object::is_deleting(&current) {
                object::set_meta(
                    &mut next,
                    "deletionTimestamp",
                    Value::String(object::rfc3339_after(grace)),
                );
                object::set_meta(&mut next, "deletionGracePeriodSeconds", Value::from(grace));
            } else if grace > 0 {
                // a second graceful delete may only shorten the grace period
                let old = current
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(grace);
                if grace < old {
                    object::set_meta(
                        &mut next,
                        "deletionTimestamp",
                        Value::String(object::rfc3339_after(grace)),
                    );
                    object::set_meta(&mut next, "deletionGracePeriodSeconds", Value::from(grace));
                }
            }
            if finalizers.is_empty() {
                object::remove_meta(&mut next, "finalizers");
            } else {
                object::set_meta(&mut next, "finalizers", json!(finalizers));
            }
            res.strategy.begin_deletion(&mut next);
            if opts.dry_run || next == current {
                return Ok(Deleted {
                    object: next,
                    gone: false,
                });
            }
            match state
                .store
                .update(&key, state::encode(res, &next)?, Some(rev))
                .await
            {
                Ok(new_rev) => {
                    object::set_meta(
                        &mut next,
                        "resourceVersion",
                        Value::String(new_rev.to_string()),
                    );
                    return Ok(Deleted {
                        object: next,
                        gone: false,
                    });
                }
                Err(bpfk_store::StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_err(res, name, e)),
            }
        }
        if opts.dry_run {
            return Ok(Deleted {
                object: current,
                gone: true,
            });
        }
        if policy == "Orphan" {
            if let Some(uid) = object::uid(&current) {
                orphan_dependents(state, ns, uid).await?;
            }
        }
        let _allocations = state.allocation_guard(res).await;
        match state.store.delete(&key, Some(rev)).await {
            Ok(kv) => {
                allocator::after_delete(state, res, &current).await;
                let mut gone = current;
                object::set_meta(
                    &mut gone,
                    "resourceVersion",
                    Value::String(kv.mod_revision.to_string()),
                );
                return Ok(Deleted {
                    object: gone,
                    gone: true,
                });
            }
            Err(bpfk_store::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_err(res, name, e)),
        }
    }
    Err(attempts.exhausted(&format!("the delete of {} {name:?}", res.plural)))
}

/// Remove owner references to `owner_uid` from every object in the namespace (orphan policy).
async fn orphan_dependents(state: &AppState, ns: Option<&str>, owner_uid: &str) -> Result<()> {
    for res in registry::resources()
        .iter()
        .filter(|r| r.supports("list") && r.supports("update") && !r.strategy.stored_elsewhere())
    {
        if ns.is_some() && !res.namespaced {
            continue;
        }
        let cache = state.ready_cache(res).await?;
        let (items, _) = cache.list().await;
        for kv in items {
            let Ok(obj) = state::decode(res, &kv) else {
                continue;
            };
            if ns.is_some() && object::namespace(&obj) != ns {
                continue;
            }
            let owned = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| r.get("uid").and_then(Value::as_str) == Some(owner_uid))
                });
            if !owned {
                continue;
            }
            let name = object::name(&obj).unwrap_or_default().to_string();
            let obj_ns = object::namespace(&obj).map(String::from);
            let q = Query::default();
            let result = super::write::modify(
                state,
                res,
                obj_ns.as_deref(),
                &name,
                Part::Main,
                &q,
                |cur| {
                    let mut next = cur.clone();
                    if let Some(refs) = next
                        .pointer_mut("/metadata/ownerReferences")
                        .and_then(Value::as_array_mut)
                    {
                        refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
                        if refs.is_empty() {
                            // as Kubernetes stores it (an empty list is omitted)
                            object::remove_meta(&mut next, "ownerReferences");
                        }
                    }
                    Ok(next)
                },
            )
            .await;
            match result {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
