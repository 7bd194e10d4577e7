//! ReplicaSet controller: creates and deletes pods to match `spec.replicas`, adopts matching
//! orphans, releases pods that stopped matching, and writes status.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{predicates, watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::error::{is_conflict, is_not_found, Error, Result};
use crate::expectations::Expectations;
use crate::util::{
    controlled_by, controller_ref, is_pod_active, is_pod_ready, key, labels, owner_ref,
    pod_availability, random_suffix, selector,
};

/// Pods created or deleted in one sync at most (the rest in the next one).
const BURST: usize = 500;
/// Requests in flight per sync.
const PARALLEL: usize = 32;

/// Shared state of the reconciler.
pub struct Context {
    client: Client,
    pods: Store<Pod>,
    expectations: Expectations,
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
        client,
        pods,
        expectations: Expectations::default(),
    });
    let controller = Controller::for_stream(replicasets, rs_store);
    let rs_cache = controller.store();
    controller
        .watches_shared_stream(pod_changes, move |pod: Arc<Pod>| {
            pod_to_replicasets(&rs_cache, &pod)
        })
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "replicaset reconcile failed");
            }
        })
        .await;
    Err(Error::Stopped("replicaset", "watch ended".into()))
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

/// Deletion preference: unscheduled first, then pending, then not ready, then the newest.
pub fn deletion_rank(pod: &Pod) -> (u8, u8, u8, std::cmp::Reverse<Option<Timestamp>>) {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some_and(|n| !n.is_empty());
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let running = phase == Some("Running");
    (
        u8::from(scheduled),
        u8::from(running),
        u8::from(is_pod_ready(pod)),
        std::cmp::Reverse(pod.metadata.creation_timestamp.as_ref().map(|t| t.0)),
    )
}

fn new_pod(rs: &ReplicaSet) -> Option<Pod> {
    let template = rs.spec.as_ref()?.template.as_ref()?;
    let tmeta = template.metadata.clone().unwrap_or_default();
    let name = format!("{}-{}", rs.name_any(), random_suffix(5));
    Some(Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: rs.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner_ref(rs)]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
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

    let in_ns: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let mut owned: Vec<Pod> = Vec::new();
    for pod in &in_ns {
        let matches = sel.matches(labels(&pod.metadata));
        if controlled_by(&pod.metadata, &uid) {
            if matches || pod.metadata.deletion_timestamp.is_some() {
                owned.push((**pod).clone());
            } else {
                // release: the pod no longer matches our selector
                let refs: Vec<_> = pod
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .filter(|o| o.uid != uid)
                    .cloned()
                    .collect();
                let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": pod.metadata.resource_version}});
                match api
                    .patch(
                        &pod.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(_) => {
                        tracing::info!(pod = %key(&pod.metadata), replicaset = %rs.name_any(), "released pod")
                    }
                    Err(e) if is_not_found(&e) || is_conflict(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        } else if matches && controller_ref(&pod.metadata).is_none() && is_pod_active(pod) {
            let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
            refs.push(owner_ref(&*rs));
            let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": pod.metadata.resource_version}});
            match api
                .patch(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(adopted) => {
                    tracing::info!(pod = %key(&pod.metadata), replicaset = %rs.name_any(), "adopted pod");
                    owned.push(adopted);
                }
                Err(e) if is_not_found(&e) || is_conflict(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    let names: HashSet<&str> = owned
        .iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    let live: HashSet<&str> = owned
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.uid.as_deref())
        .collect();
    let synced = ctx
        .expectations
        .satisfied(&uid, &names, |u| !live.contains(u));
    let pending_dels = ctx.expectations.pending_deletions(&uid);
    let mut active: Vec<&Pod> = owned
        .iter()
        .filter(|p| is_pod_active(p))
        .filter(|p| {
            !p.metadata
                .uid
                .as_ref()
                .is_some_and(|u| pending_dels.contains(u))
        })
        .collect();
    let want = spec.replicas.unwrap_or(1).max(0) as usize;

    if synced {
        if active.len() < want {
            let n = (want - active.len()).min(BURST);
            let pods: Vec<Pod> = (0..n).filter_map(|_| new_pod(&rs)).collect();
            ctx.expectations.expect(
                &uid,
                pods.iter().filter_map(|p| p.metadata.name.clone()),
                std::iter::empty(),
            );
            let results: Vec<(String, Result<Pod, kube::Error>)> = futures::stream::iter(pods)
                .map(|p| {
                    let api = api.clone();
                    async move {
                        let name = p.name_any();
                        (name, api.create(&PostParams::default(), &p).await)
                    }
                })
                .buffer_unordered(PARALLEL)
                .collect()
                .await;
            let mut first_err = None;
            let mut created = 0;
            for (name, r) in results {
                match r {
                    Ok(_) => created += 1,
                    Err(e) => {
                        ctx.expectations.creation_failed(&uid, &name);
                        if !is_conflict(&e) && first_err.is_none() {
                            first_err = Some(e);
                        }
                    }
                }
            }
            tracing::info!(replicaset = %key(&rs.metadata), created, "created pods");
            if let Some(e) = first_err {
                return Err(e.into());
            }
        } else if active.len() > want {
            let n = (active.len() - want).min(BURST);
            active.sort_by_key(|p| deletion_rank(p));
            let victims: Vec<Pod> = active.iter().take(n).map(|p| (*p).clone()).collect();
            ctx.expectations.expect(
                &uid,
                std::iter::empty(),
                victims.iter().filter_map(|p| p.metadata.uid.clone()),
            );
            let results: Vec<(String, Result<(), kube::Error>)> = futures::stream::iter(victims)
                .map(|p| {
                    let api = api.clone();
                    async move {
                        let pod_uid = p.metadata.uid.clone().unwrap_or_default();
                        let dp = DeleteParams::default().preconditions(Preconditions {
                            uid: Some(pod_uid.clone()),
                            resource_version: None,
                        });
                        let r = api.delete(&p.name_any(), &dp).await.map(|_| ());
                        (pod_uid, r)
                    }
                })
                .buffer_unordered(PARALLEL)
                .collect()
                .await;
            let mut first_err = None;
            for (pod_uid, r) in results {
                if let Err(e) = r {
                    ctx.expectations.deletion_observed(&uid, &pod_uid);
                    if !is_not_found(&e) && first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
            tracing::info!(replicaset = %key(&rs.metadata), deleted = n, "deleted pods");
            if let Some(e) = first_err {
                return Err(e.into());
            }
            let deleted = ctx.expectations.pending_deletions(&uid);
            active.retain(|p| !p.metadata.uid.as_ref().is_some_and(|u| deleted.contains(u)));
        }
    }

    // status from the pods the cache shows (minus those being deleted)
    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let template_labels: BTreeMap<String, String> = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mut ready = 0;
    let mut available = 0;
    let mut fully_labeled = 0;
    let mut recheck: Option<u64> = None;
    for p in &active {
        if is_pod_ready(p) {
            ready += 1;
        }
        let (avail, wait) = pod_availability(p, min_ready, now);
        if avail {
            available += 1;
        }
        if let Some(w) = wait {
            recheck = Some(recheck.map_or(w, |r| r.min(w)));
        }
        let l = labels(&p.metadata);
        if template_labels.iter().all(|(k, v)| l.get(k) == Some(v)) {
            fully_labeled += 1;
        }
    }
    let status = ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(fully_labeled),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: rs.status.as_ref().and_then(|s| s.terminating_replicas),
    };
    if rs.status.as_ref() != Some(&status) {
        let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
        match rs_api
            .patch_status(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
    }
    if !synced {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(match recheck {
        Some(secs) => Action::requeue(Duration::from_secs(secs.max(1))),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, created: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"containers": [], "nodeName": node},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    #[test]
    fn deletion_prefers_unscheduled_pending_unready_newest() {
        let mut pods = [
            pod(
                "ready-old",
                Some("n"),
                "Running",
                true,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "ready-new",
                Some("n"),
                "Running",
                true,
                "2026-01-02T00:00:00Z",
            ),
            pod(
                "unready",
                Some("n"),
                "Running",
                false,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "pending",
                Some("n"),
                "Pending",
                false,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "unscheduled",
                None,
                "Pending",
                false,
                "2026-01-01T00:00:00Z",
            ),
        ];
        pods.sort_by_key(deletion_rank);
        let order: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
        assert_eq!(
            order,
            [
                "unscheduled",
                "pending",
                "unready",
                "ready-new",
                "ready-old"
            ]
        );
    }

    #[test]
    fn pods_from_template_are_owned_and_named() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "default", "uid": "u1"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
        }))
        .unwrap();
        let p = new_pod(&rs).unwrap();
        let name = p.name_any();
        assert!(name.starts_with("web-abc-") && name.len() == "web-abc-".len() + 5);
        let o = controller_ref(&p.metadata).unwrap();
        assert_eq!(
            (o.kind.as_str(), o.uid.as_str(), o.api_version.as_str()),
            ("ReplicaSet", "u1", "apps/v1")
        );
        assert_eq!(
            p.metadata.labels.unwrap().get("app").map(String::as_str),
            Some("web")
        );
    }
}
