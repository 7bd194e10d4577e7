//! Node filters and scores (the checks and rankings Kubernetes runs as scheduler plugins,
//! here plain functions), and the choice of a node for one pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};
use rand::Rng;

use crate::cache::{Cache, NodeInfo, PodFacts};
use crate::nodeaffinity::{pod_matches_node, preferred_affinity_weight};
use crate::taints::{first_untolerated, tolerated, untolerated_prefer_no_schedule};

/// Reason texts, as Kubernetes prints them in `FailedScheduling`.
pub const REASON_NOT_READY: &str = "node(s) were not ready";
/// A node with `spec.unschedulable`.
pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// nodeSelector / required affinity mismatch.
pub const REASON_SELECTOR: &str = "node(s) didn't match node selector";
/// Host port conflict.
pub const REASON_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";

/// Weights of the scores.
#[derive(Debug, Clone, Copy)]
pub struct Weights {
    /// Least allocated (most free CPU and memory, as fractions of allocatable).
    pub least_allocated: i64,
    /// Balanced CPU/memory use.
    pub balanced: i64,
    /// Spreading the pods of one owner across nodes.
    pub spread: i64,
    /// Fewer untolerated PreferNoSchedule taints.
    pub taints: i64,
    /// Preferred node affinity.
    pub node_affinity: i64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            least_allocated: 1,
            balanced: 1,
            spread: 2,
            taints: 1,
            node_affinity: 1,
        }
    }
}

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

fn node_taints(info: &NodeInfo) -> &[Taint] {
    info.node
        .as_ref()
        .and_then(|n| n.spec.as_ref())
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

/// Runs the filters in order and returns the reasons of the first one that fails.
pub fn filter(pod: &Pod, facts: &PodFacts, info: &NodeInfo) -> Result<(), Vec<String>> {
    let Some(node) = info.node.as_ref() else {
        return Err(vec![REASON_NOT_READY.into()]);
    };
    let tols = tolerations(pod);
    // NodeUnschedulable
    if info.unschedulable {
        let unsched = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        };
        if !tolerated(tols, &unsched) {
            return Err(vec![REASON_UNSCHEDULABLE.into()]);
        }
    }
    // NodeReady
    if !info.is_ready() {
        return Err(vec![REASON_NOT_READY.into()]);
    }
    // TaintToleration (node facts kept in NodeInfo spare reading the Node for each pod)
    if let Some(t) = info
        .hard_taints
        .then(|| first_untolerated(node_taints(info), tols))
        .flatten()
    {
        return Err(vec![format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key,
            t.value.as_deref().unwrap_or("")
        )]);
    }
    // NodeAffinity
    if !pod_matches_node(pod, node) {
        return Err(vec![REASON_SELECTOR.into()]);
    }
    // NodePorts
    if facts
        .host_ports
        .iter()
        .any(|hp| info.used_ports.iter().any(|u| u.conflicts(hp)))
    {
        return Err(vec![REASON_PORTS.into()]);
    }
    // NodeResourcesFit
    let mut reasons = Vec::new();
    if info.requested.pods + 1 > info.allocatable.pods {
        reasons.push("Too many pods".to_string());
    }
    let r = &facts.requests;
    if r.milli_cpu > 0 && info.requested.milli_cpu + r.milli_cpu > info.allocatable.milli_cpu {
        reasons.push("Insufficient cpu".to_string());
    }
    if r.memory > 0 && info.requested.memory + r.memory > info.allocatable.memory {
        reasons.push("Insufficient memory".to_string());
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

fn fraction(requested: i64, allocatable: i64) -> f64 {
    if allocatable <= 0 {
        1.0
    } else {
        (requested as f64 / allocatable as f64).clamp(0.0, 1.0)
    }
}

/// Least allocated: mean over CPU and memory of the free fraction after placing the pod, 0–100.
pub fn least_allocated_score(facts: &PodFacts, info: &NodeInfo) -> f64 {
    let cpu = fraction(
        info.non_zero_requested.milli_cpu + facts.non_zero.milli_cpu,
        info.allocatable.milli_cpu,
    );
    let mem = fraction(
        info.non_zero_requested.memory + facts.non_zero.memory,
        info.allocatable.memory,
    );
    ((1.0 - cpu) + (1.0 - mem)) * 50.0
}

/// Balanced allocation: 100 when CPU and memory are used in the same proportion, 0–100.
pub fn balanced_score(facts: &PodFacts, info: &NodeInfo) -> f64 {
    let cpu = fraction(
        info.requested.milli_cpu + facts.requests.milli_cpu,
        info.allocatable.milli_cpu,
    );
    let mem = fraction(
        info.requested.memory + facts.requests.memory,
        info.allocatable.memory,
    );
    // standard deviation of two values is half their distance
    (1.0 - (cpu - mem).abs() / 2.0) * 100.0
}

/// A raw "lower is better" count as a 0–100 score, given the highest count among the
/// nodes (100 for the lowest).
fn normalize_reverse(v: i64, max: i64) -> f64 {
    if max == 0 {
        100.0
    } else {
        (max - v) as f64 * 100.0 / max as f64
    }
}

/// A raw "higher is better" value as a 0–100 score, given the highest (100 for the highest).
fn normalize(v: i64, max: i64) -> f64 {
    if max <= 0 {
        0.0
    } else {
        v as f64 * 100.0 / max as f64
    }
}

/// Weighted sum of the scores for each feasible node (same order as `feasible`).
/// Plugins scored relative to the other nodes (spreading, taints, affinity) are normalized
/// over `feasible`.
pub fn score(pod: &Pod, facts: &PodFacts, feasible: &[&NodeInfo], w: &Weights) -> Vec<f64> {
    let tols = tolerations(pod);
    // raw per-node counts: (pods of the same owner, untolerated soft taints, affinity weight)
    let raw: Vec<(i64, i64, i64)> = feasible
        .iter()
        .map(|info| {
            let spread = facts
                .owner
                .as_ref()
                .and_then(|o| info.owner_counts.get(o))
                .map_or(0, |c| i64::from(*c));
            let taints = if info.soft_taints {
                untolerated_prefer_no_schedule(node_taints(info), tols)
            } else {
                0
            };
            let affinity = info
                .node
                .as_ref()
                .map_or(0, |n| preferred_affinity_weight(pod, n));
            (spread, taints, affinity)
        })
        .collect();
    let (max_spread, max_taints, max_affinity) = raw
        .iter()
        .fold((0, 0, 0), |m, r| (m.0.max(r.0), m.1.max(r.1), m.2.max(r.2)));
    feasible
        .iter()
        .zip(&raw)
        .map(|(info, &(spread, taints, affinity))| {
            w.least_allocated as f64 * least_allocated_score(facts, info)
                + w.balanced as f64 * balanced_score(facts, info)
                + w.spread as f64 * normalize_reverse(spread, max_spread)
                + w.taints as f64 * normalize_reverse(taints, max_taints)
                + w.node_affinity as f64 * normalize(affinity, max_affinity)
        })
        .collect()
}

/// Why a pod fits on no node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    /// Number of nodes considered.
    pub nodes: usize,
    /// How many nodes failed for each reason.
    pub reasons: BTreeMap<String, usize>,
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.nodes == 0 {
            return write!(
                f,
                "0/0 nodes are available: no nodes available to schedule pods."
            );
        }
        let mut reasons: Vec<(&String, &usize)> = self.reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        write!(
            f,
            "0/{} nodes are available: {}.",
            self.nodes,
            parts.join(", ")
        )
    }
}

/// How many feasible nodes to find before scoring, as Kubernetes' adaptive
/// `percentageOfNodesToScore` (all nodes below 100; at least 100 otherwise). `percentage` 0
/// means adaptive.
pub fn nodes_to_find(total: usize, percentage: u32) -> usize {
    const MIN: usize = 100;
    if total < MIN || percentage >= 100 {
        return total;
    }
    let pct = if percentage == 0 {
        (50i64 - total as i64 / 125).max(5) as usize
    } else {
        percentage as usize
    };
    (total * pct / 100).max(MIN)
}

/// Picks a node for the pod: filters nodes (starting at `*start`, rotating so successive pods
/// look at different nodes first), scores the feasible ones and returns the best, ties broken
/// at random.
pub fn select_node(
    cache: &Cache,
    pod: &Pod,
    facts: &PodFacts,
    start: &mut usize,
    percentage: u32,
    weights: &Weights,
    rng: &mut impl Rng,
) -> Result<String, FitError> {
    let total = cache.len();
    let slots = cache.slots();
    let want = nodes_to_find(total, percentage);
    let mut feasible: Vec<(&String, &NodeInfo)> = Vec::with_capacity(want);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut visited = 0;
    for i in 0..slots {
        visited = i + 1;
        let Some((name, info)) = cache.at((*start + i) % slots) else {
            continue;
        };
        match filter(pod, facts, info) {
            Ok(()) => {
                feasible.push((name, info));
                if feasible.len() >= want {
                    break;
                }
            }
            Err(rs) => {
                for r in rs {
                    *reasons.entry(r).or_default() += 1;
                }
            }
        }
    }
    if slots > 0 {
        *start = (*start + visited) % slots;
    }
    if feasible.is_empty() {
        return Err(FitError {
            nodes: total,
            reasons,
        });
    }
    let infos: Vec<&NodeInfo> = feasible.iter().map(|(_, i)| *i).collect();
    let scores = score(pod, facts, &infos, weights);
    let best = scores.iter().copied().fold(f64::MIN, f64::max);
    let winners: Vec<usize> = scores
        .iter()
        .enumerate()
        .filter(|(_, s)| (best - **s).abs() < 1e-9)
        .map(|(i, _)| i)
        .collect();
    let pick = winners[rng.gen_range(0..winners.len())];
    Ok(feasible[pick].0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn node(
        name: &str,
        labels: Value,
        cpu: &str,
        mem: &str,
        extra_spec: Value,
        ready: bool,
    ) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": labels},
                "spec": extra_spec,
                "status": {
                    "allocatable": {"cpu": cpu, "memory": mem, "pods": "110"},
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
                }
            }))
            .unwrap(),
        )
    }

    fn pod(name: &str, spec_extra: Value, cpu: &str, mem: &str) -> Pod {
        let mut spec = json!({"containers": [{"name": "c", "image": "nginx",
            "resources": {"requests": {"cpu": cpu, "memory": mem}}}]});
        if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
            for (k, v) in extra {
                s.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(json!({"metadata": {"name": name, "uid": name}, "spec": spec}))
            .unwrap()
    }

    fn pick(cache: &Cache, p: &Pod) -> Result<String, FitError> {
        let mut start = 0;
        let mut rng = rand::thread_rng();
        select_node(
            cache,
            p,
            &PodFacts::of(p),
            &mut start,
            0,
            &Weights::default(),
            &mut rng,
        )
    }

    #[test]
    fn ssd_pod_lands_on_ssd_node_only() {
        let mut cache = Cache::default();
        cache.upsert_node(node(
            "hdd-1",
            json!({"disk": "hdd"}),
            "4",
            "8Gi",
            json!({}),
            true,
        ));
        cache.upsert_node(node(
            "ssd-1",
            json!({"disk": "ssd"}),
            "4",
            "8Gi",
            json!({}),
            true,
        ));
        cache.upsert_node(node("plain", json!({}), "4", "8Gi", json!({}), true));
        let p = pod(
            "p",
            json!({"nodeSelector": {"disk": "ssd"}}),
            "100m",
            "64Mi",
        );
        for _ in 0..20 {
            assert_eq!(pick(&cache, &p).unwrap(), "ssd-1");
        }
    }

    #[test]
    fn only_existing_nodes_are_picked_or_counted() {
        let mut cache = Cache::default();
        for n in ["a", "b", "c"] {
            cache.upsert_node(node(n, json!({}), "4", "8Gi", json!({}), true));
        }
        // a pod bound to a node the cache has no Node for, and a node that went away while
        // a pod still counts on it: neither may be chosen or counted
        cache.add_bound_pod("x", "ghost", &pod("x", json!({}), "100m", "64Mi"));
        cache.add_bound_pod("y", "b", &pod("y", json!({}), "100m", "64Mi"));
        cache.remove_node("b");
        assert_eq!(cache.len(), 2);
        let mut names: Vec<&String> = cache.node_names().collect();
        names.sort();
        assert_eq!(names, ["a", "c"]);
        let p = pod("p", json!({}), "100m", "64Mi");
        let mut start = 0;
        let mut rng = rand::thread_rng();
        let mut picked = std::collections::BTreeSet::new();
        for _ in 0..30 {
            let facts = PodFacts::of(&p);
            let w = Weights::default();
            picked.insert(select_node(&cache, &p, &facts, &mut start, 0, &w, &mut rng).unwrap());
            assert!(start < cache.slots());
        }
        assert_eq!(picked.into_iter().collect::<Vec<_>>(), ["a", "c"]);
        let huge = pod("h", json!({}), "100m", "100Gi");
        let err = pick(&cache, &huge).unwrap_err();
        assert_eq!(err.nodes, 2, "{err}");
    }

    #[test]
    fn most_free_memory_wins() {
        let mut cache = Cache::default();
        for n in ["a", "b", "c"] {
            cache.upsert_node(node(n, json!({}), "4", "8Gi", json!({}), true));
        }
        cache.add_bound_pod("x", "a", &pod("x", json!({}), "100m", "6Gi"));
        cache.add_bound_pod("y", "c", &pod("y", json!({}), "100m", "2Gi"));
        let p = pod("p", json!({}), "100m", "256Mi");
        for _ in 0..20 {
            assert_eq!(pick(&cache, &p).unwrap(), "b");
        }
    }

    #[test]
    fn fit_error_message_counts_reasons() {
        let mut cache = Cache::default();
        cache.upsert_node(node(
            "hdd-1",
            json!({"disk": "hdd"}),
            "4",
            "8Gi",
            json!({}),
            true,
        ));
        cache.upsert_node(node(
            "hdd-2",
            json!({"disk": "hdd"}),
            "4",
            "8Gi",
            json!({}),
            true,
        ));
        cache.upsert_node(node(
            "ssd",
            json!({"disk": "ssd"}),
            "4",
            "1Gi",
            json!({}),
            true,
        ));
        let p = pod("p", json!({"nodeSelector": {"disk": "ssd"}}), "100m", "2Gi");
        let err = pick(&cache, &p).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 2 node(s) didn't match node selector, 1 Insufficient memory."
        );
    }

    #[test]
    fn unready_unschedulable_and_tainted_nodes_are_filtered() {
        let mut cache = Cache::default();
        cache.upsert_node(node("down", json!({}), "4", "8Gi", json!({}), false));
        cache.upsert_node(node(
            "cordoned",
            json!({}),
            "4",
            "8Gi",
            json!({"unschedulable": true}),
            true,
        ));
        cache.upsert_node(node(
            "tainted",
            json!({}),
            "4",
            "8Gi",
            json!({"taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]}),
            true,
        ));
        let p = pod("p", json!({}), "100m", "64Mi");
        let err = pick(&cache, &p).unwrap_err();
        assert_eq!(err.reasons.get(REASON_NOT_READY), Some(&1));
        assert_eq!(err.reasons.get(REASON_UNSCHEDULABLE), Some(&1));
        assert_eq!(
            err.reasons
                .get("node(s) had untolerated taint {node.kubernetes.io/unreachable: }"),
            Some(&1)
        );
        let tolerant = pod(
            "t",
            json!({"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}]}),
            "100m",
            "64Mi",
        );
        assert_eq!(pick(&cache, &tolerant).unwrap(), "tainted");
    }

    #[test]
    fn prefer_no_schedule_only_scores() {
        let mut cache = Cache::default();
        cache.upsert_node(node(
            "soft",
            json!({}),
            "4",
            "8Gi",
            json!({"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}),
            true,
        ));
        let p = pod("p", json!({}), "100m", "64Mi");
        assert_eq!(pick(&cache, &p).unwrap(), "soft");
        cache.upsert_node(node("clean", json!({}), "4", "8Gi", json!({}), true));
        for _ in 0..10 {
            assert_eq!(pick(&cache, &p).unwrap(), "clean");
        }
    }

    #[test]
    fn cpu_pods_and_ports_fit() {
        let mut cache = Cache::default();
        cache.upsert_node(node("n", json!({}), "1", "8Gi", json!({}), true));
        cache.add_bound_pod("x", "n", &pod("x", json!({}), "800m", "1Gi"));
        let err = pick(&cache, &pod("p", json!({}), "300m", "1Gi")).unwrap_err();
        assert_eq!(err.reasons.get("Insufficient cpu"), Some(&1));
        assert!(pick(&cache, &pod("p", json!({}), "200m", "1Gi")).is_ok());

        let hp = |n: &str| {
            pod(
                n,
                json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
                "0",
                "0",
            )
        };
        cache.add_bound_pod("h1", "n", &hp("h1"));
        let err = pick(&cache, &hp("h2")).unwrap_err();
        assert_eq!(err.reasons.get(REASON_PORTS), Some(&1));

        let mut small = Cache::default();
        let n: Node = serde_json::from_value(json!({"metadata": {"name": "s"}, "status": {
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "1"},
            "conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap();
        small.upsert_node(Arc::new(n));
        small.add_bound_pod("x", "s", &pod("x", json!({}), "1m", "1Mi"));
        let err = pick(&small, &pod("p", json!({}), "1m", "1Mi")).unwrap_err();
        assert_eq!(err.reasons.get("Too many pods"), Some(&1));
    }

    #[test]
    fn replicas_of_one_owner_spread() {
        let mut cache = Cache::default();
        for n in ["a", "b", "c"] {
            cache.upsert_node(node(n, json!({}), "4", "8Gi", json!({}), true));
        }
        let owned = |n: &str| -> Pod {
            let mut p = pod(n, json!({}), "100m", "128Mi");
            p.metadata.owner_references = Some(vec![serde_json::from_value(json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-uid", "controller": true
            })).unwrap()]);
            p
        };
        let mut counts = BTreeMap::new();
        for i in 0..6 {
            let p = owned(&format!("p{i}"));
            let n = pick(&cache, &p).unwrap();
            cache.assume(&format!("p{i}"), &n, PodFacts::of(&p));
            *counts.entry(n).or_insert(0) += 1;
        }
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    }

    #[test]
    fn balanced_prefers_even_use() {
        let info_even = NodeInfo {
            allocatable: crate::resources::Resources {
                milli_cpu: 1000,
                memory: 1000,
                pods: 10,
            },
            ..Default::default()
        };
        let facts_even = PodFacts {
            requests: crate::resources::Resources {
                milli_cpu: 500,
                memory: 500,
                pods: 1,
            },
            ..Default::default()
        };
        let facts_skew = PodFacts {
            requests: crate::resources::Resources {
                milli_cpu: 900,
                memory: 100,
                pods: 1,
            },
            ..Default::default()
        };
        assert!(balanced_score(&facts_even, &info_even) > balanced_score(&facts_skew, &info_even));
        assert!((balanced_score(&facts_even, &info_even) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn adaptive_node_count() {
        assert_eq!(nodes_to_find(50, 0), 50);
        assert_eq!(nodes_to_find(1000, 0), 420);
        assert_eq!(nodes_to_find(10000, 0), 500);
        assert_eq!(nodes_to_find(150, 0), 100);
        assert_eq!(nodes_to_find(1000, 100), 1000);
    }
}
