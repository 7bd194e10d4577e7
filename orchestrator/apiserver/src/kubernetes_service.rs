//! The `kubernetes` Service in `default`, as kube-apiserver keeps it: ClusterIP 10.96.0.1,
//! port 443 (`https`) to the API server's advertised address and port, with the Endpoints
//! and the EndpointSlice of that one address rewritten by the server whenever they differ
//! (someone edited or deleted them, or the server came back on another address), so pods
//! reach the API through the service datapath with their own token.

use std::net::SocketAddr;
use std::time::Duration;

use bpfk_apimachinery::registry::{self, ResourceInfo};
use serde_json::{json, Value};

use crate::error::{ApiError, Result};
use crate::rest::write::{self, Part};
use crate::{query::Query, rest, state::AppState};

const NAME: &str = "kubernetes";
const NAMESPACE: &str = "default";
/// How often the endpoints are checked (kube-apiserver's `--endpoint-reconciler` period).
const RECONCILE_PERIOD: Duration = Duration::from_secs(10);

/// The Service object.
pub fn service(cluster_ip: &str, target_port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": target_port}],
        },
    })
}

/// The Endpoints of `advertised`.
pub fn endpoints(advertised: SocketAddr) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{
            "addresses": [{"ip": advertised.ip().to_string()}],
            "ports": [{"name": "https", "port": advertised.port(), "protocol": "TCP"}],
        }],
    })
}

/// The EndpointSlice of `advertised`.
pub fn endpoint_slice(advertised: SocketAddr) -> Value {
    let family = if advertised.is_ipv4() { "IPv4" } else { "IPv6" };
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": NAME}},
        "addressType": family,
        "endpoints": [{"addresses": [advertised.ip().to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": advertised.port(), "protocol": "TCP"}],
    })
}

fn resource(group: &str, version: &str, plural: &str) -> Result<&'static ResourceInfo> {
    registry::find(group, version, plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not served")))
}

/// Create `obj` of `res`, or replace the stored one when `same` says it differs.
async fn ensure(
    state: &AppState,
    res: &'static ResourceInfo,
    obj: Value,
    same: fn(&Value, &Value) -> bool,
) -> Result<bool> {
    let q = Query::default();
    match rest::read::get(state, res, Some(NAMESPACE), NAME, &q).await {
        Ok(stored) if same(&stored, &obj) => Ok(false),
        Ok(stored) => {
            let mut obj = obj;
            obj["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"].clone();
            write::update(state, res, Some(NAMESPACE), NAME, Part::Main, obj, &q).await?;
            Ok(true)
        }
        Err(ApiError::NotFound { .. }) => {
            write::create(state, res, Some(NAMESPACE), obj, &q).await?;
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

fn same_subsets(stored: &Value, want: &Value) -> bool {
    stored.get("subsets") == want.get("subsets")
}

fn same_slice(stored: &Value, want: &Value) -> bool {
    let endpoints = |v: &Value| {
        v.get("endpoints").cloned().map(|mut e| {
            // the server adds defaults (serving, terminating): compare the addresses
            for item in e.as_array_mut().into_iter().flatten() {
                if let Some(m) = item.as_object_mut() {
                    m.retain(|k, _| k == "addresses");
                }
            }
            e
        })
    };
    endpoints(stored) == endpoints(want) && stored.get("ports") == want.get("ports")
}

fn same_service(_stored: &Value, _want: &Value) -> bool {
    // a Service someone changed is theirs (kube-apiserver leaves it too)
    true
}

/// Keep the Service and, when the server has an address pods can reach, its endpoints;
/// runs until the process ends.
pub async fn run(
    state: std::sync::Arc<AppState>,
    cluster_ip: &'static str,
    listen_port: u16,
    advertised: Option<SocketAddr>,
) {
    let Ok(services) = resource("", "v1", "services") else {
        return;
    };
    let mut service_made = false;
    if advertised.is_none() {
        tracing::warn!("no --advertise-address (the server listens on loopback or every address): the kubernetes Service has no endpoints");
    }
    loop {
        if !service_made {
            let target = advertised.map_or(listen_port, |a| a.port());
            match ensure(&state, services, service(cluster_ip, target), same_service).await {
                Ok(_) => service_made = true,
                Err(e) => tracing::warn!("cannot create default/kubernetes yet: {}", e.message()),
            }
        }
        if let Some(addr) = advertised {
            if let Err(e) = ensure_endpoints(&state, addr).await {
                tracing::warn!("cannot write the kubernetes endpoints yet: {}", e.message());
            }
        }
        tokio::time::sleep(RECONCILE_PERIOD).await;
    }
}

async fn ensure_endpoints(state: &AppState, addr: SocketAddr) -> Result<()> {
    let eps = resource("", "v1", "endpoints")?;
    if ensure(state, eps, endpoints(addr), same_subsets).await? {
        tracing::info!(%addr, "default/kubernetes endpoints written");
    }
    let slices = resource("discovery.k8s.io", "v1", "endpointslices")?;
    ensure(state, slices, endpoint_slice(addr), same_slice).await?;
    Ok(())
}

/// The address the `kubernetes` endpoints carry: `--advertise-address` with the listen
/// port, else the listen address unless it is loopback or unspecified (pods cannot reach
/// those).
pub fn advertised(listen: SocketAddr, advertise: Option<std::net::IpAddr>) -> Option<SocketAddr> {
    match advertise {
        Some(ip) => Some(SocketAddr::new(ip, listen.port())),
        None if listen.ip().is_loopback() || listen.ip().is_unspecified() => None,
        None => Some(listen),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_address_is_one_pods_can_reach() {
        let listen: SocketAddr = "10.250.0.254:6443".parse().unwrap();
        assert_eq!(advertised(listen, None), Some(listen));
        let loopback: SocketAddr = "127.0.0.1:6443".parse().unwrap();
        assert_eq!(advertised(loopback, None), None);
        let any: SocketAddr = "0.0.0.0:6443".parse().unwrap();
        let ip = "192.0.2.7".parse().unwrap();
        assert_eq!(
            advertised(any, Some(ip)),
            Some("192.0.2.7:6443".parse().unwrap())
        );
    }

    #[test]
    fn a_slice_with_defaults_added_is_the_same() {
        let addr: SocketAddr = "10.250.0.254:6443".parse().unwrap();
        let want = endpoint_slice(addr);
        let mut stored = want.clone();
        stored["endpoints"][0]["conditions"]["serving"] = json!(true);
        assert!(same_slice(&stored, &want));
        let moved = endpoint_slice("10.250.0.253:6443".parse().unwrap());
        assert!(!same_slice(&moved, &want));
        assert!(same_subsets(&endpoints(addr), &endpoints(addr)));
    }
}
