//! Rolling-update arithmetic (pure functions, as Kubernetes' deployment controller computes
//! them).

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Resolves an int-or-percent against `total`; percentages round up or down as asked.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct = s
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<i64>().ok())
                .ok_or_else(|| format!("{s:?} is neither an integer nor a percentage"))?;
            let num = pct * i64::from(total);
            let v = if round_up {
                (num + 99).div_euclid(100)
            } else {
                num.div_euclid(100)
            };
            i32::try_from(v).map_err(|_| format!("{s:?} is out of range"))
        }
    }
}

/// `(maxSurge, maxUnavailable)` for `replicas`, defaults 25%/25%: surge rounds up,
/// unavailable down; when both come out 0, one pod may be unavailable so progress is possible.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    replicas: i32,
) -> Result<(i32, i32), String> {
    let quarter = IntOrString::String("25%".into());
    let surge = scaled_value(max_surge.unwrap_or(&quarter), replicas, true)?.max(0);
    let mut unavailable =
        scaled_value(max_unavailable.unwrap_or(&quarter), replicas, false)?.max(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable.min(replicas.max(0))))
}

/// Replica count for the new ReplicaSet during a rolling update.
///
/// `total_replicas` is the sum of `spec.replicas` of all the Deployment's ReplicaSets.
pub fn new_rs_replicas(
    replicas: i32,
    max_surge: i32,
    total_replicas: i32,
    new_replicas: i32,
) -> i32 {
    if new_replicas >= replicas {
        return replicas;
    }
    let max_total = replicas + max_surge;
    if total_replicas >= max_total {
        return new_replicas;
    }
    let scale_up = (max_total - total_replicas).min(replicas - new_replicas);
    new_replicas + scale_up
}

/// Counts of one ReplicaSet used to decide scale-downs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RsCounts {
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.availableReplicas`.
    pub available: i32,
}

/// New `spec.replicas` for the old ReplicaSets (given oldest first) during a rolling update:
/// first unhealthy (unavailable) replicas are removed, then available ones as far as
/// `replicas - maxUnavailable` available pods remain.
pub fn scale_down_old(
    old: &[RsCounts],
    new_rs: RsCounts,
    replicas: i32,
    max_unavailable: i32,
) -> Vec<i32> {
    let mut result: Vec<i32> = old.iter().map(|r| r.replicas).collect();
    let old_total: i32 = result.iter().sum();
    if old_total == 0 {
        return result;
    }
    let all_pods = old_total + new_rs.replicas;
    let min_available = replicas - max_unavailable;
    let new_unavailable = (new_rs.replicas - new_rs.available).max(0);
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return result;
    }
    // clean up unhealthy replicas first
    let mut cleaned = 0;
    let mut available: Vec<i32> = old.iter().map(|r| r.available.min(r.replicas)).collect();
    for (r, a) in result.iter_mut().zip(available.iter_mut()) {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = *r - *a;
        if *r == 0 || unhealthy <= 0 {
            continue;
        }
        let n = unhealthy.min(max_scaled_down - cleaned);
        *r -= n;
        cleaned += n;
        *a = (*a).min(*r);
    }
    // then scale down available replicas while enough stay available
    let available_total: i32 = available.iter().sum::<i32>() + new_rs.available;
    if available_total <= min_available {
        return result;
    }
    let mut remaining = (available_total - min_available).min(max_scaled_down - cleaned);
    for r in result.iter_mut() {
        if remaining <= 0 {
            break;
        }
        if *r == 0 {
            continue;
        }
        let n = (*r).min(remaining);
        *r -= n;
        remaining -= n;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn fenceposts() {
        assert_eq!(resolve_fenceposts(None, None, 3), Ok((1, 0)));
        assert_eq!(resolve_fenceposts(None, None, 10), Ok((3, 2)));
        assert_eq!(
            resolve_fenceposts(Some(&IntOrString::Int(0)), Some(&IntOrString::Int(0)), 3),
            Ok((0, 1))
        );
        assert_eq!(
            resolve_fenceposts(Some(&pct("50%")), Some(&pct("50%")), 5),
            Ok((3, 2))
        );
        assert_eq!(
            resolve_fenceposts(Some(&IntOrString::Int(2)), Some(&IntOrString::Int(1)), 4),
            Ok((2, 1))
        );
        assert!(resolve_fenceposts(Some(&pct("abc")), None, 3).is_err());
    }

    #[test]
    fn scale_up_respects_surge() {
        // 3 replicas, surge 1: old RS at 3, new at 0 -> new may go to 1
        assert_eq!(new_rs_replicas(3, 1, 3, 0), 1);
        // already at max total
        assert_eq!(new_rs_replicas(3, 1, 4, 1), 1);
        // after old scaled down to 2: total 3 -> new to 2
        assert_eq!(new_rs_replicas(3, 1, 3, 1), 2);
        // plain scale up with no old RS
        assert_eq!(new_rs_replicas(5, 1, 3, 3), 5);
        // scale down of the new RS
        assert_eq!(new_rs_replicas(2, 1, 5, 5), 2);
    }

    #[test]
    fn scale_down_keeps_availability() {
        let new_rs = |replicas, available| RsCounts {
            replicas,
            available,
        };
        // 3 replicas, maxUnavailable 0: new pod not yet available -> nothing to scale down
        assert_eq!(scale_down_old(&[new_rs(3, 3)], new_rs(1, 0), 3, 0), vec![3]);
        // new pod available -> one old pod may go
        assert_eq!(scale_down_old(&[new_rs(3, 3)], new_rs(1, 1), 3, 0), vec![2]);
        // maxUnavailable 1 allows one down before any new pod is available
        assert_eq!(scale_down_old(&[new_rs(3, 3)], new_rs(1, 0), 3, 1), vec![2]);
        // unhealthy old replicas go first (within the budget: none while the new pod is unavailable)
        assert_eq!(scale_down_old(&[new_rs(3, 1)], new_rs(1, 0), 3, 0), vec![3]);
        assert_eq!(scale_down_old(&[new_rs(3, 1)], new_rs(1, 1), 3, 0), vec![2]);
        assert_eq!(scale_down_old(&[new_rs(3, 1)], new_rs(1, 0), 3, 2), vec![1]);
        // oldest first across several old RSs
        assert_eq!(
            scale_down_old(&[new_rs(1, 1), new_rs(2, 2)], new_rs(3, 3), 3, 0),
            vec![0, 0]
        );
        assert_eq!(
            scale_down_old(&[new_rs(1, 1), new_rs(2, 2)], new_rs(2, 2), 3, 0),
            vec![0, 1]
        );
        // nothing old
        assert_eq!(scale_down_old(&[new_rs(0, 0)], new_rs(3, 3), 3, 0), vec![0]);
    }

    #[test]
    fn full_rollout_simulation_never_drops_below_min_available() {
        // Simulate a rollout of 3 replicas with 25%/25% where every created pod becomes available
        // before the next step.
        let (surge, unavailable) = resolve_fenceposts(None, None, 3).unwrap();
        let mut old = RsCounts {
            replicas: 3,
            available: 3,
        };
        let mut new = RsCounts {
            replicas: 0,
            available: 0,
        };
        for _ in 0..20 {
            let total = old.replicas + new.replicas;
            let n = new_rs_replicas(3, surge, total, new.replicas);
            if n != new.replicas {
                new.replicas = n;
            } else {
                let o = scale_down_old(&[old], new, 3, unavailable)[0];
                old.replicas = o;
                old.available = old.available.min(o);
            }
            assert!(old.available + new.available >= 3 - unavailable);
            assert!(old.replicas + new.replicas <= 3 + surge);
            new.available = new.replicas; // pods become ready
        }
        assert_eq!((old.replicas, new.replicas), (0, 3));
    }
}
