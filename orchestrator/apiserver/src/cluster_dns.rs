//! The `kube-dns` Service in kube-system, made at start-up as kube-apiserver makes the
//! `kubernetes` Service: the well-known address (10.96.0.10, ports 53/UDP and 53/TCP) pods
//! use as their nameserver. It selects no pods: every node agent steers it to its own
//! node-local DNS server.

use std::time::Duration;

use bpfk_apimachinery::registry;
use serde_json::{json, Value};

use crate::{error::ApiError, query, rest, state::AppState};

/// The ClusterIP of `kube-dns` (the kubelet's usual `--cluster-dns`).
pub const KUBE_DNS_IP: &str = "10.96.0.10";

/// The Service object.
pub fn kube_dns_service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "bpfk-dns"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": KUBE_DNS_IP,
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
        },
    })
}

/// Creates `kube-dns` unless it exists, retrying while the store does not answer. A user's
/// Service already holding the address is reported and left alone.
pub async fn ensure_kube_dns(state: &AppState) {
    let Some(res) = registry::find("", "v1", "services") else {
        return;
    };
    let mut delay = Duration::from_millis(200);
    loop {
        let q = query::Query::default();
        match rest::write::create(state, res, Some("kube-system"), kube_dns_service(), &q).await {
            Ok(_) => {
                tracing::info!(cluster_ip = KUBE_DNS_IP, "kube-system/kube-dns created");
                return;
            }
            Err(ApiError::AlreadyExists { .. }) => return,
            Err(e @ ApiError::Invalid { .. }) => {
                tracing::warn!("cannot create kube-system/kube-dns: {}", e.message());
                return;
            }
            Err(e) => tracing::warn!("cannot create kube-system/kube-dns yet: {}", e.message()),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
