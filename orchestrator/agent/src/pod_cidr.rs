//! The node's pod range for the datapath. With `--kubelet` and no `--pod-cidr`, the range
//! is the Node's `spec.podCIDR`, which the server's node-IPAM controller assigns only after
//! the kubelet (running next to the proxy) has registered the Node: the proxy waits for it.

use std::time::{Duration, Instant};

use bpfk_datapath::Ipv4Cidr;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use tracing::{info, warn};

/// How often the Node is read while its pod range is not assigned yet.
pub const POLL: Duration = Duration::from_millis(500);
/// How often the wait is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Where the datapath's pod range comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--pod-cidr`.
    Flag(Ipv4Cidr),
    /// The Node's `spec.podCIDR`, assigned once the kubelet registered it.
    Node,
    /// No range: no `--pod-cidr` and no kubelet to register the Node.
    Unknown,
}

/// The pod range source for these flags.
pub fn source(flag: Option<Ipv4Cidr>, kubelet: bool) -> Source {
    match (flag, kubelet) {
        (Some(c), _) => Source::Flag(c),
        (None, true) => Source::Node,
        (None, false) => Source::Unknown,
    }
}

/// A pod range on a Node that is not an IPv4 CIDR.
#[derive(Debug, thiserror::Error)]
#[error("node {node}: spec.podCIDR {value:?}: {reason}")]
pub struct BadPodCidr {
    pub node: String,
    pub value: String,
    pub reason: String,
}

/// The Node's IPv4 pod range (`spec.podCIDR`, else the first IPv4 one of
/// `spec.podCIDRs`); None while it is not assigned.
pub fn of_node(node: &Node) -> Result<Option<Ipv4Cidr>, BadPodCidr> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let Some(spec) = node.spec.as_ref() else {
        return Ok(None);
    };
    if let Some(value) = spec.pod_cidr.as_deref().filter(|v| !v.is_empty()) {
        return value.parse().map(Some).map_err(|e| BadPodCidr {
            node: name,
            value: value.to_string(),
            reason: format!("{e}"),
        });
    }
    Ok(spec
        .pod_cidrs
        .iter()
        .flatten()
        .find_map(|c| c.parse::<Ipv4Cidr>().ok()))
}

/// Reads Node `name` every [`POLL`] until it has a pod range, logging while it waits.
/// Read errors (the API server restarting) are logged and retried; a malformed range is
/// an error.
pub async fn wait_for(nodes: &Api<Node>, name: &str) -> Result<Ipv4Cidr, BadPodCidr> {
    let started = Instant::now();
    let mut logged: Option<Instant> = None;
    loop {
        match nodes.get_opt(name).await {
            Ok(Some(node)) => {
                if let Some(cidr) = of_node(&node)? {
                    info!(node = name, pod_cidr = %cidr, waited_ms = started.elapsed().as_millis() as u64,
                        "pod range assigned");
                    return Ok(cidr);
                }
            }
            Ok(None) => {}
            Err(e) => warn!(node = name, "reading the Node for its pod range: {e}"),
        }
        if logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            info!(
                node = name,
                waited_s = started.elapsed().as_secs(),
                "waiting for the Node's spec.podCIDR (node IPAM assigns it after registration) \
                 before loading the datapath"
            );
            logged = Some(Instant::now());
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use kube::api::ObjectMeta;

    fn node(pod_cidr: Option<&str>, pod_cidrs: &[&str]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("node-1".into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: pod_cidr.map(str::to_string),
                pod_cidrs: (!pod_cidrs.is_empty())
                    .then(|| pod_cidrs.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn source_follows_the_flags() {
        let c: Ipv4Cidr = "10.244.3.0/24".parse().unwrap();
        assert_eq!(source(Some(c), true), Source::Flag(c));
        assert_eq!(source(Some(c), false), Source::Flag(c));
        assert_eq!(source(None, true), Source::Node);
        assert_eq!(source(None, false), Source::Unknown);
    }

    #[test]
    fn unassigned_ranges_are_none() {
        assert_eq!(of_node(&node(None, &[])).unwrap(), None);
        assert_eq!(of_node(&node(Some(""), &[])).unwrap(), None);
        let mut bare = node(None, &[]);
        bare.spec = None;
        assert_eq!(of_node(&bare).unwrap(), None);
    }

    #[test]
    fn pod_cidr_wins_then_first_ipv4_of_pod_cidrs() {
        let want: Ipv4Cidr = "10.244.1.0/24".parse().unwrap();
        assert_eq!(
            of_node(&node(Some("10.244.1.0/24"), &["10.244.9.0/24"])).unwrap(),
            Some(want)
        );
        assert_eq!(
            of_node(&node(None, &["fd00::/64", "10.244.1.0/24"])).unwrap(),
            Some(want)
        );
    }

    #[test]
    fn malformed_range_names_node_field_and_value() {
        let err = of_node(&node(Some("10.244.1.0"), &[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("node-1") && err.contains("spec.podCIDR") && err.contains("10.244.1.0"),
            "{err}"
        );
    }
}
