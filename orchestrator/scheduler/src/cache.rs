//! The scheduler's view of the cluster: nodes and the resources their bound (or assumed)
//! pods use. Updated from watch events and by assuming a binding as soon as it is decided.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use k8s_openapi::api::core::v1::{Node, Pod};

use crate::resources::{node_allocatable, pod_requests, Resources};

/// A host port a container asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// The host IP, `0.0.0.0` meaning every address.
    pub ip: String,
    /// The port number.
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports cannot be used together on one node.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// What the scheduler needs to know of a pod, computed once per pod.
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    /// Requests (for fitting).
    pub requests: Resources,
    /// Requests with defaults for unset values (for scoring).
    pub non_zero: Resources,
    /// Host ports asked for.
    pub host_ports: Vec<HostPort>,
    /// uid of the controlling owner.
    pub owner: Option<String>,
}

impl PodFacts {
    /// Computes the facts of a pod.
    pub fn of(pod: &Pod) -> Self {
        let (requests, non_zero) = pod_requests(pod);
        let mut host_ports = Vec::new();
        if let Some(spec) = pod.spec.as_ref() {
            for c in &spec.containers {
                for p in c.ports.iter().flatten() {
                    let Some(port) = p.host_port.filter(|p| *p > 0) else {
                        continue;
                    };
                    host_ports.push(HostPort {
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        ip: p
                            .host_ip
                            .clone()
                            .filter(|ip| !ip.is_empty())
                            .unwrap_or_else(|| "0.0.0.0".into()),
                        port,
                    });
                }
            }
        }
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone());
        PodFacts {
            requests,
            non_zero,
            host_ports,
            owner,
        }
    }
}

/// One node and what is placed on it.
#[derive(Debug, Default)]
pub struct NodeInfo {
    /// The Node object; `None` while only pods bound to an unknown node are known.
    pub node: Option<Arc<Node>>,
    /// Allocatable resources of the node.
    pub allocatable: Resources,
    /// Sum of the requests of the pods on the node.
    pub requested: Resources,
    /// Sum of the scoring requests of the pods on the node.
    pub non_zero_requested: Resources,
    /// Host ports in use.
    pub used_ports: Vec<HostPort>,
    /// Pods on this node per controlling owner uid.
    pub owner_counts: HashMap<String, u32>,
    /// The node's Ready condition is True (kept here: filters read it for every pod).
    pub ready: bool,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// The node has NoSchedule or NoExecute taints (filters look at them only then).
    pub hard_taints: bool,
    /// The node has PreferNoSchedule taints (scoring looks at them only then).
    pub soft_taints: bool,
}

impl NodeInfo {
    fn add(&mut self, facts: &PodFacts) {
        self.requested.add(&facts.requests);
        self.non_zero_requested.add(&facts.non_zero);
        self.used_ports.extend(facts.host_ports.iter().cloned());
        if let Some(owner) = &facts.owner {
            *self.owner_counts.entry(owner.clone()).or_default() += 1;
        }
    }

    fn remove(&mut self, facts: &PodFacts) {
        self.requested.sub(&facts.requests);
        self.non_zero_requested.sub(&facts.non_zero);
        for hp in &facts.host_ports {
            if let Some(i) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(i);
            }
        }
        if let Some(owner) = &facts.owner {
            if let Some(n) = self.owner_counts.get_mut(owner) {
                *n -= 1;
                if *n == 0 {
                    self.owner_counts.remove(owner);
                }
            }
        }
    }

    /// Whether the node is known and its Ready condition is True.
    pub fn is_ready(&self) -> bool {
        self.node.is_some() && self.ready
    }
}

/// Whether the node's Ready condition is True.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

#[derive(Debug)]
struct Placement {
    node: String,
    facts: PodFacts,
    assumed: bool,
}

/// Nodes and pod placements.
#[derive(Debug, Default)]
pub struct Cache {
    /// Every node a scheduling decision walks, by position (no hashing per node considered);
    /// also holds entries for nodes only known from pods bound to them (`node` is `None`).
    nodes: IndexMap<String, NodeInfo, ahash::RandomState>,
    /// How many entries of `nodes` are nodes that exist.
    existing: usize,
    placements: HashMap<String, Placement>,
}

/// The parts of a node that can change whether a pod fits on it.
fn scheduling_relevant(node: &Node) -> impl PartialEq + '_ {
    let spec = node.spec.as_ref();
    let status = node.status.as_ref();
    (
        node.metadata.labels.as_ref(),
        spec.and_then(|s| s.unschedulable),
        spec.and_then(|s| s.taints.as_ref()),
        status.and_then(|s| s.allocatable.as_ref()),
        status.and_then(|s| s.capacity.as_ref()),
        node_ready(node),
    )
}

impl Cache {
    /// Adds or updates a node. Returns whether something that affects scheduling changed.
    pub fn upsert_node(&mut self, node: Arc<Node>) -> bool {
        let Some(name) = node.metadata.name.clone() else {
            return false;
        };
        let info = self.nodes.entry(name).or_default();
        let changed = match &info.node {
            None => {
                self.existing += 1;
                true
            }
            Some(old) => scheduling_relevant(old) != scheduling_relevant(&node),
        };
        info.allocatable = node_allocatable(&node);
        info.ready = node_ready(&node);
        info.unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or(&[]);
        info.hard_taints = taints
            .iter()
            .any(|t| t.effect == "NoSchedule" || t.effect == "NoExecute");
        info.soft_taints = taints.iter().any(|t| t.effect == "PreferNoSchedule");
        info.node = Some(node);
        changed
    }

    /// Removes a node (its placements stay counted until their pods go).
    pub fn remove_node(&mut self, name: &str) {
        if let Some(info) = self.nodes.get_mut(name) {
            if info.node.take().is_some() {
                self.existing -= 1;
            }
            info.ready = false;
            if info.requested == Resources::default() {
                self.nodes.swap_remove(name);
            }
        }
    }

    /// Names of all known nodes that exist.
    pub fn node_names(&self) -> impl Iterator<Item = &String> {
        self.nodes
            .iter()
            .filter(|(_, info)| info.node.is_some())
            .map(|(name, _)| name)
    }

    /// A node's info.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name)
    }

    /// Number of positions [`Cache::at`] takes (nodes that exist and entries for nodes only
    /// known from their pods).
    pub fn slots(&self) -> usize {
        self.nodes.len()
    }

    /// The node at `slot` (0 ≤ slot < [`Cache::slots`]), if it exists. Positions are stable
    /// until a node is removed.
    pub fn at(&self, slot: usize) -> Option<(&String, &NodeInfo)> {
        self.nodes
            .get_index(slot)
            .filter(|(_, info)| info.node.is_some())
    }

    /// Number of nodes that exist.
    pub fn len(&self) -> usize {
        self.existing
    }

    /// Whether no node exists.
    pub fn is_empty(&self) -> bool {
        self.existing == 0
    }

    /// Accounts a pod observed bound to `node`. Replaces an assumption for the same pod.
    pub fn add_bound_pod(&mut self, uid: &str, node: &str, pod: &Pod) {
        if let Some(p) = self.placements.get(uid) {
            if !p.assumed && p.node == node {
                return;
            }
        }
        self.remove_pod(uid);
        self.place(uid, node, PodFacts::of(pod), false);
    }

    /// Accounts a pod the scheduler has just decided to bind.
    pub fn assume(&mut self, uid: &str, node: &str, facts: PodFacts) {
        self.remove_pod(uid);
        self.place(uid, node, facts, true);
    }

    fn place(&mut self, uid: &str, node: &str, facts: PodFacts, assumed: bool) {
        self.nodes.entry(node.to_string()).or_default().add(&facts);
        self.placements.insert(
            uid.to_string(),
            Placement {
                node: node.to_string(),
                facts,
                assumed,
            },
        );
    }

    /// Drops an assumption made by [`Cache::assume`], if it is still only assumed.
    pub fn forget_assumed(&mut self, uid: &str) {
        if self.placements.get(uid).is_some_and(|p| p.assumed) {
            self.remove_pod(uid);
        }
    }

    /// Whether the pod is accounted on some node (bound or assumed).
    pub fn is_placed(&self, uid: &str) -> bool {
        self.placements.contains_key(uid)
    }

    /// Stops accounting a pod. Returns whether it was accounted.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(p) = self.placements.remove(uid) else {
            return false;
        };
        if let Some(info) = self.nodes.get_mut(&p.node) {
            info.remove(&p.facts);
            if info.node.is_none() && info.requested == Resources::default() {
                self.nodes.swap_remove(&p.node);
            }
        }
        true
    }

    /// uids of all placements that are confirmed (not only assumed).
    pub fn bound_uids(&self) -> Vec<String> {
        self.placements
            .iter()
            .filter(|(_, p)| !p.assumed)
            .map(|(uid, _)| uid.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(uid: &str, cpu: &str, mem: &str, host_port: Option<i32>) -> Pod {
        let mut ports = vec![];
        if let Some(hp) = host_port {
            ports.push(json!({"containerPort": 80, "hostPort": hp}));
        }
        serde_json::from_value(json!({
            "metadata": {"name": uid, "uid": uid,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-1", "controller": true}]},
            "spec": {"containers": [{"name": "c", "ports": ports,
                "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}
        }))
        .unwrap()
    }

    #[test]
    fn assume_then_confirm_counts_once() {
        let mut cache = Cache::default();
        let p = pod("u1", "500m", "1Gi", Some(8080));
        cache.assume("u1", "n1", PodFacts::of(&p));
        cache.add_bound_pod("u1", "n1", &p);
        let info = cache.node("n1").unwrap();
        assert_eq!(info.requested.milli_cpu, 500);
        assert_eq!(info.requested.memory, 1 << 30);
        assert_eq!(info.requested.pods, 1);
        assert_eq!(info.used_ports.len(), 1);
        assert_eq!(info.owner_counts.get("rs-1"), Some(&1));
        assert!(cache.remove_pod("u1"));
        assert!(
            cache.node("n1").is_none(),
            "an empty node without Node object is dropped"
        );
    }

    #[test]
    fn forget_only_drops_assumptions() {
        let mut cache = Cache::default();
        let p = pod("u1", "1", "1Mi", None);
        cache.add_bound_pod("u1", "n1", &p);
        cache.forget_assumed("u1");
        assert!(cache.is_placed("u1"));
        cache.remove_pod("u1");
        cache.assume("u1", "n2", PodFacts::of(&p));
        cache.forget_assumed("u1");
        assert!(!cache.is_placed("u1"));
    }

    #[test]
    fn host_port_conflicts() {
        let any = HostPort {
            protocol: "TCP".into(),
            ip: "0.0.0.0".into(),
            port: 80,
        };
        let one = HostPort {
            protocol: "TCP".into(),
            ip: "10.0.0.1".into(),
            port: 80,
        };
        let two = HostPort {
            protocol: "TCP".into(),
            ip: "10.0.0.2".into(),
            port: 80,
        };
        let udp = HostPort {
            protocol: "UDP".into(),
            ip: "0.0.0.0".into(),
            port: 80,
        };
        assert!(any.conflicts(&one));
        assert!(!one.conflicts(&two));
        assert!(!any.conflicts(&udp));
    }
}
