//! The rollout strategies: Recreate (old ReplicaSets to zero, wait for their pods, then the
//! new one to full size) and RollingUpdate (surge the new one, scale old ones down while
//! availability allows).

use k8s_openapi::api::apps::v1::ReplicaSet;

use super::rollout::{new_rs_replicas, scale_down_old, RsCounts};
use super::sync::Sync;
use super::{is_recreate, rs_replicas, rs_status, rs_synced};
use crate::error::Result;

/// What a strategy step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// A ReplicaSet was created or scaled.
    pub changed: bool,
    /// Waiting for old pods to go before going on.
    pub waiting: bool,
}

/// The ReplicaSets a strategy works on, and the new template's hash and revision.
pub(super) struct Rollout<'r> {
    pub new_rs: &'r mut Option<ReplicaSet>,
    pub old: &'r mut [ReplicaSet],
    pub hash: &'r str,
    pub next_revision: i64,
    /// Pods over `spec.replicas` a rolling update may run.
    pub max_surge: i32,
    /// Pods under `spec.replicas` a rolling update may leave unavailable.
    pub max_unavailable: i32,
}

/// Rolls out by the Deployment's strategy; nothing while it is paused.
pub(super) async fn roll_out(s: &Sync<'_>, r: Rollout<'_>) -> Result<Progress> {
    if s.spec.paused == Some(true) {
        Ok(Progress::default())
    } else if is_recreate(s.spec) {
        recreate(s, r).await
    } else {
        rolling(s, r).await
    }
}

/// Recreate: every old ReplicaSet to zero, then (once their pods are gone) the new one up.
pub(super) async fn recreate(s: &Sync<'_>, r: Rollout<'_>) -> Result<Progress> {
    let replicas = s.spec.replicas.unwrap_or(1);
    let mut changed = false;
    for rs in r.old.iter_mut() {
        if rs_replicas(rs) > 0 {
            s.scale(rs, 0, 0).await?;
            changed = true;
        }
    }
    if changed {
        return Ok(Progress {
            changed,
            waiting: false,
        });
    }
    // pods of old ReplicaSets (terminating ones too) must be gone first
    let old_running = r.old.iter().any(|rs| rs_status(rs).0 > 0) || s.old_pods_exist(r.old).await?;
    if old_running {
        return Ok(Progress {
            changed,
            waiting: true,
        });
    }
    match r.new_rs.as_mut() {
        Some(rs) if rs_replicas(rs) == replicas => {}
        Some(rs) => {
            s.scale(rs, replicas, 0).await?;
            changed = true;
        }
        None => {
            *r.new_rs = s.create_new(r.hash, replicas, r.next_revision, 0).await?;
            changed = true;
        }
    }
    Ok(Progress {
        changed,
        waiting: false,
    })
}

/// RollingUpdate: the new ReplicaSet up within `max_surge`, then (when nothing changed and
/// every ReplicaSet's status is current) old ones down within `max_unavailable`.
pub(super) async fn rolling(s: &Sync<'_>, r: Rollout<'_>) -> Result<Progress> {
    let (max_surge, max_unavailable) = (r.max_surge, r.max_unavailable);
    let replicas = s.spec.replicas.unwrap_or(1);
    let total: i32 =
        r.old.iter().map(rs_replicas).sum::<i32>() + r.new_rs.as_ref().map_or(0, rs_replicas);
    let mut changed = false;
    match r.new_rs.as_mut() {
        None => {
            let n = new_rs_replicas(replicas, max_surge, total, 0);
            *r.new_rs = s.create_new(r.hash, n, r.next_revision, max_surge).await?;
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
    let all_synced = r.old.iter().chain(r.new_rs.iter()).all(rs_synced);
    let Some(new) = r.new_rs.as_ref().filter(|_| !changed && all_synced) else {
        return Ok(Progress {
            changed,
            waiting: false,
        });
    };
    let plan = old_scale_down_plan(r.old, new, replicas, max_unavailable);
    for (rs, target) in r.old.iter_mut().zip(plan) {
        if target != rs_replicas(rs) {
            s.scale(rs, target, max_surge).await?;
            changed = true;
        }
    }
    Ok(Progress {
        changed,
        waiting: false,
    })
}

fn counts(rs: &ReplicaSet) -> RsCounts {
    RsCounts {
        replicas: rs_replicas(rs),
        available: rs_status(rs).2,
    }
}

/// The replicas each old ReplicaSet is scaled to (in `old`'s order).
pub fn old_scale_down_plan(
    old: &[ReplicaSet],
    new: &ReplicaSet,
    replicas: i32,
    max_unavailable: i32,
) -> Vec<i32> {
    let old_counts: Vec<RsCounts> = old.iter().map(counts).collect();
    scale_down_old(&old_counts, counts(new), replicas, max_unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rs(replicas: i32, available: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": "r"},
            "spec": {"replicas": replicas, "selector": {}},
            "status": {"replicas": replicas, "availableReplicas": available}
        }))
        .unwrap()
    }

    #[test]
    fn old_replica_sets_shrink_only_as_far_as_availability_allows() {
        // 4 wanted, 1 may be unavailable; the new RS has 2 available of 2, the old 3 of 3:
        // 5 available, at least 3 must stay
        let plan = old_scale_down_plan(&[rs(3, 3)], &rs(2, 2), 4, 1);
        assert_eq!(plan, [1]);
        // nothing of the new RS available yet: the old one may lose only the surplus
        let plan = old_scale_down_plan(&[rs(4, 4)], &rs(1, 0), 4, 1);
        assert_eq!(plan, [3]);
    }
}
