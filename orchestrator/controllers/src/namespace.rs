//! Namespace controller: when a namespace is being deleted (the API server sets
//! `deletionTimestamp` and keeps the `kubernetes` entry in `spec.finalizers`), delete every
//! object in it, then remove that finalizer with `PUT /api/v1/namespaces/NAME/finalize`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::error::{api_code, is_not_found, Error, Result};
use crate::served_kinds::{self, Kind};
use crate::util::run_until_stopped;

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
    let results = Controller::new(Api::<Namespace>::all(client), watcher::Config::default())
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .run(reconcile, error_policy, ctx);
    run_until_stopped("namespace", results).await
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
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &name, &kind.resource);
        let list = match api.list(&ListParams::default()).await {
            Ok(l) => l,
            Err(e) if matches!(api_code(&e), Some(404 | 405)) => continue,
            Err(e) => return Err(e.into()),
        };
        for obj in list.items {
            remaining += 1;
            if obj.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            };
            match api.delete(&obj.name_any(), &dp).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
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
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    tracing::info!(namespace = %name, "namespace empty: finalizing");
    match api
        .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if is_not_found(&e) => {
            // No finalize subresource (or the namespace is gone): fall back to a plain update.
            match api.replace(&name, &PostParams::default(), &finalized).await {
                Ok(_) => Ok(Action::await_change()),
                Err(e) if is_not_found(&e) => Ok(Action::await_change()),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}
