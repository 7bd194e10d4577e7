//! The node's pod range for the datapath: `--pod-cidr`; else, with `--kubelet`, the range
//! the kubelet running next to the proxy learns (the Node's `spec.podCIDR`, which the
//! server's node-IPAM controller assigns only after the kubelet registered the Node) and
//! hands over; else none.

use std::time::Instant;

use bpfk_datapath::Ipv4Cidr;
use tokio::sync::oneshot;
use tracing::info;

/// Where the datapath's pod range comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--pod-cidr`.
    Flag(Ipv4Cidr),
    /// The kubelet of this agent, once node IPAM assigned the Node's `spec.podCIDR`.
    Kubelet,
    /// No range: no `--pod-cidr` and no kubelet to register the Node.
    Unknown,
}

/// The pod range source for these flags.
pub fn source(flag: Option<Ipv4Cidr>, kubelet: bool) -> Source {
    match (flag, kubelet) {
        (Some(c), _) => Source::Flag(c),
        (None, true) => Source::Kubelet,
        (None, false) => Source::Unknown,
    }
}

/// Why the proxy got no pod range from the kubelet.
#[derive(Debug, thiserror::Error)]
pub enum PodCidrError {
    /// A pod range on the Node that is not an IPv4 CIDR.
    #[error("node {node}: spec.podCIDR {value:?}: {reason}")]
    Malformed {
        node: String,
        value: String,
        reason: String,
    },
    #[error("the kubelet stopped before it learnt the pod range")]
    KubeletStopped,
}

/// The Node's `spec.podCIDR` `value` as an IPv4 range.
pub fn parse(node: &str, value: &str) -> Result<Ipv4Cidr, PodCidrError> {
    value.parse().map_err(|e| PodCidrError::Malformed {
        node: node.to_string(),
        value: value.to_string(),
        reason: format!("{e}"),
    })
}

/// The channel the kubelet hands the pod range over on: its sender goes to
/// `bpfk_kubelet::run_sharing_pod_cidr`, the receiver to [`from_kubelet`].
pub fn hand_off() -> (oneshot::Sender<String>, oneshot::Receiver<String>) {
    oneshot::channel()
}

/// Waits until the kubelet hands over node `node`'s pod range.
pub async fn from_kubelet(
    handed: oneshot::Receiver<String>,
    node: &str,
) -> Result<Ipv4Cidr, PodCidrError> {
    let started = Instant::now();
    info!(
        node,
        "waiting for the kubelet to learn the Node's spec.podCIDR (node IPAM assigns it after \
         registration) before loading the datapath"
    );
    let value = handed.await.map_err(|_| PodCidrError::KubeletStopped)?;
    let cidr = parse(node, &value)?;
    info!(node, pod_cidr = %cidr, waited_ms = started.elapsed().as_millis() as u64,
        "pod range assigned");
    Ok(cidr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_follows_the_flags() {
        let c: Ipv4Cidr = "10.244.3.0/24".parse().unwrap();
        assert_eq!(source(Some(c), true), Source::Flag(c));
        assert_eq!(source(Some(c), false), Source::Flag(c));
        assert_eq!(source(None, true), Source::Kubelet);
        assert_eq!(source(None, false), Source::Unknown);
    }

    #[test]
    fn malformed_range_names_node_field_and_value() {
        let err = parse("node-1", "10.244.1.0").unwrap_err().to_string();
        assert!(
            err.contains("node-1") && err.contains("spec.podCIDR") && err.contains("10.244.1.0"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_range_the_kubelet_hands_over_is_the_datapath_range() {
        let (to_proxy, handed) = hand_off();
        to_proxy.send("10.244.1.0/24".to_string()).unwrap();
        let want: Ipv4Cidr = "10.244.1.0/24".parse().unwrap();
        assert_eq!(from_kubelet(handed, "node-1").await.unwrap(), want);

        let (to_proxy, handed) = hand_off();
        to_proxy.send("not-a-cidr".to_string()).unwrap();
        let err = from_kubelet(handed, "node-1").await.unwrap_err();
        assert!(matches!(err, PodCidrError::Malformed { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_kubelet_that_stops_first_is_an_error() {
        let (to_proxy, handed) = hand_off();
        drop(to_proxy);
        let err = from_kubelet(handed, "node-1").await.unwrap_err();
        assert!(matches!(err, PodCidrError::KubeletStopped), "{err}");
    }
}
