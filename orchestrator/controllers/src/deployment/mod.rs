//! Deployment controller: keeps a ReplicaSet per pod template (`<deployment>-<hash>`), rolls
//! between them (RollingUpdate with maxSurge/maxUnavailable, or Recreate), scales, writes
//! status and prunes old ReplicaSets beyond `revisionHistoryLimit`.

pub mod hash;
pub mod rollout;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{predicates, watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::error::{is_conflict, is_not_found, Error, Result};
use crate::util::{controlled_by, controller_ref, key, labels, owner_ref, selector};
use hash::{equal_ignoring_hash, pod_template_hash, POD_TEMPLATE_HASH};
use rollout::{new_rs_replicas, resolve_fenceposts, scale_down_old, RsCounts};

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
        client,
        replicasets: rs_store,
    });
    Controller::for_stream(deployments, d_store)
        .owns_stream(replicasets)
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "deployment reconcile failed");
            }
        })
        .await;
    Err(Error::Stopped("deployment", "watch ended".into()))
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

struct Sync<'a> {
    ctx: &'a Context,
    d: &'a Deployment,
    spec: &'a DeploymentSpec,
    ns: String,
    name: String,
}

impl Sync<'_> {
    fn rs_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.ctx.client.clone(), &self.ns)
    }

    /// Sets a ReplicaSet's replicas (and the annotations Kubernetes keeps with them).
    async fn scale(&self, rs: &mut ReplicaSet, replicas: i32, max_surge: i32) -> Result<()> {
        if rs_replicas(rs) == replicas {
            return Ok(());
        }
        let desired = self.spec.replicas.unwrap_or(1);
        let patch = json!({
            "metadata": {"annotations": {
                DESIRED_REPLICAS: desired.to_string(),
                MAX_REPLICAS: (desired + max_surge).to_string(),
            }},
            "spec": {"replicas": replicas}
        });
        tracing::info!(deployment = %format!("{}/{}", self.ns, self.name), replicaset = %rs.name_any(),
            from = rs_replicas(rs), to = replicas, "scaling replica set");
        *rs = self
            .rs_api()
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    /// Creates the ReplicaSet for the current template.
    async fn create_new(
        &self,
        hash: &str,
        replicas: i32,
        revision: i64,
        max_surge: i32,
    ) -> Result<Option<ReplicaSet>> {
        let mut template = self.spec.template.clone();
        let meta = template.metadata.get_or_insert_with(Default::default);
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.into());
        let mut rs_labels = meta.labels.clone().unwrap_or_default();
        rs_labels.insert(POD_TEMPLATE_HASH.into(), hash.into());
        let mut sel: LabelSelector = self.spec.selector.clone();
        sel.match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.into());
        let desired = self.spec.replicas.unwrap_or(1);
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{}-{hash}", self.name)),
                namespace: Some(self.ns.clone()),
                labels: Some(rs_labels),
                annotations: Some(BTreeMap::from([
                    (REVISION.to_string(), revision.to_string()),
                    (DESIRED_REPLICAS.to_string(), desired.to_string()),
                    (MAX_REPLICAS.to_string(), (desired + max_surge).to_string()),
                ])),
                owner_references: Some(vec![owner_ref(self.d)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: self.spec.min_ready_seconds,
                selector: sel,
                template: Some(template),
            }),
            status: None,
        };
        match self.rs_api().create(&PostParams::default(), &rs).await {
            Ok(rs) => {
                tracing::info!(deployment = %format!("{}/{}", self.ns, self.name), replicaset = %rs.name_any(),
                    replicas, "created replica set");
                Ok(Some(rs))
            }
            Err(e) if is_conflict(&e) => {
                // our cache may lag: is it ours?
                let existing = self.rs_api().get(&format!("{}-{hash}", self.name)).await?;
                if controlled_by(
                    &existing.metadata,
                    self.d.metadata.uid.as_deref().unwrap_or(""),
                ) {
                    Ok(Some(existing))
                } else {
                    // a foreign ReplicaSet holds the name: bump collisionCount and retry
                    let count = self
                        .d
                        .status
                        .as_ref()
                        .and_then(|s| s.collision_count)
                        .unwrap_or(0)
                        + 1;
                    let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), &self.ns);
                    api.patch_status(
                        &self.name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": {"collisionCount": count}})),
                    )
                    .await?;
                    Ok(None)
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action> {
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(spec) = d.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let ns = d.namespace().unwrap_or_else(|| "default".into());
    let name = d.name_any();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let sel = selector(&d.metadata, "spec.selector", &spec.selector)?;
    ctx.replicasets
        .wait_until_ready()
        .await
        .map_err(|_| Error::CacheNotReady("replicasets"))?;
    let s = Sync {
        ctx: &ctx,
        d: &d,
        spec,
        ns: ns.clone(),
        name: name.clone(),
    };

    // ReplicaSets of this deployment (adopting matching orphans)
    let mut owned: Vec<ReplicaSet> = Vec::new();
    for rs in ctx
        .replicasets
        .state()
        .into_iter()
        .filter(|rs| rs.metadata.namespace.as_deref() == Some(ns.as_str()))
    {
        if controlled_by(&rs.metadata, &uid) {
            owned.push((*rs).clone());
        } else if controller_ref(&rs.metadata).is_none()
            && rs.metadata.deletion_timestamp.is_none()
            && sel.matches(labels(&rs.metadata))
        {
            let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
            refs.push(owner_ref(&*d));
            let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": rs.metadata.resource_version}});
            match s
                .rs_api()
                .patch(
                    &rs.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(adopted) => owned.push(adopted),
                Err(e) if is_not_found(&e) || is_conflict(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    owned.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });

    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = pod_template_hash(&spec.template, collision);
    let new_name = format!("{name}-{hash}");
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
    let mut new_rs = new_idx.map(|i| owned.remove(i));
    let mut old = owned;
    let max_old_revision = old.iter().map(revision).max().unwrap_or(0);
    let replicas = spec.replicas.unwrap_or(1);
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let rolling = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let (max_surge, max_unavailable) = if recreate {
        (0, 0)
    } else {
        resolve_fenceposts(
            rolling.and_then(|r| r.max_surge.as_ref()),
            rolling.and_then(|r| r.max_unavailable.as_ref()),
            replicas,
        )
        .map_err(|reason| Error::Invalid {
            object: key(&d.metadata),
            field: "spec.strategy.rollingUpdate".into(),
            reason,
        })?
    };

    // keep the new RS's revision the highest (also after a rollback to an old template)
    if let Some(rs) = new_rs.as_mut() {
        if revision(rs) <= max_old_revision {
            let patch = json!({"metadata": {"annotations": {REVISION: (max_old_revision + 1).to_string()}}});
            *rs = s
                .rs_api()
                .patch(
                    &rs.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
        }
    }

    let paused = spec.paused == Some(true);
    let mut changed = false;
    let mut waiting = false;
    if !paused {
        if recreate {
            for rs in old.iter_mut() {
                if rs_replicas(rs) > 0 {
                    s.scale(rs, 0, 0).await?;
                    changed = true;
                }
            }
            let old_running = old.iter().any(|rs| rs_status(rs).0 > 0)
                || (!changed && old_pods_exist(&s, &old).await?);
            if old_running && !changed {
                // pods of old ReplicaSets (terminating ones too) must be gone first
                waiting = true;
            }
            if !changed && !old_running {
                match new_rs.as_mut() {
                    Some(rs) => {
                        if rs_replicas(rs) != replicas {
                            s.scale(rs, replicas, 0).await?;
                            changed = true;
                        }
                    }
                    None => {
                        new_rs = s
                            .create_new(&hash, replicas, max_old_revision + 1, 0)
                            .await?;
                        changed = true;
                    }
                }
            }
        } else {
            let total: i32 =
                old.iter().map(rs_replicas).sum::<i32>() + new_rs.as_ref().map_or(0, rs_replicas);
            match new_rs.as_mut() {
                None => {
                    let n = new_rs_replicas(replicas, max_surge, total, 0);
                    new_rs = s
                        .create_new(&hash, n, max_old_revision + 1, max_surge)
                        .await?;
                    changed = true;
                }
                Some(rs) => {
                    let n = new_rs_replicas(replicas, max_surge, total, rs_replicas(rs));
                    if n != rs_replicas(rs) {
                        s.scale(rs, n, max_surge).await?;
                        changed = true;
                    }
                }
            }
            let all_synced = old.iter().chain(new_rs.iter()).all(rs_synced);
            if !changed && all_synced {
                if let Some(new) = new_rs.as_ref() {
                    let counts: Vec<RsCounts> = old
                        .iter()
                        .map(|rs| RsCounts {
                            replicas: rs_replicas(rs),
                            available: rs_status(rs).2,
                        })
                        .collect();
                    let new_counts = RsCounts {
                        replicas: rs_replicas(new),
                        available: rs_status(new).2,
                    };
                    let plan = scale_down_old(&counts, new_counts, replicas, max_unavailable);
                    for (rs, target) in old.iter_mut().zip(plan) {
                        if target != rs_replicas(rs) {
                            s.scale(rs, target, max_surge).await?;
                            changed = true;
                        }
                    }
                }
            }
        }
    }

    // revision annotation on the deployment
    if let Some(rs) = new_rs.as_ref() {
        let rev = revision(rs).to_string();
        if d.annotations().get(REVISION) != Some(&rev) {
            let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
            let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
    }

    let complete = new_rs.as_ref().is_some_and(|rs| {
        let (r, _, a) = rs_status(rs);
        rs_replicas(rs) == replicas && r == replicas && a == replicas
    }) && old
        .iter()
        .all(|rs| rs_replicas(rs) == 0 && rs_status(rs).0 == 0);

    if complete && !changed {
        cleanup_history(&s, &old).await?;
    }

    write_status(&s, new_rs.as_ref(), &old, max_unavailable, complete).await?;
    if waiting {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Whether any pod of the old ReplicaSets still exists and has not finished (Recreate waits for
/// them, terminating ones included). Asks the API server: this controller keeps no pod cache.
async fn old_pods_exist(s: &Sync<'_>, old: &[ReplicaSet]) -> Result<bool> {
    let uids: Vec<&str> = old
        .iter()
        .filter_map(|rs| rs.metadata.uid.as_deref())
        .collect();
    if uids.is_empty() {
        return Ok(false);
    }
    let sel = crate::util::selector(&s.d.metadata, "spec.selector", &s.spec.selector)?;
    let api: Api<Pod> = Api::namespaced(s.ctx.client.clone(), &s.ns);
    let pods = api
        .list(&ListParams::default().labels(&sel.to_string()))
        .await?;
    Ok(pods.items.iter().any(|p| {
        controller_ref(&p.metadata).is_some_and(|o| uids.contains(&o.uid.as_str()))
            && !matches!(
                p.status.as_ref().and_then(|st| st.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
    }))
}

/// Deletes the oldest zero-replica ReplicaSets beyond `revisionHistoryLimit` (default 10).
async fn cleanup_history(s: &Sync<'_>, old: &[ReplicaSet]) -> Result<()> {
    let limit = s.spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    let mut idle: Vec<&ReplicaSet> = old
        .iter()
        .filter(|rs| {
            rs.metadata.deletion_timestamp.is_none() && rs_replicas(rs) == 0 && rs_status(rs).0 == 0
        })
        .collect();
    if idle.len() <= limit {
        return Ok(());
    }
    idle.sort_by_key(|rs| revision(rs));
    let excess = idle.len() - limit;
    for rs in idle.into_iter().take(excess) {
        tracing::info!(replicaset = %key(&rs.metadata), "deleting old replica set beyond revision history limit");
        match s
            .rs_api()
            .delete(&rs.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn condition(
    old: Option<&DeploymentCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: &Timestamp,
) -> DeploymentCondition {
    let same_status = old.is_some_and(|c| c.status == status);
    let same_all = same_status
        && old.is_some_and(|c| {
            c.reason.as_deref() == Some(reason) && c.message.as_deref() == Some(message.as_str())
        });
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: if same_status {
            old.and_then(|c| c.last_transition_time.clone())
        } else {
            Some(Time(*now))
        },
        last_update_time: if same_all {
            old.and_then(|c| c.last_update_time.clone())
        } else {
            Some(Time(*now))
        },
    }
}

async fn write_status(
    s: &Sync<'_>,
    new_rs: Option<&ReplicaSet>,
    old: &[ReplicaSet],
    max_unavailable: i32,
    complete: bool,
) -> Result<()> {
    let replicas = s.spec.replicas.unwrap_or(1);
    let all: Vec<&ReplicaSet> = old.iter().chain(new_rs).collect();
    let mut status_replicas = 0;
    let mut ready = 0;
    let mut available = 0;
    for rs in &all {
        let (r, rd, a) = rs_status(rs);
        status_replicas += r;
        ready += rd;
        available += a;
    }
    let spec_total: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let updated = new_rs.map_or(0, |rs| rs_status(rs).0);
    let old_status = s.d.status.clone().unwrap_or_default();
    let old_conds = old_status.conditions.clone().unwrap_or_default();
    let find = |t: &str| old_conds.iter().find(|c| c.type_ == t);
    let now = Timestamp::now();
    let available_cond = if available >= replicas - max_unavailable {
        condition(
            find("Available"),
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            &now,
        )
    } else {
        condition(
            find("Available"),
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            &now,
        )
    };
    let new_name = new_rs.map(|rs| rs.name_any()).unwrap_or_default();
    let progressing = if complete {
        condition(
            find("Progressing"),
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{new_name}\" has successfully progressed."),
            &now,
        )
    } else {
        condition(
            find("Progressing"),
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{new_name}\" is progressing."),
            &now,
        )
    };
    let status = DeploymentStatus {
        available_replicas: Some(available),
        collision_count: old_status.collision_count,
        conditions: Some(vec![available_cond, progressing]),
        observed_generation: s.d.metadata.generation,
        ready_replicas: Some(ready),
        replicas: Some(status_replicas),
        terminating_replicas: old_status.terminating_replicas,
        unavailable_replicas: Some((spec_total.max(replicas) - available).max(0)),
        updated_replicas: Some(updated),
    };
    if s.d.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<Deployment> = Api::namespaced(s.ctx.client.clone(), &s.ns);
    match api
        .patch_status(
            &s.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
