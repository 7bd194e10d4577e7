//! Taint-based eviction (Kubernetes' NoExecute taint manager): a pod bound to a node with
//! `NoExecute` taints is deleted at once when it does not tolerate one of them, after the
//! shortest `tolerationSeconds` of the tolerations it uses otherwise (counted from the
//! taints' `timeAdded`), and never when it tolerates them all without a limit.

use std::collections::HashMap;
use std::sync::Arc;

use bpfk_common::events::{self, EventType, Recorder};
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};

use crate::error::{is_not_found, Result};

/// Whether `toleration` tolerates `taint` (Kubernetes' `ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        "Equal" => {
            key == taint.key
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// When a pod with `tolerations` must leave a node tainted with `no_execute` (all NoExecute):
/// `None` = never; a time at or before the earliest `timeAdded` = at once.
pub fn eviction_time(
    tolerations: &[Toleration],
    no_execute: &[Taint],
    now: Timestamp,
) -> Option<Timestamp> {
    let since = no_execute
        .iter()
        .filter_map(|t| t.time_added.as_ref().map(|time| time.0))
        .min()
        .unwrap_or(now);
    let mut shortest: Option<i64> = None;
    for taint in no_execute {
        let used: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if used.is_empty() {
            return Some(since);
        }
        for seconds in used.iter().filter_map(|t| t.toleration_seconds) {
            shortest = Some(shortest.map_or(seconds, |s| s.min(seconds)));
        }
    }
    let seconds = shortest?.max(0);
    Some(
        since
            .saturating_add(SignedDuration::from_secs(seconds))
            .unwrap_or(since),
    )
}

/// The NoExecute taints of `node`.
fn no_execute_taints(node: &Node) -> Vec<Taint> {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref());
    taints
        .unwrap_or_default()
        .iter()
        .filter(|t| t.effect == "NoExecute")
        .cloned()
        .collect()
}

/// Deletes every pod whose eviction time on its NoExecute-tainted node has come.
pub async fn evict_due(
    client: &Client,
    recorder: &Recorder,
    nodes: &[Arc<Node>],
    pods: &Store<Pod>,
) -> Result<()> {
    let tainted: HashMap<String, Vec<Taint>> = nodes
        .iter()
        .map(|n| (n.name_any(), no_execute_taints(n)))
        .filter(|(_, taints)| !taints.is_empty())
        .collect();
    if tainted.is_empty() {
        return Ok(());
    }
    let now = Timestamp::now();
    for pod in pods.state() {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let Some(taints) = node.and_then(|n| tainted.get(n)) else {
            continue;
        };
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref());
        let due = eviction_time(tolerations.unwrap_or_default(), taints, now);
        if pod.metadata.deletion_timestamp.is_none() && due.is_some_and(|at| at <= now) {
            evict(client, recorder, &pod, node.unwrap_or_default()).await?;
        }
    }
    Ok(())
}

async fn evict(client: &Client, recorder: &Recorder, pod: &Pod, node: &str) -> Result<()> {
    let ns = pod.namespace().unwrap_or_else(|| "default".into());
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let name = pod.name_any();
    tracing::warn!(pod = %format!("{ns}/{name}"), %node, "evicting pod: its node's NoExecute taint is no longer tolerated");
    let note = format!("Marking for deletion Pod {ns}/{name}");
    let ev = events::event(EventType::Normal, "TaintManagerEviction", "Evict", note);
    events::record(recorder, &pod.object_ref(&()), ev).await;
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    fn taint(key: &str, added: Timestamp) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: Some(Time(added)),
        }
    }

    const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

    #[test]
    fn toleration_matching_follows_operator_key_value_and_effect() {
        let t = taint(UNREACHABLE, Timestamp::UNIX_EPOCH);
        assert!(tolerates(&toleration(json!({"operator": "Exists"})), &t));
        assert!(tolerates(
            &toleration(json!({"key": UNREACHABLE, "operator": "Exists"})),
            &t
        ));
        assert!(
            tolerates(&toleration(json!({"key": UNREACHABLE})), &t),
            "Equal, both values empty"
        );
        assert!(!tolerates(
            &toleration(json!({"key": UNREACHABLE, "value": "x"})),
            &t
        ));
        let no_schedule = json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"});
        assert!(!tolerates(&toleration(no_schedule), &t));
        assert!(!tolerates(
            &toleration(json!({"key": "other", "operator": "Exists"})),
            &t
        ));
    }

    #[test]
    fn eviction_waits_for_the_shortest_toleration_and_never_without_a_limit() {
        let added = Timestamp::from_second(1_000).unwrap();
        let now = Timestamp::from_second(1_002).unwrap();
        let taints = [taint(UNREACHABLE, added)];
        let secs =
            |s: i64| json!({"key": UNREACHABLE, "operator": "Exists", "tolerationSeconds": s});
        assert_eq!(
            eviction_time(&[], &taints, now),
            Some(added),
            "not tolerated: at once"
        );
        let five = [toleration(secs(5)), toleration(secs(300))];
        assert_eq!(
            eviction_time(&five, &taints, now),
            Timestamp::from_second(1_005).ok()
        );
        let forever = [toleration(json!({"operator": "Exists"}))];
        assert_eq!(eviction_time(&forever, &taints, now), None);
        assert_eq!(
            eviction_time(&[toleration(secs(-3))], &taints, now),
            Some(added)
        );
        let two_taints = [taint(UNREACHABLE, added), taint("custom", added)];
        assert_eq!(
            eviction_time(&five, &two_taints, now),
            Some(added),
            "one taint not tolerated"
        );
    }
}
