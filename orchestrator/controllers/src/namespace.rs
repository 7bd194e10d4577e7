//! Namespace controller: when a namespace is being deleted (the API server sets
//! `deletionTimestamp` and keeps the `kubernetes` entry in `spec.finalizers`), delete every
//! object in it, then remove that finalizer with `PUT /api/v1/namespaces/NAME/finalize`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::error::{api_code, is_not_found, Error, Result};
use crate::served_kinds::{self, Kind};
use crate::work_queue::WorkQueue;

/// The finalizer the namespace controller owns.
pub const FINALIZER: &str = "kubernetes";

/// Shared state of the reconciler.
pub struct Context {
    client: Client,
    kinds: Vec<Kind>,
}

/// Runs the controller until its watch ends.
pub async fn run(client: Client, concurrency: u16) -> Result<()> {
    let ctx = Arc::new(Context {
        client: client.clone(),
        kinds: served_kinds::known()
            .into_iter()
            .filter(|k| k.namespaced)
            .collect(),
    });
    let queue = WorkQueue::new("namespace");
    let results = queue
        .controller(Api::<Namespace>::all(client), watcher::Config::default())
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .run(queue.reconciler(reconcile), error_policy, ctx);
    queue.run_until_stopped(results).await
}

fn error_policy(ns: Arc<Namespace>, e: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(namespace = %ns.name_any(), error = %e, "namespace cleanup failed");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let mut remaining = 0usize;
    for kind in &ctx.kinds {
        remaining += delete_all_of_kind(&ctx.client, &name, kind).await?;
    }
    if remaining > 0 {
        tracing::info!(namespace = %name, remaining, "emptying terminating namespace");
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let mut finalized = (*ns).clone();
    finalized
        .spec
        .get_or_insert_with(Default::default)
        .finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
    tracing::info!(namespace = %name, "namespace empty: finalizing");
    finalize(&Api::all(ctx.client.clone()), &name, &finalized).await?;
    Ok(Action::await_change())
}

/// Deletes (in the background) every object of `kind` in namespace `ns` not being deleted
/// yet; returns how many objects are still there.
async fn delete_all_of_kind(client: &Client, ns: &str, kind: &Kind) -> Result<usize> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &kind.resource);
    let list = match api.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) if matches!(api_code(&e), Some(404 | 405)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    for obj in list
        .items
        .iter()
        .filter(|o| o.metadata.deletion_timestamp.is_none())
    {
        match api.delete(&obj.name_any(), &dp).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(list.items.len())
}

/// Writes the namespace without our finalizer through `namespaces/NAME/finalize` (or, without
/// that subresource, a plain update); a namespace already gone is fine.
async fn finalize(api: &Api<Namespace>, name: &str, finalized: &Namespace) -> Result<()> {
    let pp = PostParams::default();
    let result = match api
        .replace_subresource("finalize", name, &pp, finalized)
        .await
    {
        Err(e) if is_not_found(&e) => api.replace(name, &pp, finalized).await,
        other => other,
    };
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
