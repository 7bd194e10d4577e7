//! The Deployment's status: replica counts summed over its ReplicaSets and the Available and
//! Progressing conditions.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::{rs_replicas, rs_status};
use crate::error::{is_not_found, Result};

/// A condition, keeping the old one's transition time while its status holds and its update
/// time while nothing changes.
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
    let kept = |t: Option<&Time>, keep: bool| if keep { t.cloned() } else { Some(Time(*now)) };
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: kept(
            old.and_then(|c| c.last_transition_time.as_ref()),
            same_status,
        ),
        last_update_time: kept(old.and_then(|c| c.last_update_time.as_ref()), same_all),
    }
}

/// The Available and Progressing conditions.
fn conditions(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    available: i32,
    max_unavailable: i32,
    complete: bool,
    now: &Timestamp,
) -> Vec<DeploymentCondition> {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let old_conds = d.status.as_ref().and_then(|s| s.conditions.as_deref());
    let old = |t: &str| old_conds.unwrap_or_default().iter().find(|c| c.type_ == t);
    let (status, reason, message) = if available >= replicas - max_unavailable {
        ("True", "MinimumReplicasAvailable", "has")
    } else {
        ("False", "MinimumReplicasUnavailable", "does not have")
    };
    let message = format!("Deployment {message} minimum availability.");
    let available = condition(old("Available"), "Available", status, reason, message, now);
    let new_name = new_rs.map(|rs| rs.name_any()).unwrap_or_default();
    let (reason, message) = if complete {
        ("NewReplicaSetAvailable", "has successfully progressed")
    } else {
        ("ReplicaSetUpdated", "is progressing")
    };
    let message = format!("ReplicaSet \"{new_name}\" {message}.");
    let progressing = condition(
        old("Progressing"),
        "Progressing",
        "True",
        reason,
        message,
        now,
    );
    vec![available, progressing]
}

/// The status of `d` with ReplicaSets `new_rs` and `old` at `now`.
pub fn calculate_status(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    old: &[ReplicaSet],
    max_unavailable: i32,
    complete: bool,
    now: Timestamp,
) -> DeploymentStatus {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let all: Vec<&ReplicaSet> = old.iter().chain(new_rs).collect();
    let (mut status_replicas, mut ready, mut available) = (0, 0, 0);
    for rs in &all {
        let (r, rd, a) = rs_status(rs);
        status_replicas += r;
        ready += rd;
        available += a;
    }
    let spec_total: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let old_status = d.status.clone().unwrap_or_default();
    DeploymentStatus {
        available_replicas: Some(available),
        collision_count: old_status.collision_count,
        conditions: Some(conditions(
            d,
            new_rs,
            available,
            max_unavailable,
            complete,
            &now,
        )),
        observed_generation: d.metadata.generation,
        ready_replicas: Some(ready),
        replicas: Some(status_replicas),
        terminating_replicas: old_status.terminating_replicas,
        unavailable_replicas: Some((spec_total.max(replicas) - available).max(0)),
        updated_replicas: Some(new_rs.map_or(0, |rs| rs_status(rs).0)),
    }
}

/// Writes `status` unless `d` has it already (or is gone).
pub async fn update_status(
    api: &Api<Deployment>,
    d: &Deployment,
    status: &DeploymentStatus,
) -> Result<()> {
    if d.status.as_ref() == Some(status) {
        return Ok(());
    }
    let patch = Patch::Merge(json!({"status": status}));
    match api
        .patch_status(&d.name_any(), &PatchParams::default(), &patch)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, spec: i32, replicas: i32, ready: i32, available: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"replicas": spec, "selector": {}},
            "status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": available}
        }))
        .unwrap()
    }

    fn deployment(status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": 3},
            "spec": {"replicas": 4, "selector": {}, "template": {}},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn sums_replica_sets_and_sets_conditions() {
        let d = deployment(json!({"collisionCount": 1}));
        let new = rs("web-new", 2, 2, 2, 1);
        let old = [rs("web-old", 3, 3, 3, 2)];
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let st = calculate_status(&d, Some(&new), &old, 1, false, now);
        assert_eq!(
            (st.replicas, st.ready_replicas, st.available_replicas),
            (Some(5), Some(5), Some(3))
        );
        assert_eq!(
            (st.updated_replicas, st.unavailable_replicas),
            (Some(2), Some(2))
        );
        assert_eq!(
            (st.observed_generation, st.collision_count),
            (Some(3), Some(1))
        );
        let conds = st.conditions.unwrap();
        assert_eq!(
            (conds[0].type_.as_str(), conds[0].status.as_str()),
            ("Available", "True")
        );
        assert_eq!(conds[1].reason.as_deref(), Some("ReplicaSetUpdated"));
        let st = calculate_status(&d, Some(&new), &old, 0, true, now);
        let conds = st.conditions.unwrap();
        assert_eq!(
            conds[0].reason.as_deref(),
            Some("MinimumReplicasUnavailable")
        );
        assert_eq!(conds[1].reason.as_deref(), Some("NewReplicaSetAvailable"));
    }

    #[test]
    fn conditions_keep_their_times_while_unchanged() {
        let then = "2026-01-01T00:00:00Z";
        let d = deployment(
            json!({"conditions": [{"type": "Available", "status": "True",
            "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability.",
            "lastTransitionTime": then, "lastUpdateTime": then}]}),
        );
        let now: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let all = [rs("web-new", 4, 4, 4, 4)];
        let st = calculate_status(&d, None, &all, 0, false, now);
        let available = &st.conditions.unwrap()[0];
        let then: Timestamp = then.parse().unwrap();
        assert_eq!(available.last_transition_time, Some(Time(then)));
        assert_eq!(available.last_update_time, Some(Time(then)));
        let st = calculate_status(&d, None, &[rs("web-new", 4, 4, 4, 1)], 0, false, now);
        let unavailable = &st.conditions.unwrap()[0];
        assert_eq!(unavailable.last_transition_time, Some(Time(now)));
    }
}
