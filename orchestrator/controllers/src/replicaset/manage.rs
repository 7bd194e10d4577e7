//! manageReplicas: creates or deletes the difference between the active pods and
//! `spec.replicas`, recording expectations so that a lagging cache never doubles a step.

use std::cmp::Reverse;
use std::collections::HashSet;

use bpfk_common::events::{self, EventType, Recorder};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::{Resource, ResourceExt};

use crate::error::{is_conflict, is_not_found, Result};
use crate::expectations::Expectations;
use crate::util::{is_pod_active, is_pod_ready, key, owner_ref, random_suffix, ready_since};

/// Pods created or deleted in one sync at most (the rest in the next one).
pub const BURST: usize = 500;
/// Requests in flight per sync.
const PARALLEL: usize = 32;

/// What one sync does about the replica count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaDiff {
    /// As many active pods as wanted.
    InSync,
    /// Create this many pods.
    Create(usize),
    /// Delete this many pods.
    Delete(usize),
}

/// The step from `active` pods toward `want`, at most [`BURST`] pods at once.
pub fn replica_diff(active: usize, want: usize) -> ReplicaDiff {
    if active < want {
        ReplicaDiff::Create((want - active).min(BURST))
    } else if active > want {
        ReplicaDiff::Delete((active - want).min(BURST))
    } else {
        ReplicaDiff::InSync
    }
}

/// Sort key of a pod for deletion, smallest first (Kubernetes' `ActivePods` order): unscheduled
/// before scheduled; Pending before Unknown before Running; not ready before ready; ready for
/// less time before longer; more restarts before fewer; newer before older.
pub type DeletionRank = (
    bool,
    u8,
    bool,
    Reverse<Option<Timestamp>>,
    Reverse<i32>,
    Reverse<Option<Timestamp>>,
);

/// The [`DeletionRank`] of `pod`.
pub fn deletion_rank(pod: &Pod) -> DeletionRank {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some_and(|n| !n.is_empty());
    let phase = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    };
    let restarts = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum());
    let ready = is_pod_ready(pod);
    (
        scheduled,
        phase,
        ready,
        Reverse(ready.then(|| ready_since(pod)).flatten()),
        Reverse(restarts),
        Reverse(pod.metadata.creation_timestamp.as_ref().map(|t| t.0)),
    )
}

/// The `n` pods to delete first.
pub fn pods_to_delete<'a>(active: &[&'a Pod], n: usize) -> Vec<&'a Pod> {
    let mut ranked = active.to_vec();
    ranked.sort_by_key(|p| deletion_rank(p));
    ranked.truncate(n);
    ranked
}

/// The owned pods that count toward the replicas: active, and not already being deleted by us.
pub fn active_pods<'a>(owned: &'a [Pod], pending_deletions: &HashSet<String>) -> Vec<&'a Pod> {
    owned
        .iter()
        .filter(|p| is_pod_active(p))
        .filter(|p| {
            !p.metadata
                .uid
                .as_ref()
                .is_some_and(|u| pending_deletions.contains(u))
        })
        .collect()
}

/// A new pod from the ReplicaSet's template, controlled by it.
pub fn new_pod(rs: &ReplicaSet) -> Option<Pod> {
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

/// What creates and deletes a ReplicaSet's pods: the API, the expectations it then waits
/// for, and the recorder of the events about it.
pub struct PodWriter<'a> {
    pub api: &'a Api<Pod>,
    pub expectations: &'a Expectations,
    pub recorder: &'a Recorder,
}

/// Creates or deletes pods per [`replica_diff`]; `active` loses the pods deleted.
pub async fn manage_replicas(
    w: &PodWriter<'_>,
    rs: &ReplicaSet,
    active: &mut Vec<&Pod>,
    want: usize,
) -> Result<()> {
    let uid = rs.metadata.uid.as_deref().unwrap_or_default();
    match replica_diff(active.len(), want) {
        ReplicaDiff::InSync => Ok(()),
        ReplicaDiff::Create(n) => create_pods(w, rs, n).await,
        ReplicaDiff::Delete(n) => {
            let victims: Vec<Pod> = pods_to_delete(active, n).into_iter().cloned().collect();
            let result = delete_pods(w, rs, victims).await;
            tracing::info!(replicaset = %key(&rs.metadata), deleted = n, "deleted pods");
            result?;
            let deleted = w.expectations.pending_deletions(uid);
            active.retain(|p| !p.metadata.uid.as_ref().is_some_and(|u| deleted.contains(u)));
            Ok(())
        }
    }
}

/// Records an event about `rs` concerning its pod `pod` (the event's related object), in
/// the background: a sync never waits for its events.
fn pod_event(
    recorder: &Recorder,
    rs: &ReplicaSet,
    pod: Option<ObjectReference>,
    (type_, reason, action): (EventType, &str, &str),
    note: String,
) {
    let mut ev = events::event(type_, reason, action, note);
    ev.secondary = pod;
    let (recorder, regarding) = (recorder.clone(), rs.object_ref(&()));
    tokio::spawn(async move { events::record(&recorder, &regarding, ev).await });
}

async fn create_pods(w: &PodWriter<'_>, rs: &ReplicaSet, n: usize) -> Result<()> {
    let uid = rs.metadata.uid.as_deref().unwrap_or_default();
    let pods: Vec<Pod> = (0..n).filter_map(|_| new_pod(rs)).collect();
    let names = pods.iter().filter_map(|p| p.metadata.name.clone());
    w.expectations.expect(uid, names, std::iter::empty());
    let api = w.api;
    let results: Vec<(String, Result<Pod, kube::Error>)> = futures::stream::iter(pods)
        .map(|p| async move { (p.name_any(), api.create(&PostParams::default(), &p).await) })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut first_err = None;
    let mut created = 0;
    for (name, r) in results {
        match r {
            Ok(pod) => {
                created += 1;
                let how = (EventType::Normal, "SuccessfulCreate", "Create");
                let note = format!("Created pod: {name}");
                pod_event(w.recorder, rs, Some(pod.object_ref(&())), how, note);
            }
            Err(e) => {
                w.expectations.creation_failed(uid, &name);
                if !is_conflict(&e) && first_err.is_none() {
                    let how = (EventType::Warning, "FailedCreate", "Create");
                    pod_event(w.recorder, rs, None, how, format!("Error creating: {e}"));
                    first_err = Some(e);
                }
            }
        }
    }
    tracing::info!(replicaset = %key(&rs.metadata), created, "created pods");
    first_err.map_or(Ok(()), |e| Err(e.into()))
}

async fn delete_pods(w: &PodWriter<'_>, rs: &ReplicaSet, victims: Vec<Pod>) -> Result<()> {
    let uid = rs.metadata.uid.as_deref().unwrap_or_default();
    let uids = victims.iter().filter_map(|p| p.metadata.uid.clone());
    w.expectations.expect(uid, std::iter::empty(), uids);
    let api = w.api;
    let results: Vec<(Pod, Result<(), kube::Error>)> = futures::stream::iter(victims)
        .map(|p| async move {
            let pod_uid = p.metadata.uid.clone().unwrap_or_default();
            let dp = DeleteParams::default().preconditions(Preconditions {
                uid: Some(pod_uid),
                resource_version: None,
            });
            let r = api.delete(&p.name_any(), &dp).await.map(|_| ());
            (p, r)
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut first_err = None;
    for (pod, r) in results {
        let regarding = Some(pod.object_ref(&()));
        match r {
            Ok(()) => {
                let how = (EventType::Normal, "SuccessfulDelete", "Delete");
                let note = format!("Deleted pod: {}", pod.name_any());
                pod_event(w.recorder, rs, regarding, how, note);
            }
            Err(e) => {
                let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
                w.expectations.deletion_observed(uid, pod_uid);
                if !is_not_found(&e) && first_err.is_none() {
                    let how = (EventType::Warning, "FailedDelete", "Delete");
                    pod_event(
                        w.recorder,
                        rs,
                        regarding,
                        how,
                        format!("Error deleting: {e}"),
                    );
                    first_err = Some(e);
                }
            }
        }
    }
    first_err.map_or(Ok(()), |e| Err(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::controller_ref;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, created: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"containers": [], "nodeName": node},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn deletion_prefers_unscheduled_pending_unready_newest() {
        let pods = [
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
        let all: Vec<&Pod> = pods.iter().collect();
        assert_eq!(
            names(&pods_to_delete(&all, 5)),
            [
                "unscheduled",
                "pending",
                "unready",
                "ready-new",
                "ready-old"
            ]
        );
        assert_eq!(names(&pods_to_delete(&all, 2)), ["unscheduled", "pending"]);
    }

    #[test]
    fn deletion_prefers_unknown_over_running_then_short_ready_then_restarts() {
        let at = "2026-01-01T00:00:00Z";
        let mut unknown = pod("unknown", Some("n"), "Unknown", false, at);
        unknown.status.as_mut().unwrap().conditions = None;
        let running = pod("running", Some("n"), "Running", false, at);
        let pending = pod("pending", Some("n"), "Pending", false, at);
        let all = [&running, &unknown, &pending];
        assert_eq!(
            names(&pods_to_delete(&all, 3)),
            ["pending", "unknown", "running"]
        );

        let ready_since = |name: &str, since: &str, restarts: i32| -> Pod {
            let mut p = pod(name, Some("n"), "Running", true, at);
            let st = p.status.as_mut().unwrap();
            st.conditions.as_mut().unwrap()[0].last_transition_time = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(since.parse().unwrap()),
            );
            st.container_statuses = Some(vec![serde_json::from_value(json!({
                "name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": restarts
            }))
            .unwrap()]);
            p
        };
        let long = ready_since("long", "2026-01-01T00:00:00Z", 0);
        let short = ready_since("short", "2026-01-01T01:00:00Z", 0);
        let crashy = ready_since("crashy", "2026-01-01T00:00:00Z", 3);
        let all = [&long, &crashy, &short];
        assert_eq!(names(&pods_to_delete(&all, 3)), ["short", "crashy", "long"]);
    }

    #[test]
    fn diff_is_capped_by_the_burst() {
        assert_eq!(replica_diff(3, 3), ReplicaDiff::InSync);
        assert_eq!(replica_diff(1, 3), ReplicaDiff::Create(2));
        assert_eq!(replica_diff(5, 2), ReplicaDiff::Delete(3));
        assert_eq!(replica_diff(0, BURST + 7), ReplicaDiff::Create(BURST));
        assert_eq!(replica_diff(BURST + 9, 0), ReplicaDiff::Delete(BURST));
    }

    #[test]
    fn terminating_finished_and_pending_deletions_do_not_count() {
        let at = "2026-01-01T00:00:00Z";
        let mut deleting = pod("deleting", Some("n"), "Running", true, at);
        deleting.metadata.deletion_timestamp = deleting.metadata.creation_timestamp.clone();
        let done = pod("done", Some("n"), "Succeeded", false, at);
        let mut doomed = pod("doomed", Some("n"), "Running", true, at);
        doomed.metadata.uid = Some("u-doomed".into());
        let live = pod("live", Some("n"), "Running", true, at);
        let owned = [deleting, done, doomed, live];
        let pending = HashSet::from(["u-doomed".to_string()]);
        assert_eq!(names(&active_pods(&owned, &pending)), ["live"]);
        assert_eq!(
            names(&active_pods(&owned, &HashSet::new())),
            ["doomed", "live"]
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
