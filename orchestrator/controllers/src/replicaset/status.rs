//! calculateStatus: the ReplicaSet's status from the pods it counts, and when to look again.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use serde_json::json;

use crate::error::{is_not_found, Result};
use crate::util::{is_pod_ready, labels, pod_availability};

/// The status `rs` has with `active` pods at `now`, and the seconds until one of them
/// becomes available (ready for `minReadySeconds`), if one is waiting for that.
pub fn calculate_status(
    rs: &ReplicaSet,
    active: &[&Pod],
    now: Timestamp,
) -> (ReplicaSetStatus, Option<u64>) {
    let spec = rs.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let (mut ready, mut available, mut fully_labeled) = (0, 0, 0);
    let mut recheck: Option<u64> = None;
    for p in active {
        ready += i32::from(is_pod_ready(p));
        let (avail, wait) = pod_availability(p, min_ready, now);
        available += i32::from(avail);
        if let Some(w) = wait {
            recheck = Some(recheck.map_or(w, |r| r.min(w)));
        }
        let l = labels(&p.metadata);
        fully_labeled += i32::from(template_labels.iter().all(|(k, v)| l.get(k) == Some(v)));
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
    (status, recheck)
}

/// Writes `status` unless `rs` has it already; `false` when the ReplicaSet is gone.
pub async fn update_status(
    api: &Api<ReplicaSet>,
    rs: &ReplicaSet,
    status: &ReplicaSetStatus,
) -> Result<bool> {
    if rs.status.as_ref() == Some(status) {
        return Ok(true);
    }
    let patch = Patch::Merge(json!({"status": status}));
    match api
        .patch_status(&rs.name_any(), &PatchParams::default(), &patch)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// When to sync again: soon while expectations are pending, when a pod becomes available,
/// else after the resync period.
pub fn next_sync(expectations_met: bool, recheck_secs: Option<u64>) -> Action {
    if !expectations_met {
        return Action::requeue(Duration::from_secs(1));
    }
    match recheck_secs {
        Some(secs) => Action::requeue(Duration::from_secs(secs.max(1))),
        None => Action::requeue(Duration::from_secs(300)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs() -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": 4},
            "spec": {"minReadySeconds": 10, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}}},
            "status": {"replicas": 0, "conditions": [{"type": "ReplicaFailure", "status": "True"}]}
        }))
        .unwrap()
    }

    fn pod(labels: serde_json::Value, ready_since: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "labels": labels},
            "status": {"conditions": [{"type": "Ready",
                "status": if ready_since.is_some() {"True"} else {"False"},
                "lastTransitionTime": ready_since}]}
        }))
        .unwrap()
    }

    #[test]
    fn counts_ready_available_and_fully_labeled() {
        let full = json!({"app": "web", "tier": "front"});
        let long_ready = pod(full.clone(), Some("2026-01-01T00:00:00Z"));
        let just_ready = pod(json!({"app": "web"}), Some("2026-01-01T00:00:57Z"));
        let unready = pod(full, None);
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let (status, recheck) = calculate_status(&rs(), &[&long_ready, &just_ready, &unready], now);
        assert_eq!(status.replicas, 3);
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(status.fully_labeled_replicas, Some(2));
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(status.conditions.map(|c| c.len()), Some(1));
        assert_eq!(recheck, Some(7));
    }

    #[test]
    fn requeues_soon_while_expecting() {
        assert_eq!(
            next_sync(false, Some(30)),
            Action::requeue(Duration::from_secs(1))
        );
        assert_eq!(
            next_sync(true, Some(0)),
            Action::requeue(Duration::from_secs(1))
        );
        assert_eq!(
            next_sync(true, Some(7)),
            Action::requeue(Duration::from_secs(7))
        );
        assert_eq!(
            next_sync(true, None),
            Action::requeue(Duration::from_secs(300))
        );
    }
}
