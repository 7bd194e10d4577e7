//! `pods/log`: a container's log, fetched from the kubelet of the pod's node
//! (`GET https://<node InternalIP>:<kubelet port>/containerLogs/{ns}/{pod}/{container}`, the
//! kubelet's certificate verified against the kubelet CA, the API server presenting its
//! kubelet client certificate) and
//! streamed back as text, as the Kubernetes API server proxies it. The request is checked
//! here first (pod bound, container named and known, container started) so that the
//! answers for those cases are the same `Status` errors kubectl knows.

use std::net::IpAddr;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bpfk_apimachinery::registry::{self, ResourceInfo};
use bpfk_streaming::upgrade::Transport;
use http::{header, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::read;
use crate::error::{ApiError, Result};
use crate::query::Query;
use crate::state::AppState;

/// How long connecting to a kubelet may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a kubelet's error answer is quoted.
const MAX_ERROR_BODY: usize = 4096;

/// HTTPS client of the kubelets' endpoints (connections are pooled per node), and the TLS
/// its upgraded connections (exec, attach, port-forward) use.
#[derive(Clone)]
pub struct KubeletClient {
    http: Client<HttpsConnector<HttpConnector>, Body>,
    pub transport: Transport,
}

impl KubeletClient {
    /// A client with `tls` (the kubelet CA as roots, the API server's kubelet client
    /// certificate); HTTP/1.1 only, as upgrades need.
    pub fn new(tls: rustls::ClientConfig) -> KubeletClient {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        http.enforce_http(false);
        // hyper-rustls offers http/1.1 by ALPN itself
        let mut upgrades = tls.clone();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        upgrades.alpn_protocols = vec![b"http/1.1".to_vec()];
        KubeletClient {
            http: Client::builder(TokioExecutor::new()).build(connector),
            transport: Transport::Tls(std::sync::Arc::new(upgrades)),
        }
    }
}

impl Default for KubeletClient {
    /// A client that trusts no kubelet (for servers built without credentials: tests of
    /// other things).
    fn default() -> Self {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            });
        match tls {
            Ok(tls) => KubeletClient::new(tls),
            // ring supports the default versions: not reached
            Err(e) => panic!("TLS defaults: {e}"),
        }
    }
}

/// `https://host:port` of the kubelet at `(ip, port)`.
pub fn kubelet_base_url((ip, port): (IpAddr, u16)) -> String {
    match ip {
        IpAddr::V4(v4) => format!("https://{v4}:{port}"),
        IpAddr::V6(v6) => format!("https://[{v6}]:{port}"),
    }
}

/// Names of the pod's containers and init containers, in spec order.
fn container_names(pod: &Value) -> (Vec<&str>, Vec<&str>) {
    let names = |field: &str| -> Vec<&str> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .collect()
    };
    (names("containers"), names("initContainers"))
}

/// The container whose log is asked for: the one named, or the only one.
pub fn pick_container(pod: &Value, pod_name: &str, asked: Option<&str>) -> Result<String> {
    let (containers, inits) = container_names(pod);
    match asked {
        Some(name) if containers.contains(&name) || inits.contains(&name) => Ok(name.to_string()),
        Some(name) => Err(ApiError::bad_request(format!(
            "container {name} is not valid for pod {pod_name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0].to_string()),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !inits.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    inits.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

/// Why the container has no log to show yet: it is waiting and never ran before.
pub fn waiting_reason(pod: &Value, container: &str) -> Option<String> {
    let status = ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|f| {
            pod.pointer(&format!("/status/{f}"))
                .and_then(Value::as_array)
        })
        .flatten()
        .find(|s| s.get("name").and_then(Value::as_str) == Some(container));
    let Some(status) = status else {
        // no status yet: the kubelet has not started it
        return Some("ContainerCreating".into());
    };
    let waiting = status.pointer("/state/waiting")?;
    if status.pointer("/lastState/terminated").is_some() {
        return None;
    }
    Some(
        waiting
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("ContainerCreating")
            .to_string(),
    )
}

/// Where the node's kubelet serves: its first InternalIP and the kubelet endpoint port.
pub fn kubelet_address(node: &Value, node_name: &str) -> Result<(IpAddr, u16)> {
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let ip = addresses
        .iter()
        .filter(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
        .find_map(|a| a.get("address")?.as_str()?.parse::<IpAddr>().ok())
        .ok_or_else(|| ApiError::Internal {
            message: format!("node {node_name} has no InternalIP address to reach its kubelet"),
        })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| ApiError::Internal {
            message: format!("node {node_name} reports no kubelet endpoint port"),
        })?;
    Ok((ip, port))
}

/// The kubelet URL of a container's log.
pub fn kubelet_log_url(
    kubelet: (IpAddr, u16),
    ns: &str,
    pod: &str,
    container: &str,
    q: &Query,
) -> String {
    let mut params = Vec::new();
    if let Some(n) = q.tail_lines {
        params.push(format!("tailLines={n}"));
    }
    if let Some(n) = q.limit_bytes {
        params.push(format!("limitBytes={n}"));
    }
    if let Some(n) = q.since_seconds {
        params.push(format!("sinceSeconds={n}"));
    }
    if let Some(t) = &q.since_time {
        params.push(format!("sinceTime={}", query_escape(t)));
    }
    for (flag, name) in [
        (q.previous, "previous"),
        (q.timestamps, "timestamps"),
        (q.follow, "follow"),
    ] {
        if flag {
            params.push(format!("{name}=true"));
        }
    }
    // namespace, pod and container names are validated DNS labels: nothing to escape
    let base = kubelet_base_url(kubelet);
    let mut url = format!("{base}/containerLogs/{ns}/{pod}/{container}");
    if !params.is_empty() {
        url.push('?');
        url.push_str(&params.join("&"));
    }
    url
}

/// `s` with every byte outside RFC 3986's unreserved set percent-encoded.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn nodes() -> Result<&'static ResourceInfo> {
    registry::find("", "v1", "nodes").ok_or_else(|| ApiError::Internal {
        message: "nodes are not a served resource".into(),
    })
}

/// GET `pods/{name}/log`.
pub async fn get(
    state: &AppState,
    pods: &'static ResourceInfo,
    ns: &str,
    name: &str,
    q: &Query,
) -> Result<Response> {
    for (param, value) in [("tailLines", q.tail_lines), ("limitBytes", q.limit_bytes)] {
        if value.is_some_and(|v| v < 0) {
            return Err(ApiError::bad_request(format!(
                "{param}: Invalid value: must be greater than or equal to 0"
            )));
        }
    }
    if q.since_seconds.is_some_and(|s| s < 1) {
        return Err(ApiError::bad_request(
            "sinceSeconds: Invalid value: must be greater than 0",
        ));
    }
    if q.since_seconds.is_some() && q.since_time.is_some() {
        return Err(ApiError::bad_request(
            "at most one of sinceTime or sinceSeconds may be specified",
        ));
    }
    let pod = read::get(state, pods, Some(ns), name, &Query::default()).await?;
    let container = pick_container(&pod, name, q.container.as_deref())?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {name} does not have a host assigned"))
        })?;
    if !q.previous {
        if let Some(reason) = waiting_reason(&pod, &container) {
            return Err(ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
            )));
        }
    }
    let node = read::get(state, nodes()?, None, node_name, &Query::default()).await?;
    let url = kubelet_log_url(kubelet_address(&node, node_name)?, ns, name, &container, q);
    let request = http::Request::get(&url)
        .body(Body::empty())
        .map_err(|e| ApiError::Internal {
            message: format!("building the kubelet request {url}: {e}"),
        })?;
    let answer = state
        .kubelets
        .http
        .request(request)
        .await
        .map_err(|e| ApiError::Internal {
            message: format!("Get \"{url}\": {e}"),
        })?;
    let status = answer.status();
    if status.is_success() {
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::new(answer.into_body()))
            .map_err(|e| ApiError::Internal {
                message: format!("log response: {e}"),
            });
    }
    let body = axum::body::to_bytes(Body::new(answer.into_body()), MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let message = format!("the kubelet of node {node_name} answered {status}: {text}");
    Err(if status.is_client_error() {
        ApiError::bad_request(message)
    } else {
        ApiError::Internal { message }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "nodeName": "n1",
                "initContainers": [{"name": "setup"}],
                "containers": [{"name": "app"}, {"name": "sidecar"}]
            },
            "status": {"containerStatuses": [
                {"name": "app", "state": {"running": {}}},
                {"name": "sidecar", "state": {"waiting": {"reason": "ImagePullBackOff"}}}
            ], "initContainerStatuses": [
                {"name": "setup", "state": {"terminated": {"exitCode": 0}}}
            ]}
        })
    }

    #[test]
    fn the_container_is_the_named_or_the_only_one() {
        let p = pod();
        assert_eq!(pick_container(&p, "web", Some("app")).unwrap(), "app");
        assert_eq!(pick_container(&p, "web", Some("setup")).unwrap(), "setup");
        let err = pick_container(&p, "web", None).unwrap_err().to_string();
        assert_eq!(
            err,
            "a container name must be specified for pod web, choose one of: [app sidecar] or one of the init containers: [setup]"
        );
        let err = pick_container(&p, "web", Some("nope"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "container nope is not valid for pod web");
        let single = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(pick_container(&single, "x", None).unwrap(), "only");
    }

    #[test]
    fn a_waiting_container_that_never_ran_has_no_log() {
        let mut p = pod();
        assert_eq!(waiting_reason(&p, "app"), None);
        assert_eq!(waiting_reason(&p, "setup"), None);
        assert_eq!(
            waiting_reason(&p, "sidecar").as_deref(),
            Some("ImagePullBackOff")
        );
        // restarted after a crash: the last run's log is there
        p["status"]["containerStatuses"][1]["lastState"] = json!({"terminated": {"exitCode": 1}});
        assert_eq!(waiting_reason(&p, "sidecar"), None);
        let fresh = json!({"spec": {"containers": [{"name": "c"}]}});
        assert_eq!(
            waiting_reason(&fresh, "c").as_deref(),
            Some("ContainerCreating")
        );
    }

    #[test]
    fn the_kubelet_is_found_from_the_node_status() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.250.0.11"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}
        }});
        let addr = kubelet_address(&node, "n1").unwrap();
        assert_eq!(addr, ("10.250.0.11".parse().unwrap(), 10250));
        let q = Query {
            tail_lines: Some(5),
            previous: true,
            ..Default::default()
        };
        assert_eq!(
            kubelet_log_url(addr, "default", "web", "app", &q),
            "https://10.250.0.11:10250/containerLogs/default/web/app?tailLines=5&previous=true"
        );
        let since = Query {
            since_time: Some("2026-01-01T00:00:00+01:00".into()),
            follow: true,
            ..Default::default()
        };
        assert_eq!(
            kubelet_log_url(addr, "default", "web", "app", &since),
            "https://10.250.0.11:10250/containerLogs/default/web/app?sinceTime=2026-01-01T00%3A00%3A00%2B01%3A00&follow=true"
        );
        assert_eq!(
            kubelet_log_url(addr, "default", "web", "app", &Query::default()),
            "https://10.250.0.11:10250/containerLogs/default/web/app"
        );
        let no_port =
            json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}});
        assert!(kubelet_address(&no_port, "n1")
            .unwrap_err()
            .to_string()
            .contains("no kubelet endpoint port"));
        assert!(kubelet_address(&json!({}), "n1")
            .unwrap_err()
            .to_string()
            .contains("no InternalIP"));
    }
}
