//! `pods/exec`, `pods/attach` and `pods/portforward`: the request is checked here (pod
//! bound and not completed, container known, a command for exec, at least one stream), then
//! its upgraded connection goes to the kubelet of the pod's node
//! (`/exec|attach/{ns}/{pod}/{container}?…`, `/portforward/{ns}/{pod}`), as the Kubernetes API
//! server proxies it:
//!
//! - a SPDY/3.1 client, or a WebSocket client of a protocol the runtime speaks itself (e.g.
//!   `v4.channel.k8s.io`, `portforward.k8s.io`): the upgrade is proxied byte for byte;
//! - a `v5.channel.k8s.io` WebSocket client (kubectl 1.30+ exec/attach/cp): the API server
//!   opens SPDY `v4.channel.k8s.io` to the kubelet and translates
//!   ([`bpfk_streaming::translate::websocket_to_spdy`]);
//! - a `SPDY/3.1+portforward.k8s.io` WebSocket client (kubectl port-forward): its SPDY frames
//!   are unwrapped from the WebSocket messages onto a SPDY connection to the kubelet.
//!
//! Every connection to a kubelet goes through [`connect_kubelet`].

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use bpfk_apimachinery::registry::{self, ResourceInfo};
use bpfk_streaming::channel::{self, StreamSet};
use bpfk_streaming::translate;
use bpfk_streaming::upgrade::{self, UpgradeError, UpstreamAnswer, STREAM_PROTOCOL_VERSION};
use http::{header, HeaderMap, HeaderValue, Method};
use serde_json::Value;

use crate::error::{ApiError, Result};
use crate::query::Query;
use crate::rest::{pod_log, read};
use crate::state::AppState;

/// A streaming subresource request: `/api/v1/namespaces/{ns}/pods/{pod}/{subresource}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTarget {
    pub namespace: String,
    pub pod: String,
    pub subresource: &'static str,
}

/// The streaming target `path` names, if it names one.
pub fn stream_target(path: &str) -> Option<StreamTarget> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [ns, "pods", pod, sub] = parts.as_slice() else {
        return None;
    };
    let subresource = ["exec", "attach", "portforward"]
        .into_iter()
        .find(|s| s == sub)?;
    if ns.is_empty() || pod.is_empty() {
        return None;
    }
    Some(StreamTarget {
        namespace: ns.to_string(),
        pod: pod.to_string(),
        subresource,
    })
}

/// The request's options (the PodExecOptions / PodAttachOptions / PodPortForwardOptions
/// query parameters).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub container: Option<String>,
    pub command: Vec<String>,
    pub streams: StreamSet,
    pub ports: Vec<u16>,
}

impl StreamOptions {
    pub fn parse(query: &str) -> Result<StreamOptions> {
        let mut o = StreamOptions::default();
        let flag = |v: &str| matches!(v, "true" | "1" | "True");
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "container" if !value.is_empty() => o.container = Some(value.into_owned()),
                "command" => o.command.push(value.into_owned()),
                "stdin" => o.streams.stdin = flag(&value),
                "stdout" => o.streams.stdout = flag(&value),
                "stderr" => o.streams.stderr = flag(&value),
                "tty" => o.streams.tty = flag(&value),
                "ports" => {
                    for p in value.split(',').filter(|p| !p.is_empty()) {
                        let port = p.trim().parse::<u16>().ok().filter(|p| *p != 0);
                        o.ports.push(port.ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "ports: Invalid value: {p:?}: must be between 1 and 65535"
                            ))
                        })?);
                    }
                }
                _ => {}
            }
        }
        if o.streams.tty {
            // one terminal stream carries both outputs
            o.streams.stderr = false;
        }
        Ok(o)
    }
}

/// How the client's connection reaches the kubelet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The upgrade as the client asked it, byte for byte.
    Passthrough,
    /// WebSocket v5 toward the client, SPDY v4 toward the kubelet.
    Translate,
    /// SPDY in WebSocket messages toward the client, SPDY toward the kubelet.
    Tunnel,
}

/// The mode for a request with `headers` to `subresource`.
pub fn mode(headers: &HeaderMap, subresource: &str) -> Result<Mode> {
    if upgrade::asks_upgrade_to(headers, "websocket") {
        let offered = upgrade::offered_subprotocols(headers);
        let offers = |p: &str| offered.iter().any(|o| o == p);
        return Ok(match subresource {
            "portforward" if offers(channel::PORT_FORWARD_TUNNEL) => Mode::Tunnel,
            "exec" | "attach" if offers(channel::V5_CHANNEL) => Mode::Translate,
            _ => Mode::Passthrough,
        });
    }
    if upgrade::asks_upgrade_to(headers, "SPDY/3.1") {
        return Ok(Mode::Passthrough);
    }
    Err(ApiError::bad_request("Upgrade request required"))
}

/// The kubelet URL of `target` with `options`, on the kubelet at `addr`.
pub fn kubelet_stream_url(
    kubelet: (IpAddr, u16),
    target: &StreamTarget,
    container: &str,
    o: &StreamOptions,
) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    let (ns, pod) = (&target.namespace, &target.pod);
    let path = if target.subresource == "portforward" {
        for p in &o.ports {
            query.append_pair("port", &p.to_string());
        }
        format!("/portforward/{ns}/{pod}")
    } else {
        for c in &o.command {
            query.append_pair("command", c);
        }
        let s = o.streams;
        for (on, name) in [
            (s.stdin, "input"),
            (s.stdout, "output"),
            (s.stderr, "error"),
            (s.tty, "tty"),
        ] {
            if on {
                query.append_pair(name, "1");
            }
        }
        format!("/{}/{ns}/{pod}/{container}", target.subresource)
    };
    let query = query.finish();
    let base = pod_log::kubelet_base_url(kubelet);
    if query.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{query}")
    }
}

/// Open an upgraded connection to a kubelet: `method url` with `headers`. The one place
/// the API server dials kubelets' streaming endpoints.
pub async fn connect_kubelet(
    kubelets: &pod_log::KubeletClient,
    url: &str,
    method: Method,
    headers: HeaderMap,
) -> std::result::Result<UpstreamAnswer, UpgradeError> {
    upgrade::request_upgrade(url, method, headers, &kubelets.transport).await
}

/// Serve a streaming request.
pub async fn serve(state: Arc<AppState>, target: StreamTarget, req: Request) -> Response {
    match serve_checked(&state, &target, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn pods() -> Result<&'static ResourceInfo> {
    registry::find("", "v1", "pods").ok_or_else(|| ApiError::Internal {
        message: "pods are not a served resource".into(),
    })
}

fn nodes() -> Result<&'static ResourceInfo> {
    registry::find("", "v1", "nodes").ok_or_else(|| ApiError::Internal {
        message: "nodes are not a served resource".into(),
    })
}

/// The container the request is for (empty for portforward), after the pod checks.
fn check_pod(pod: &Value, target: &StreamTarget, o: &StreamOptions) -> Result<String> {
    let name = &target.pod;
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    if let Some(phase @ ("Succeeded" | "Failed")) = phase {
        let verb = match target.subresource {
            "exec" => "exec into",
            "attach" => "attach to",
            _ => "forward ports of",
        };
        return Err(ApiError::bad_request(format!(
            "cannot {verb} a container in a completed pod; current phase is {phase}"
        )));
    }
    if target.subresource == "portforward" {
        return Ok(String::new());
    }
    let container = pod_log::pick_container(pod, name, o.container.as_deref())?;
    if target.subresource == "exec" && o.command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let s = o.streams;
    if !(s.stdin || s.stdout || s.stderr) {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    Ok(container)
}

async fn serve_checked(state: &AppState, target: &StreamTarget, req: Request) -> Result<Response> {
    let o = StreamOptions::parse(req.uri().query().unwrap_or(""))?;
    let pod = read::get(
        state,
        pods()?,
        Some(&target.namespace),
        &target.pod,
        &Query::default(),
    )
    .await?;
    let container = check_pod(&pod, target, &o)?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {} does not have a host assigned", target.pod))
        })?;
    let mode = mode(req.headers(), target.subresource)?;
    let node = read::get(state, nodes()?, None, node_name, &Query::default()).await?;
    let addr = pod_log::kubelet_address(&node, node_name)?;
    let url = kubelet_stream_url(addr, target, &container, &o);
    let (mut parts, _body) = req.into_parts();
    match mode {
        Mode::Passthrough => {
            let client = parts
                .extensions
                .remove::<hyper::upgrade::OnUpgrade>()
                .ok_or_else(|| ApiError::bad_request("Upgrade request required"))?;
            let headers = upgrade::forwarded_request_headers(&parts.headers);
            let answer =
                connect_kubelet(&state.kubelets, &url, parts.method.clone(), headers).await;
            let (headers, io) = switched(answer, &url, node_name)?;
            Ok(upgrade::splice_switched(client, &headers, io))
        }
        Mode::Translate | Mode::Tunnel => {
            let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
                .await
                .map_err(|e| ApiError::bad_request(format!("WebSocket upgrade: {e}")))?;
            let (protocol, upstream_protocol) = if mode == Mode::Translate {
                (channel::V5_CHANNEL, channel::V4_CHANNEL)
            } else {
                (channel::PORT_FORWARD_TUNNEL, channel::PORT_FORWARD)
            };
            let answer = connect_kubelet(
                &state.kubelets,
                &url,
                Method::POST,
                spdy_headers(upstream_protocol),
            )
            .await;
            let (_, io) = switched(answer, &url, node_name)?;
            let streams = o.streams;
            Ok(ws
                .protocols([protocol])
                .on_upgrade(move |socket| async move {
                    if mode == Mode::Translate {
                        translate::websocket_to_spdy(socket, io, streams).await
                    } else {
                        translate::websocket_tunnel(socket, io).await
                    }
                }))
        }
    }
}

/// The headers of a SPDY/3.1 upgrade offering stream protocol `protocol`.
fn spdy_headers(protocol: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    h.insert(STREAM_PROTOCOL_VERSION, HeaderValue::from_static(protocol));
    h
}

/// The switched kubelet connection, or the kubelet's refusal as a `Status` error.
fn switched(
    answer: std::result::Result<UpstreamAnswer, UpgradeError>,
    url: &str,
    node_name: &str,
) -> Result<(HeaderMap, hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>)> {
    match answer {
        Ok(UpstreamAnswer::Switched { headers, io }) => Ok((headers, io)),
        Ok(UpstreamAnswer::Refused { status, body, .. }) => {
            let text = String::from_utf8_lossy(&body).trim().to_string();
            let message = format!("the kubelet of node {node_name} answered {status}: {text}");
            Err(if status.is_client_error() {
                ApiError::bad_request(message)
            } else {
                ApiError::Internal { message }
            })
        }
        Err(e) => Err(ApiError::Internal {
            message: format!("error dialing the kubelet {url}: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_targets_are_pod_subresources() {
        assert_eq!(
            stream_target("/api/v1/namespaces/default/pods/web/exec"),
            Some(StreamTarget {
                namespace: "default".into(),
                pod: "web".into(),
                subresource: "exec",
            })
        );
        assert!(stream_target("/api/v1/namespaces/default/pods/web/portforward").is_some());
        assert!(stream_target("/api/v1/namespaces/default/pods/web/log").is_none());
        assert!(stream_target("/api/v1/namespaces/default/pods/web").is_none());
        assert!(stream_target("/api/v1/namespaces/default/services/web/exec").is_none());
        assert!(stream_target("/api/v1/namespaces//pods/web/exec").is_none());
    }

    #[test]
    fn options_and_kubelet_urls() {
        let o = StreamOptions::parse(
            "command=sh&command=-c&command=echo+a%26b&container=app&stdin=true&stdout=true&stderr=true",
        )
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "echo a&b"]);
        let target = stream_target("/api/v1/namespaces/ns/pods/p/exec").unwrap();
        let addr = ("10.250.0.11".parse().unwrap(), 10250);
        assert_eq!(
            kubelet_stream_url(addr, &target, "app", &o),
            "https://10.250.0.11:10250/exec/ns/p/app?command=sh&command=-c&command=echo+a%26b&input=1&output=1&error=1"
        );
        let tty = StreamOptions::parse("command=sh&stdout=true&stderr=true&tty=true").unwrap();
        assert!(!tty.streams.stderr && tty.streams.tty);
        let pf = StreamOptions::parse("ports=80,8080").unwrap();
        let target = stream_target("/api/v1/namespaces/ns/pods/p/portforward").unwrap();
        assert_eq!(
            kubelet_stream_url(addr, &target, "", &pf),
            "https://10.250.0.11:10250/portforward/ns/p?port=80&port=8080"
        );
        let none = StreamOptions::default();
        assert_eq!(
            kubelet_stream_url(addr, &target, "", &none),
            "https://10.250.0.11:10250/portforward/ns/p"
        );
        assert!(StreamOptions::parse("ports=0").is_err());
    }

    #[test]
    fn the_mode_follows_the_offered_protocols() {
        let mut ws = HeaderMap::new();
        ws.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        ws.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        ws.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v5.channel.k8s.io"),
        );
        assert_eq!(mode(&ws, "exec").unwrap(), Mode::Translate);
        ws.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        assert_eq!(mode(&ws, "attach").unwrap(), Mode::Passthrough);
        ws.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("SPDY/3.1+portforward.k8s.io"),
        );
        assert_eq!(mode(&ws, "portforward").unwrap(), Mode::Tunnel);
        let mut spdy = HeaderMap::new();
        spdy.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        spdy.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert_eq!(mode(&spdy, "exec").unwrap(), Mode::Passthrough);
        let err = mode(&HeaderMap::new(), "exec").unwrap_err().to_string();
        assert_eq!(err, "Upgrade request required");
    }

    #[test]
    fn completed_pods_and_missing_commands_are_refused() {
        let target = stream_target("/api/v1/namespaces/ns/pods/p/exec").unwrap();
        let pod = serde_json::json!({"spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Succeeded"}});
        let o = StreamOptions::parse("command=ls&stdout=true").unwrap();
        let err = check_pod(&pod, &target, &o).unwrap_err().to_string();
        assert_eq!(
            err,
            "cannot exec into a container in a completed pod; current phase is Succeeded"
        );
        let running = serde_json::json!({"spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running"}});
        assert_eq!(check_pod(&running, &target, &o).unwrap(), "c");
        let no_command = StreamOptions::parse("stdout=true").unwrap();
        assert!(check_pod(&running, &target, &no_command).is_err());
        let no_stream = StreamOptions::parse("command=ls").unwrap();
        assert!(check_pod(&running, &target, &no_stream).is_err());
    }
}
