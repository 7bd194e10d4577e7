//! Node IPAM: gives every Node a pod range (`spec.podCIDR`, `spec.podCIDRs`) from the cluster
//! CIDR, never the same to two nodes. The set of ranges in use is always derived from the
//! nodes the cache shows plus the allocations written but not yet observed, so restarts and
//! deleted nodes need no extra bookkeeping.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::Mutex;

use crate::error::{is_not_found, Error, Result};
use crate::work_queue::WorkQueue;

/// Splits an IPv4 cluster CIDR into equal node ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrSet {
    base: u32,
    cluster_prefix: u8,
    node_prefix: u8,
}

impl CidrSet {
    /// `cidr` like `10.244.0.0/16`, node ranges of `/node_prefix`.
    pub fn new(cidr: &str, node_prefix: u8) -> Result<Self> {
        let bad = |reason: String| Error::Config {
            flag: "cluster-cidr",
            reason,
        };
        let (addr, len) = cidr
            .split_once('/')
            .ok_or_else(|| bad(format!("{cidr:?} is not in ADDRESS/PREFIX form")))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| bad(format!("{addr:?} is not an IPv4 address")))?;
        let cluster_prefix: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| bad(format!("{len:?} is not a prefix length 0-32")))?;
        if node_prefix < cluster_prefix || node_prefix > 32 {
            return Err(Error::Config {
                flag: "node-cidr-mask-size",
                reason: format!("/{node_prefix} does not fit inside /{cluster_prefix}"),
            });
        }
        if node_prefix - cluster_prefix > 24 {
            return Err(Error::Config {
                flag: "node-cidr-mask-size",
                reason: "more than 2^24 node ranges".into(),
            });
        }
        let mask = if cluster_prefix == 0 {
            0
        } else {
            u32::MAX << (32 - cluster_prefix)
        };
        Ok(CidrSet {
            base: u32::from(addr) & mask,
            cluster_prefix,
            node_prefix,
        })
    }

    /// Number of node ranges.
    pub fn len(&self) -> usize {
        1usize << (self.node_prefix - self.cluster_prefix)
    }

    /// Whether there are no ranges (never: at least one).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `index`-th node range as text.
    pub fn range(&self, index: usize) -> String {
        let step = if self.node_prefix == 32 {
            1u64
        } else {
            1u64 << (32 - self.node_prefix)
        };
        let addr = (u64::from(self.base) + index as u64 * step) as u32;
        format!("{}/{}", Ipv4Addr::from(addr), self.node_prefix)
    }

    /// The first range not in `used`.
    pub fn first_free(&self, used: &HashSet<String>) -> Option<String> {
        (0..self.len())
            .map(|i| self.range(i))
            .find(|r| !used.contains(r))
    }
}

/// Shared state of the reconciler.
pub struct Context {
    client: Client,
    nodes: Store<Node>,
    cidrs: CidrSet,
    /// Allocations written whose node update the cache has not shown yet (node → range).
    in_flight: Mutex<HashMap<String, String>>,
}

/// Runs the controller until its watch ends.
pub async fn run(
    client: Client,
    cluster_cidr: &str,
    node_prefix: u8,
    concurrency: u16,
) -> Result<()> {
    let cidrs = CidrSet::new(cluster_cidr, node_prefix)?;
    let queue = WorkQueue::new("nodeipam");
    let controller = queue.controller(Api::<Node>::all(client.clone()), watcher::Config::default());
    let ctx = Arc::new(Context {
        client,
        nodes: controller.store(),
        cidrs,
        in_flight: Mutex::new(HashMap::new()),
    });
    let results = controller
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .run(queue.reconciler(reconcile), error_policy, ctx);
    queue.run_until_stopped(results).await
}

fn error_policy(node: Arc<Node>, e: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(node = %node.name_any(), error = %e, "pod CIDR allocation failed");
    Action::requeue(Duration::from_secs(5))
}

fn pod_cidr(node: &Node) -> Option<String> {
    node.spec
        .as_ref()
        .and_then(|s| s.pod_cidr.clone())
        .filter(|c| !c.is_empty())
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action> {
    let name = node.name_any();
    let mut in_flight = ctx.in_flight.lock().await;
    if pod_cidr(&node).is_some() {
        in_flight.remove(&name);
        return Ok(Action::await_change());
    }
    // re-read from the cache under the lock: another allocation may have landed meanwhile
    let nodes = ctx.nodes.state();
    in_flight.retain(|n, _| {
        nodes
            .iter()
            .any(|x| x.name_any() == *n && pod_cidr(x).is_none())
    });
    if let Some(cidr) = in_flight.get(&name) {
        tracing::debug!(node = %name, %cidr, "allocation not yet observed");
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let mut used: HashSet<String> = nodes.iter().filter_map(|n| pod_cidr(n)).collect();
    used.extend(in_flight.values().cloned());
    let Some(cidr) = ctx.cidrs.first_free(&used) else {
        tracing::error!(node = %name, "cluster CIDR exhausted: no pod range left");
        return Ok(Action::requeue(Duration::from_secs(30)));
    };
    let api: Api<Node> = Api::all(ctx.client.clone());
    let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(node = %name, %cidr, "allocated pod CIDR");
            in_flight.insert(name, cidr);
            Ok(Action::await_change())
        }
        Err(e) if is_not_found(&e) => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_of_a_16() {
        let set = CidrSet::new("10.244.0.0/16", 24).unwrap();
        assert_eq!(set.len(), 256);
        assert_eq!(set.range(0), "10.244.0.0/24");
        assert_eq!(set.range(1), "10.244.1.0/24");
        assert_eq!(set.range(255), "10.244.255.0/24");
    }

    #[test]
    fn never_hands_out_a_used_range() {
        let set = CidrSet::new("10.244.0.0/16", 24).unwrap();
        let mut used = HashSet::new();
        used.insert("10.244.0.0/24".to_string());
        used.insert("10.244.2.0/24".to_string());
        assert_eq!(set.first_free(&used).as_deref(), Some("10.244.1.0/24"));
        for i in 0..256 {
            used.insert(set.range(i));
        }
        assert_eq!(set.first_free(&used), None);
        let mut seen = HashSet::new();
        for i in 0..256 {
            assert!(seen.insert(set.range(i)));
        }
    }

    #[test]
    fn host_bits_are_cleared_and_bad_input_refused() {
        assert_eq!(
            CidrSet::new("10.244.7.9/16", 24).unwrap().range(0),
            "10.244.0.0/24"
        );
        assert_eq!(
            CidrSet::new("10.0.0.0/8", 26).unwrap().range(3),
            "10.0.0.192/26"
        );
        assert!(CidrSet::new("10.244.0.0", 24).is_err());
        assert!(CidrSet::new("fd00::/64", 80).is_err());
        assert!(CidrSet::new("10.244.0.0/16", 8).is_err());
        assert!(CidrSet::new("10.244.0.0/33", 24).is_err());
    }
}
