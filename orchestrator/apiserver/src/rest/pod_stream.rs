//! `pods/exec` through the API server, as Kubernetes proxies it: the upgrade request
//! (WebSocket, `v5.channel.k8s.io`) goes on to the kubelet of the pod's node
//! (`/exec/{ns}/{pod}/{container}?…`), and once the kubelet answers `101 Switching
//! Protocols` the two connections are joined byte for byte, so the client speaks the
//! streaming protocol with the kubelet. `pods/attach` and `pods/portforward` are not served
//! yet and say so.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bpfk_apimachinery::registry;
use http::{header, HeaderMap, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::pod_log::{kubelet_address, pick_container};
use super::read;
use crate::error::{ApiError, Result};
use crate::path::ResourcePath;
use crate::query::Query;
use crate::state::AppState;

/// How much of a kubelet's refusal is quoted.
const MAX_ERROR_BODY: usize = 4096;
/// Request headers the upgrade carries to the kubelet.
const FORWARDED: [&str; 6] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// Whether `rp` is a pod streaming subresource and `headers` ask for an upgrade.
pub fn is_upgrade(rp: &ResourcePath, headers: &HeaderMap) -> bool {
    rp.group.is_empty()
        && rp.resource == "pods"
        && matches!(rp.subresource.as_deref(), Some("exec" | "attach" | "portforward"))
        && headers.contains_key(header::UPGRADE)
}

fn internal(message: String) -> ApiError {
    ApiError::Internal { message }
}

/// The kubelet's address and the path of the stream for `rp`.
async fn kubelet_target(state: &AppState, rp: &ResourcePath, q: &Query) -> Result<(String, String)> {
    let pods = registry::find("", "v1", "pods").ok_or_else(|| internal("pods are not served".into()))?;
    let nodes = registry::find("", "v1", "nodes").ok_or_else(|| internal("nodes are not served".into()))?;
    let (Some(ns), Some(name), Some(sub)) = (rp.namespace.as_deref(), rp.name.as_deref(), rp.subresource.as_deref()) else {
        return Err(ApiError::NotFoundPath);
    };
    let pod = read::get(state, pods, Some(ns), name, &Query::default()).await?;
    if sub != "exec" {
        return Err(ApiError::MethodNotAllowed {
            message: format!("pods/{sub} is not supported by this server yet"),
        });
    }
    let container = pick_container(&pod, name, q.container.as_deref())?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a host assigned")))?;
    let node = read::get(state, nodes, None, node_name, &Query::default()).await?;
    let (ip, port) = kubelet_address(&node, node_name)?;
    let addr = std::net::SocketAddr::new(ip, port).to_string();
    Ok((addr, format!("/exec/{ns}/{name}/{container}")))
}

/// Proxies the upgrade request `req` for `rp` to the pod's kubelet.
pub async fn proxy(state: Arc<AppState>, rp: ResourcePath, raw_query: Option<&str>, mut req: Request) -> Result<Response> {
    let q = Query::parse(raw_query)?;
    let (addr, path) = kubelet_target(&state, &rp, &q).await?;
    let uri = match raw_query {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| internal(format!("dial kubelet {addr}: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| internal(format!("kubelet {addr}: {e}")))?;
    tokio::spawn(conn.with_upgrades());
    let mut out = http::Request::builder().method(req.method().clone()).uri(&uri).header(header::HOST, &addr);
    for name in FORWARDED {
        for v in req.headers().get_all(name) {
            out = out.header(name, v);
        }
    }
    let out = out
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| internal(format!("kubelet request {uri}: {e}")))?;
    let answer = sender
        .send_request(out)
        .await
        .map_err(|e| internal(format!("kubelet {addr}{uri}: {e}")))?;
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(refusal(answer).await);
    }
    let mut response = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in answer.headers() {
        response = response.header(name, value);
    }
    let client_side = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let (kubelet, client) = match (hyper::upgrade::on(answer).await, client_side.await) {
            (Ok(k), Ok(c)) => (k, c),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "pods/exec upgrade failed");
                return;
            }
        };
        let (mut kubelet, mut client) = (TokioIo::new(kubelet), TokioIo::new(client));
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
            tracing::debug!(error = %e, "pods/exec stream ended");
        }
    });
    response.body(Body::empty()).map_err(|e| internal(format!("upgrade response: {e}")))
}

/// The kubelet's refusal of an upgrade as a Status error.
async fn refusal(answer: http::Response<hyper::body::Incoming>) -> ApiError {
    let status = answer.status();
    let body = axum::body::to_bytes(Body::new(answer.into_body()), MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    if status.is_client_error() {
        ApiError::bad_request(text)
    } else {
        internal(format!("the kubelet answered {status}: {text}"))
    }
}
