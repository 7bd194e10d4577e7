//! ReplicaSet controller: creates and deletes pods to match `spec.replicas`, adopts matching
//! orphans, releases pods that stopped matching, and writes status. A sync runs the steps of
//! kube-controller-manager's: [`claim::claim_pods`], [`manage::manage_replicas`] and
//! [`status::calculate_status`].

pub mod claim;
pub mod manage;
pub mod status;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{predicates, watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use crate::error::{Error, Result};
use crate::expectations::Expectations;
use crate::util::{controller_ref, key, labels, selector};
use crate::work_queue::WorkQueue;
use claim::claim_pods;
use manage::{active_pods, manage_replicas};
use status::{calculate_status, next_sync, update_status};

/// Shared state of the reconciler.
pub struct Context {
    client: Client,
    pods: Store<Pod>,
    expectations: Expectations,
    /// Records `SuccessfulCreate`, `SuccessfulDelete`, `FailedCreate`, `FailedDelete`.
    recorder: bpfk_common::events::Recorder,
}

/// Runs the controller until its watches end. Pods come from the process's shared pod
/// informer: its store and a subscription to its changes.
pub async fn run(
    client: Client,
    concurrency: u16,
    pods: Store<Pod>,
    pod_changes: impl Stream<Item = Arc<Pod>> + Send + 'static,
) -> Result<()> {
    let wc = watcher::Config::default();
    let (rs_store, rs_writer) = reflector::store();
    let replicasets = watcher(Api::<ReplicaSet>::all(client.clone()), wc.clone())
        .default_backoff()
        .reflect(rs_writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    let ctx = Arc::new(Context {
        recorder: bpfk_common::events::recorder(client.clone(), "replicaset-controller"),
        client,
        pods,
        expectations: Expectations::default(),
    });
    let queue = WorkQueue::new("replicaset");
    let controller = Controller::for_stream(queue.counted(replicasets), rs_store);
    let rs_cache = controller.store();
    let results = controller
        .watches_shared_stream(
            pod_changes,
            queue.mapper(move |pod: Arc<Pod>| pod_to_replicasets(&rs_cache, &pod)),
        )
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .run(queue.reconciler(reconcile), error_policy, ctx);
    queue.run_until_stopped(results).await
}

/// The ReplicaSets a pod event concerns: its controller, or (for an orphan) every ReplicaSet
/// of its namespace whose selector matches it.
fn pod_to_replicasets(rs_cache: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    if let Some(owner) = controller_ref(&pod.metadata) {
        if owner.kind == "ReplicaSet" {
            return vec![ObjectRef::new(&owner.name).within(&ns)];
        }
        return vec![];
    }
    rs_cache
        .state()
        .iter()
        .filter(|rs| rs.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| selector(&rs.metadata, "spec.selector", &s.selector).ok())
                .is_some_and(|sel| sel.matches(labels(&pod.metadata)))
        })
        .map(|rs| ObjectRef::from_obj(&**rs))
        .collect()
}

fn error_policy(rs: Arc<ReplicaSet>, e: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(replicaset = %key(&rs.metadata), error = %e, "replicaset sync failed");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action> {
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    if rs.metadata.deletion_timestamp.is_some() {
        ctx.expectations.forget(&uid);
        return Ok(Action::await_change());
    }
    let Some(spec) = rs.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let ns = rs.namespace().unwrap_or_else(|| "default".into());
    let sel = selector(&rs.metadata, "spec.selector", &spec.selector)?;
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(|_| Error::CacheNotReady("pods"))?;
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let in_ns = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()));
    let owned = claim_pods(&api, &rs, &sel, in_ns).await?;

    let synced = expectations_met(&ctx.expectations, &uid, &owned);
    let pending_deletions = ctx.expectations.pending_deletions(&uid);
    let mut active = active_pods(&owned, &pending_deletions);
    if synced {
        let want = spec.replicas.unwrap_or(1).max(0) as usize;
        let writer = manage::PodWriter {
            api: &api,
            expectations: &ctx.expectations,
            recorder: &ctx.recorder,
        };
        manage_replicas(&writer, &rs, &mut active, want).await?;
    }

    // status from the pods the cache shows (minus those being deleted)
    let (status, recheck) = calculate_status(&rs, &active, Timestamp::now());
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    if !update_status(&rs_api, &rs, &status).await? {
        return Ok(Action::await_change());
    }
    Ok(next_sync(synced, recheck))
}

/// Marks as observed the creations and deletions the cache shows in `owned`; whether none is
/// pending any more.
fn expectations_met(expectations: &Expectations, uid: &str, owned: &[Pod]) -> bool {
    let names: HashSet<&str> = owned
        .iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    let live: HashSet<&str> = owned
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.uid.as_deref())
        .collect();
    expectations.satisfied(uid, &names, |u| !live.contains(u))
}
