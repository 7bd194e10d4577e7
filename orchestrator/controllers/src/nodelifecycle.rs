//! Node lifecycle: a node whose Lease (namespace `kube-node-lease`) was not renewed for the
//! grace period gets Ready=Unknown and the `node.kubernetes.io/unreachable:NoExecute` taint,
//! and its pods' Ready condition turns False at once (so endpoints drop them); pods leave
//! tainted nodes as their tolerations say ([`crate::taint_eviction`]: the
//! DefaultTolerationSeconds admission gives pods 300 s). When the lease is renewed again the
//! taint is removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bpfk_common::events::{self, EventType, Recorder};
use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, ObjectReference, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::error::{is_conflict, is_not_found, Error, Result};

/// Namespace of node leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Taint of an unreachable node.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// Reason we put on the Ready condition when a node goes silent.
pub const REASON_UNKNOWN: &str = "NodeStatusUnknown";

/// Settings of the controller.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Silence after which a node is unreachable.
    pub grace_period: Duration,
    /// How often nodes are checked.
    pub monitor_period: Duration,
}

/// What the controller remembers of one node between checks.
#[derive(Debug, Clone)]
pub struct Health {
    /// The last lease renew time seen (as text, compared for change).
    pub renew: Option<String>,
    /// When a change of the lease (or the node's first sighting) was observed locally.
    pub observed: Instant,
}

/// What to do with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Healthy: nothing (or remove the taint).
    Healthy,
    /// Silent beyond the grace period: mark it and its pods not ready, and taint it.
    Unreachable,
}

/// Decides a node's state from when its lease last changed.
pub fn verdict(h: &Health, now: Instant, s: &Settings) -> Verdict {
    if now.saturating_duration_since(h.observed) <= s.grace_period {
        Verdict::Healthy
    } else {
        Verdict::Unreachable
    }
}

fn drive<K, S>(stream: S, name: &'static str) -> tokio::task::JoinHandle<()>
where
    K: Send + 'static,
    S: Stream<Item = std::result::Result<K, watcher::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut s = std::pin::pin!(stream);
        while let Some(r) = s.next().await {
            if let Err(e) = r {
                tracing::warn!(error = %e, watch = name, "watch error");
            }
        }
    })
}

/// Runs the controller until its watches end. Pods are read from the process's shared pod
/// informer's store.
pub async fn run(client: Client, settings: Settings, pods: Store<Pod>) -> Result<()> {
    let wc = watcher::Config::default();
    let (nodes, w) = reflector::store::<Node>();
    let node_task = drive(
        watcher(Api::<Node>::all(client.clone()), wc.clone())
            .default_backoff()
            .reflect(w)
            .applied_objects(),
        "nodes",
    );
    let (leases, w) = reflector::store::<Lease>();
    let lease_task = drive(
        watcher(
            Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE),
            wc,
        )
        .default_backoff()
        .reflect(w)
        .applied_objects(),
        "leases",
    );
    for (store_ready, name) in [
        (nodes.wait_until_ready().await.is_ok(), "nodes"),
        (leases.wait_until_ready().await.is_ok(), "leases"),
        (pods.wait_until_ready().await.is_ok(), "pods"),
    ] {
        if !store_ready {
            return Err(Error::CacheNotReady(name));
        }
    }
    let mut health: HashMap<String, Health> = HashMap::new();
    let recorders = Recorders {
        nodes: events::recorder(client.clone(), "node-controller"),
        eviction: events::recorder(client.clone(), "taint-eviction-controller"),
    };
    let mut tick = tokio::time::interval(settings.monitor_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if node_task.is_finished() || lease_task.is_finished() {
            return Err(Error::Stopped("nodelifecycle", "watch ended".into()));
        }
        let stores = Stores {
            nodes: &nodes,
            leases: &leases,
            pods: &pods,
        };
        if let Err(e) = monitor(&client, &recorders, stores, &mut health, &settings).await {
            tracing::warn!(error = %e, "node health check failed");
        }
    }
}

fn lease_renew(lease: &Lease) -> Option<String> {
    let spec = lease.spec.as_ref()?;
    spec.renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0.to_string())
        .or_else(|| lease.metadata.resource_version.clone())
}

fn has_unreachable_taint(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| {
            t.iter()
                .any(|t| t.key == UNREACHABLE_TAINT && t.effect == "NoExecute")
        })
}

/// The event recorders of the node lifecycle (`node-controller`) and of taint eviction.
struct Recorders {
    nodes: Recorder,
    eviction: Recorder,
}

/// The caches the health check reads.
#[derive(Clone, Copy)]
struct Stores<'a> {
    nodes: &'a Store<Node>,
    leases: &'a Store<Lease>,
    pods: &'a Store<Pod>,
}

/// Records `reason` about the node `regarding` as the node lifecycle controller does.
async fn node_event(recorder: &Recorder, regarding: &ObjectReference, reason: &str, note: String) {
    let ev = events::event(EventType::Normal, reason, reason, note);
    events::record(recorder, regarding, ev).await;
}

/// Forgets the nodes that are gone, recording `RemovingNode` about each.
async fn forget_removed(
    recorder: &Recorder,
    all: &[Arc<Node>],
    health: &mut HashMap<String, Health>,
) {
    let gone: Vec<String> = health
        .keys()
        .filter(|name| !all.iter().any(|n| n.name_any() == **name))
        .cloned()
        .collect();
    for name in gone {
        health.remove(&name);
        let regarding = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(name.clone()),
            ..Default::default()
        };
        let note = format!("Node {name} event: Removing Node {name} from Controller");
        node_event(recorder, &regarding, "RemovingNode", note).await;
    }
}

async fn monitor(
    client: &Client,
    recorders: &Recorders,
    stores: Stores<'_>,
    health: &mut HashMap<String, Health>,
    s: &Settings,
) -> Result<()> {
    let now = Instant::now();
    let all = stores.nodes.state();
    forget_removed(&recorders.nodes, &all, health).await;
    for node in all {
        let name = node.name_any();
        let renew = stores
            .leases
            .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE))
            .and_then(|l| lease_renew(&l));
        if !health.contains_key(&name) {
            let note = format!("Node {name} event: Registered Node {name} in Controller");
            node_event(
                &recorders.nodes,
                &node.object_ref(&()),
                "RegisteredNode",
                note,
            )
            .await;
        }
        let h = health.entry(name.clone()).or_insert_with(|| Health {
            renew: renew.clone(),
            observed: now,
        });
        if renew.is_some() && renew != h.renew {
            h.renew = renew;
            h.observed = now;
        }
        match verdict(h, now, s) {
            Verdict::Healthy if has_unreachable_taint(&node) => {
                mark_reachable(client, &recorders.nodes, &node).await?
            }
            Verdict::Healthy => {}
            Verdict::Unreachable => {
                mark_unreachable(client, &recorders.nodes, &node).await?;
                mark_pods_not_ready(client, &recorders.nodes, stores.pods, &name).await?;
            }
        }
    }
    let nodes = stores.nodes.state();
    crate::taint_eviction::evict_due(client, &recorders.eviction, &nodes, stores.pods).await
}

async fn mark_unreachable(client: &Client, recorder: &Recorder, node: &Node) -> Result<()> {
    let name = node.name_any();
    let now = Time(Timestamp::now());
    let conditions = node_conditions(node);
    let ready_unknown = conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "Unknown");
    if !ready_unknown {
        tracing::warn!(node = %name, "node stopped renewing its lease: marking Ready=Unknown");
        if !patch_conditions(client, &name, unknown_conditions(conditions, &now)).await? {
            return Ok(());
        }
        let note = format!("Node {name} status is now: NodeNotReady");
        node_event(recorder, &node.object_ref(&()), "NodeNotReady", note).await;
    }
    if !has_unreachable_taint(node) {
        let mut taints = node_taints(node);
        taints.push(Taint {
            key: UNREACHABLE_TAINT.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: Some(now),
        });
        tracing::warn!(node = %name, "tainting unreachable node");
        set_taints(client, node, taints).await?;
    }
    Ok(())
}

/// Every condition of a node that went silent turned Unknown (the Ready one added if the
/// kubelet never posted it), as Kubernetes' node lifecycle controller writes them.
fn unknown_conditions(conditions: Vec<NodeCondition>, now: &Time) -> Vec<NodeCondition> {
    let mut new: Vec<NodeCondition> = conditions
        .into_iter()
        .map(|mut c| {
            if c.status != "Unknown" {
                c.status = "Unknown".into();
                c.reason = Some(REASON_UNKNOWN.into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(now.clone());
            }
            c
        })
        .collect();
    if !new.iter().any(|c| c.type_ == "Ready") {
        new.push(NodeCondition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: Some(REASON_UNKNOWN.into()),
            message: Some("Kubelet never posted node status.".into()),
            last_transition_time: Some(now.clone()),
            last_heartbeat_time: None,
        });
    }
    new
}

fn node_conditions(node: &Node) -> Vec<NodeCondition> {
    let status = node.status.as_ref();
    status
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
}

fn node_taints(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
}

/// Writes a node's conditions; false when the node is gone.
async fn patch_conditions(
    client: &Client,
    name: &str,
    conditions: Vec<NodeCondition>,
) -> Result<bool> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = Patch::Merge(json!({"status": {"conditions": conditions}}));
    match api
        .patch_status(name, &PatchParams::default(), &patch)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Replaces a node's taints, if the node is still the version seen; false when it is gone
/// or changed since (the next check sees the new one).
async fn set_taints(client: &Client, node: &Node, taints: Vec<Taint>) -> Result<bool> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version},
        "spec": {"taints": taints}});
    match api
        .patch(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn mark_reachable(client: &Client, recorder: &Recorder, node: &Node) -> Result<()> {
    let name = node.name_any();
    let taints: Vec<Taint> = node_taints(node)
        .into_iter()
        .filter(|t| t.key != UNREACHABLE_TAINT)
        .collect();
    tracing::info!(node = %name, "node renews its lease again: removing unreachable taint");
    if !set_taints(client, node, taints).await? {
        return Ok(());
    }
    // The agent owns the Ready condition; if it only renews its lease and the condition is
    // still the one we set, give it back.
    let conditions = node_conditions(node);
    let ours = conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .is_some_and(|c| c.status == "Unknown" && c.reason.as_deref() == Some(REASON_UNKNOWN));
    if ours {
        let renewed = conditions
            .into_iter()
            .map(|mut c| {
                if c.type_ == "Ready" {
                    c.status = "True".into();
                    c.reason = Some("NodeLeaseRenewed".into());
                    c.message = Some("Node renews its lease again.".into());
                    c.last_transition_time = Some(Time(Timestamp::now()));
                }
                c
            })
            .collect();
        if patch_conditions(client, &name, renewed).await? {
            let note = format!("Node {name} status is now: NodeReady");
            node_event(recorder, &node.object_ref(&()), "NodeReady", note).await;
        }
    }
    Ok(())
}

/// Whether `pod`'s Ready condition is True (or missing, so it has yet to be set False).
fn ready_not_false(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_deref());
    conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status != "False")
}

/// Kubernetes' `MarkPodsNotReady`: the Ready condition of every pod bound to `node` turns
/// False, so endpoints (and every node's service maps) stop sending it traffic; the node's
/// kubelet sets it again when it is back.
async fn mark_pods_not_ready(
    client: &Client,
    recorder: &Recorder,
    pods: &Store<Pod>,
    node: &str,
) -> Result<()> {
    let on_node = pods
        .state()
        .into_iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .filter(|p| ready_not_false(p));
    for pod in on_node {
        let ns = pod.namespace().unwrap_or_else(|| "default".into());
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let condition = json!({"type": "Ready", "status": "False",
            "lastTransitionTime": Time(Timestamp::now())});
        let patch = json!({"metadata": {"uid": pod.metadata.uid},
            "status": {"conditions": [condition]}});
        tracing::info!(pod = %format!("{ns}/{}", pod.name_any()), %node, "node not ready: marking its pod not ready");
        match api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .await
        {
            Ok(_) => {
                let ev = events::event(
                    EventType::Warning,
                    "NodeNotReady",
                    "MarkNotReady",
                    "Node is not ready".into(),
                );
                events::record(recorder, &pod.object_ref(&()), ev).await;
            }
            Err(e) if is_not_found(&e) || is_conflict(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_grace_period() {
        let s = Settings {
            grace_period: Duration::from_secs(40),
            monitor_period: Duration::from_secs(5),
        };
        let t0 = Instant::now();
        let h = Health {
            renew: None,
            observed: t0,
        };
        assert_eq!(
            verdict(&h, t0 + Duration::from_secs(40), &s),
            Verdict::Healthy
        );
        assert_eq!(
            verdict(&h, t0 + Duration::from_secs(41), &s),
            Verdict::Unreachable
        );
    }

    #[test]
    fn only_pods_whose_ready_condition_is_not_false_are_marked() {
        let pod = |status: &str| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"},
                "status": {"conditions": [{"type": "Ready", "status": status}]}}))
            .unwrap()
        };
        assert!(ready_not_false(&pod("True")));
        assert!(ready_not_false(&pod("Unknown")));
        assert!(!ready_not_false(&pod("False")));
    }
}
