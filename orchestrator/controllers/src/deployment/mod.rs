//! Deployment controller: keeps a ReplicaSet per pod template (`<deployment>-<hash>`), rolls
//! between them (RollingUpdate with maxSurge/maxUnavailable, or Recreate), scales, writes
//! status and prunes old ReplicaSets beyond `revisionHistoryLimit`. A sync runs the steps of
//! kube-controller-manager's: get and claim the ReplicaSets, split them into the new one and the
//! old ones, roll out by [`strategy`], then [`status::calculate_status`].

pub mod hash;
pub mod rollout;
pub mod status;
pub mod strategy;
pub mod sync;

use std::sync::Arc;
use std::time::Duration;

use bpfk_apimachinery::selectors::Selector;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet};
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{predicates, watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use crate::claim::{adopt_patch, decide, patch_owners, Claim};
use crate::error::{Error, Result};
use crate::util::{key, labels, owner_ref, selector};
use crate::work_queue::WorkQueue;
use hash::{equal_ignoring_hash, pod_template_hash};
use rollout::resolve_fenceposts;
use status::{calculate_status, update_status};
use strategy::{Progress, Rollout};
use sync::Sync;

/// Annotation holding the revision on Deployments and ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Annotation holding the Deployment's desired replicas on its ReplicaSets.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// Annotation holding replicas + maxSurge on ReplicaSets.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Shared state of the reconciler.
pub struct Context {
    client: Client,
    replicasets: Store<ReplicaSet>,
    /// Records `ScalingReplicaSet`.
    recorder: bpfk_common::events::Recorder,
}

/// Runs the controller until its watches end.
pub async fn run(client: Client, concurrency: u16) -> Result<()> {
    let wc = watcher::Config::default();
    let (d_store, d_writer) = reflector::store();
    let deployments = watcher(Api::<Deployment>::all(client.clone()), wc.clone())
        .default_backoff()
        .reflect(d_writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    let (rs_store, rs_writer) = reflector::store();
    let replicasets = watcher(Api::<ReplicaSet>::all(client.clone()), wc)
        .default_backoff()
        .reflect(rs_writer)
        .touched_objects();
    let ctx = Arc::new(Context {
        recorder: bpfk_common::events::recorder(client.clone(), "deployment-controller"),
        client,
        replicasets: rs_store,
    });
    let queue = WorkQueue::new("deployment");
    let results = Controller::for_stream(queue.counted(deployments), d_store)
        .watches_stream(replicasets, queue.owners::<ReplicaSet, Deployment>())
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .run(queue.reconciler(reconcile), error_policy, ctx);
    queue.run_until_stopped(results).await
}

fn error_policy(d: Arc<Deployment>, e: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(deployment = %key(&d.metadata), error = %e, "deployment sync failed");
    Action::requeue(Duration::from_secs(2))
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn rs_status(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.as_ref();
    (
        s.map_or(0, |s| s.replicas),
        s.and_then(|s| s.ready_replicas).unwrap_or(0),
        s.and_then(|s| s.available_replicas).unwrap_or(0),
    )
}

fn rs_synced(rs: &ReplicaSet) -> bool {
    let observed = rs.status.as_ref().and_then(|s| s.observed_generation);
    match (observed, rs.metadata.generation) {
        (Some(o), Some(g)) => o >= g,
        (_, None) => true,
        (None, Some(_)) => false,
    }
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action> {
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(spec) = d.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let sel = selector(&d.metadata, "spec.selector", &spec.selector)?;
    ctx.replicasets
        .wait_until_ready()
        .await
        .map_err(|_| Error::CacheNotReady("replicasets"))?;
    let s = Sync {
        ctx: &ctx,
        d: &d,
        spec,
        ns: d.namespace().unwrap_or_else(|| "default".into()),
        name: d.name_any(),
    };
    let owned = claim_replica_sets(&s, &sel).await?;
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = pod_template_hash(&spec.template, collision);
    let (mut new_rs, mut old) = split_new_and_old(owned, spec, &format!("{}-{hash}", s.name));
    let max_old_revision = old.iter().map(revision).max().unwrap_or(0);
    let (max_surge, max_unavailable) = strategy_limits(&d, spec)?;
    if let Some(rs) = new_rs.as_mut() {
        s.ensure_newest_revision(rs, max_old_revision).await?;
    }
    let rollout = Rollout {
        new_rs: &mut new_rs,
        old: &mut old,
        hash: &hash,
        next_revision: max_old_revision + 1,
        max_surge,
        max_unavailable,
    };
    let progress = strategy::roll_out(&s, rollout).await?;
    finish(&s, new_rs.as_ref(), &old, max_unavailable, progress).await
}

/// After the rollout step: the revision annotation, history pruning once complete, status,
/// and when to sync again.
async fn finish(
    s: &Sync<'_>,
    new_rs: Option<&ReplicaSet>,
    old: &[ReplicaSet],
    max_unavailable: i32,
    progress: Progress,
) -> Result<Action> {
    s.sync_revision_annotation(new_rs).await?;
    let complete = rollout_complete(new_rs, old, s.spec.replicas.unwrap_or(1));
    if complete && !progress.changed {
        s.cleanup_history(old).await?;
    }
    let now = Timestamp::now();
    let status = calculate_status(s.d, new_rs, old, max_unavailable, complete, now);
    let api = Api::namespaced(s.ctx.client.clone(), &s.ns);
    update_status(&api, s.d, &status).await?;
    Ok(match progress.waiting {
        true => Action::requeue(Duration::from_millis(500)),
        false => Action::requeue(Duration::from_secs(300)),
    })
}

/// The Deployment's ReplicaSets (adopting matching orphans), oldest first.
async fn claim_replica_sets(s: &Sync<'_>, sel: &Selector) -> Result<Vec<ReplicaSet>> {
    let uid = s.d.metadata.uid.as_deref().unwrap_or_default();
    let api = s.rs_api();
    let mut owned: Vec<ReplicaSet> = Vec::new();
    let in_ns = s.ctx.replicasets.state().into_iter();
    for rs in in_ns.filter(|rs| rs.metadata.namespace.as_deref() == Some(s.ns.as_str())) {
        let selected = sel.matches(labels(&rs.metadata));
        let adoptable = rs.metadata.deletion_timestamp.is_none();
        match decide(&rs.metadata, uid, selected, adoptable) {
            // this controller does not release ReplicaSets its selector stopped matching
            Claim::Keep | Claim::Release => owned.push((*rs).clone()),
            Claim::Adopt => {
                let patch = adopt_patch(&rs.metadata, owner_ref(s.d));
                owned.extend(patch_owners(&api, &rs.name_any(), &patch).await?);
            }
            Claim::Ignore => {}
        }
    }
    sort_oldest_first(&mut owned);
    Ok(owned)
}

fn sort_oldest_first(replicasets: &mut [ReplicaSet]) {
    replicasets.sort_by(|a, b| {
        let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(a)
            .cmp(&created(b))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
}

/// The ReplicaSet of the current template (by template, else by its name `new_name`) and the
/// others.
fn split_new_and_old(
    mut owned: Vec<ReplicaSet>,
    spec: &DeploymentSpec,
    new_name: &str,
) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
    let new_idx = owned
        .iter()
        .position(|rs| {
            rs.metadata.deletion_timestamp.is_none()
                && rs
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignoring_hash(t, &spec.template))
        })
        .or_else(|| owned.iter().position(|rs| rs.name_any() == new_name));
    let new_rs = new_idx.map(|i| owned.remove(i));
    (new_rs, owned)
}

pub(super) fn is_recreate(spec: &DeploymentSpec) -> bool {
    spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate")
}

/// `(maxSurge, maxUnavailable)` of the strategy (both 0 for Recreate).
fn strategy_limits(d: &Deployment, spec: &DeploymentSpec) -> Result<(i32, i32)> {
    if is_recreate(spec) {
        return Ok((0, 0));
    }
    let rolling = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    resolve_fenceposts(
        rolling.and_then(|r| r.max_surge.as_ref()),
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        spec.replicas.unwrap_or(1),
    )
    .map_err(|reason| Error::Invalid {
        object: key(&d.metadata),
        field: "spec.strategy.rollingUpdate".into(),
        reason,
    })
}

/// Whether the new ReplicaSet has every replica available and the old ones none left.
fn rollout_complete(new_rs: Option<&ReplicaSet>, old: &[ReplicaSet], replicas: i32) -> bool {
    new_rs.is_some_and(|rs| {
        let (r, _, a) = rs_status(rs);
        rs_replicas(rs) == replicas && r == replicas && a == replicas
    }) && old
        .iter()
        .all(|rs| rs_replicas(rs) == 0 && rs_status(rs).0 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rs(name: &str, image: &str, created: &str, counts: (i32, i32, i32)) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"replicas": counts.0, "selector": {},
                "template": {"metadata": {"labels": {"app": "web", hash::POD_TEMPLATE_HASH: name}},
                    "spec": {"containers": [{"name": "c", "image": image}]}}},
            "status": {"replicas": counts.1, "availableReplicas": counts.2}
        }))
        .unwrap()
    }

    fn spec(image: &str, strategy: serde_json::Value) -> DeploymentSpec {
        serde_json::from_value(json!({
            "replicas": 4, "selector": {"matchLabels": {"app": "web"}}, "strategy": strategy,
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": image}]}}
        }))
        .unwrap()
    }

    #[test]
    fn the_new_replica_set_is_the_one_with_the_template() {
        let mut owned = vec![
            rs("web-b", "nginx:2", "2026-01-02T00:00:00Z", (0, 0, 0)),
            rs("web-a", "nginx:1", "2026-01-01T00:00:00Z", (4, 4, 4)),
        ];
        sort_oldest_first(&mut owned);
        let (new, old) = split_new_and_old(owned.clone(), &spec("nginx:2", json!({})), "web-x");
        assert_eq!(new.map(|r| r.name_any()).as_deref(), Some("web-b"));
        assert_eq!(
            old.iter().map(|r| r.name_any()).collect::<Vec<_>>(),
            ["web-a"]
        );
        let (new, old) = split_new_and_old(owned.clone(), &spec("nginx:3", json!({})), "web-a");
        assert_eq!(new.map(|r| r.name_any()).as_deref(), Some("web-a"));
        assert_eq!(old.len(), 1);
        let (new, old) = split_new_and_old(owned, &spec("nginx:3", json!({})), "web-x");
        assert!(new.is_none());
        assert_eq!(old.len(), 2);
    }

    #[test]
    fn complete_when_the_new_replica_set_has_all_and_old_ones_nothing() {
        let t = "2026-01-01T00:00:00Z";
        let new = rs("n", "i", t, (4, 4, 4));
        assert!(rollout_complete(
            Some(&new),
            &[rs("o", "i", t, (0, 0, 0))],
            4
        ));
        assert!(!rollout_complete(
            Some(&new),
            &[rs("o", "i", t, (0, 1, 0))],
            4
        ));
        assert!(!rollout_complete(Some(&rs("n", "i", t, (4, 4, 3))), &[], 4));
        assert!(!rollout_complete(None, &[], 0));
    }

    #[test]
    fn limits_by_strategy() {
        let d = Deployment::default();
        let recreate = spec("i", json!({"type": "Recreate"}));
        assert_eq!(strategy_limits(&d, &recreate).unwrap(), (0, 0));
        assert_eq!(strategy_limits(&d, &spec("i", json!({}))).unwrap(), (1, 1));
        let bad = spec("i", json!({"rollingUpdate": {"maxSurge": "lots"}}));
        assert!(matches!(
            strategy_limits(&d, &bad),
            Err(Error::Invalid { .. })
        ));
    }
}
