//! A `default` ServiceAccount in every active namespace (pods run as it unless they name
//! another), made again when someone deletes it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use crate::error::{Error, Result};
use crate::work_queue::WorkQueue;

/// The ServiceAccount every namespace has.
pub const DEFAULT: &str = "default";

pub struct Context {
    client: Client,
    accounts: Store<ServiceAccount>,
}

/// Runs the controller until its watches end.
pub async fn run(client: Client, concurrency: u16) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::all(client.clone());
    let (reader, writer) = kube::runtime::reflector::store();
    let queue = WorkQueue::new("serviceaccount");
    let controller = queue
        .controller(namespaces, watcher::Config::default())
        .watches_stream(
            kube::runtime::reflector(writer, watcher(accounts, default_only()))
                .touched_objects()
                .default_backoff(),
            queue.mapper(|sa: ServiceAccount| sa.namespace().map(|ns| ObjectRef::new(&ns))),
        );
    let ctx = Arc::new(Context {
        client,
        accounts: reader,
    });
    let results = controller
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .run(queue.reconciler(reconcile), error_policy, ctx);
    queue.run_until_stopped(results).await
}

fn default_only() -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={DEFAULT}"))
}

fn error_policy(ns: Arc<Namespace>, e: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(namespace = %ns.name_any(), error = %e, "cannot make the default ServiceAccount");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action> {
    let name = ns.name_any();
    if !super::active(&ns) {
        return Ok(Action::await_change());
    }
    let wanted = ObjectRef::<ServiceAccount>::new(DEFAULT).within(&name);
    if ctx.accounts.get(&wanted).is_some() {
        return Ok(Action::await_change());
    }
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    let mut sa = ServiceAccount::default();
    sa.metadata.name = Some(DEFAULT.into());
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => tracing::info!(namespace = %name, "created the default ServiceAccount"),
        Err(e) if crate::error::api_code(&e) == Some(409) => {}
        // a namespace deleted meanwhile refuses new objects: its watch event follows
        Err(e) if crate::error::api_code(&e) == Some(403) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}
