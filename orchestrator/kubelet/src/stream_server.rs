//! The kubelet's streaming endpoints, shaped like Kubernetes':
//!
//! - `/exec/{namespace}/{pod}/{container}?command=…&input=1&output=1&error=1&tty=1`
//! - `/attach/{namespace}/{pod}/{container}?input=1&output=1&error=1&tty=1`
//! - `/portforward/{namespace}/{pod}[?port=80]`
//!
//! Each finds the running container (or ready sandbox) by its CRI labels, asks the runtime
//! (CRI Exec / Attach / PortForward) for the URL of its streaming server and proxies the
//! client's upgrade (SPDY/3.1 or WebSocket, whatever it asks) to that URL, byte for byte,
//! as the kubelet's redirect-less streaming proxy does.

use std::collections::HashMap;

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use bpfk_streaming::upgrade::{self, UpstreamAnswer};

use crate::cri::{proto, CriClient, LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE};

/// What the streaming endpoints need: the runtime.
#[derive(Debug, Clone)]
pub struct StreamState {
    pub cri: CriClient,
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Why a streaming request is refused: the status and message the client gets.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    message: String,
}

fn refuse(status: StatusCode, message: String) -> Refusal {
    Refusal { status, message }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        text(self.status, self.message)
    }
}

/// The options of a remote command request (Kubernetes' kubelet parameter names).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CommandOptions {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    pub ports: Vec<i32>,
}

fn truthy(v: &str) -> bool {
    matches!(v, "1" | "true" | "True")
}

impl CommandOptions {
    /// Parse a query string; a bad port is an error naming it.
    pub fn parse(query: &str) -> Result<CommandOptions, String> {
        let mut o = CommandOptions::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "command" => o.command.push(value.into_owned()),
                "input" | "stdin" => o.stdin = truthy(&value),
                "output" | "stdout" => o.stdout = truthy(&value),
                "error" | "stderr" => o.stderr = truthy(&value),
                "tty" => o.tty = truthy(&value),
                "port" | "ports" => {
                    for p in value.split(',').filter(|p| !p.is_empty()) {
                        let port = p
                            .parse::<u16>()
                            .ok()
                            .filter(|p| *p != 0)
                            .ok_or_else(|| format!("invalid port {p:?}: must be 1-65535"))?;
                        o.ports.push(i32::from(port));
                    }
                }
                _ => {}
            }
        }
        // with a TTY stdout and stderr are one stream (CRI forbids both)
        if o.tty {
            o.stderr = false;
        }
        Ok(o)
    }

    fn validate_streams(&self) -> Result<(), String> {
        if !(self.stdin || self.stdout || self.stderr) {
            return Err("you must specify at least one of stdin, stdout, stderr".into());
        }
        Ok(())
    }
}

/// The id of the newest running container `container` of pod `ns/pod`.
async fn running_container(
    cri: &CriClient,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<String, Refusal> {
    let filter = proto::ContainerFilter {
        state: Some(proto::ContainerStateValue {
            state: proto::ContainerState::ContainerRunning as i32,
        }),
        label_selector: HashMap::from([
            (LABEL_POD_NAMESPACE.to_string(), ns.to_string()),
            (LABEL_POD_NAME.to_string(), pod.to_string()),
            (LABEL_CONTAINER_NAME.to_string(), container.to_string()),
        ]),
        ..Default::default()
    };
    let found = cri
        .list_containers(Some(filter))
        .await
        .map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))?;
    found
        .into_iter()
        .max_by_key(|c| c.created_at)
        .map(|c| c.id)
        .ok_or_else(|| {
            refuse(
                StatusCode::NOT_FOUND,
                format!("container not found ({container:?}) in pod {ns}/{pod}\n"),
            )
        })
}

/// The id of the newest ready sandbox of pod `ns/pod`.
async fn ready_sandbox(cri: &CriClient, ns: &str, pod: &str) -> Result<String, Refusal> {
    let filter = proto::PodSandboxFilter {
        state: Some(proto::PodSandboxStateValue {
            state: proto::PodSandboxState::SandboxReady as i32,
        }),
        label_selector: HashMap::from([
            (LABEL_POD_NAMESPACE.to_string(), ns.to_string()),
            (LABEL_POD_NAME.to_string(), pod.to_string()),
        ]),
        ..Default::default()
    };
    let found = cri
        .list_pod_sandbox(Some(filter))
        .await
        .map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))?;
    found
        .into_iter()
        .max_by_key(|s| s.created_at)
        .map(|s| s.id)
        .ok_or_else(|| {
            refuse(
                StatusCode::NOT_FOUND,
                format!("pod {ns}/{pod} has no running sandbox on this node\n"),
            )
        })
}

/// Proxy the client's upgrade request to the runtime's streaming `url`.
async fn proxy_to_runtime(mut req: Request, url: &str) -> Response {
    let Some(client) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return text(StatusCode::BAD_REQUEST, "Upgrade request required\n".into());
    };
    let headers = upgrade::forwarded_request_headers(req.headers());
    let plain = upgrade::Transport::Plain;
    match upgrade::request_upgrade(url, req.method().clone(), headers, &plain).await {
        Ok(UpstreamAnswer::Switched { headers, io }) => {
            upgrade::splice_switched(client, &headers, io)
        }
        Ok(UpstreamAnswer::Refused {
            status,
            headers,
            body,
        }) => upgrade::relay_refusal(status, &headers, body),
        Err(e) => text(
            StatusCode::BAD_GATEWAY,
            format!("the runtime's streaming server: {e}\n"),
        ),
    }
}

fn options_of(req: &Request) -> Result<CommandOptions, Refusal> {
    CommandOptions::parse(req.uri().query().unwrap_or(""))
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("{e}\n")))
}

async fn exec(
    State(state): State<StreamState>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    req: Request,
) -> Response {
    let options = options_of(&req);
    let result = async {
        let o = options?;
        if o.command.is_empty() {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "you must specify at least 1 command\n".into(),
            ));
        }
        o.validate_streams()
            .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("{e}\n")))?;
        let id = running_container(&state.cri, &ns, &pod, &container).await?;
        let request = proto::ExecRequest {
            container_id: id,
            cmd: o.command,
            tty: o.tty,
            stdin: o.stdin,
            stdout: o.stdout,
            stderr: o.stderr,
        };
        cri_url(state.cri.exec(request).await)
    }
    .await;
    match result {
        Ok(url) => proxy_to_runtime(req, &url).await,
        Err(r) => r.into_response(),
    }
}

async fn attach(
    State(state): State<StreamState>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    req: Request,
) -> Response {
    let options = options_of(&req);
    let result = async {
        let o = options?;
        o.validate_streams()
            .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("{e}\n")))?;
        let id = running_container(&state.cri, &ns, &pod, &container).await?;
        let request = proto::AttachRequest {
            container_id: id,
            stdin: o.stdin,
            tty: o.tty,
            stdout: o.stdout,
            stderr: o.stderr,
        };
        cri_url(state.cri.attach(request).await)
    }
    .await;
    match result {
        Ok(url) => proxy_to_runtime(req, &url).await,
        Err(r) => r.into_response(),
    }
}

async fn port_forward(
    State(state): State<StreamState>,
    UrlPath((ns, pod)): UrlPath<(String, String)>,
    req: Request,
) -> Response {
    let options = options_of(&req);
    let result = async {
        let o = options?;
        let id = ready_sandbox(&state.cri, &ns, &pod).await?;
        cri_url(state.cri.port_forward(&id, o.ports).await)
    }
    .await;
    match result {
        Ok(url) => proxy_to_runtime(req, &url).await,
        Err(r) => r.into_response(),
    }
}

fn cri_url(answer: Result<String, crate::cri::CriError>) -> Result<String, Refusal> {
    answer.map_err(|e| {
        let status = if e.is_not_found() {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        refuse(status, format!("{e}\n"))
    })
}

/// The streaming routes over `state`.
pub fn router(state: StreamState) -> Router {
    Router::new()
        .route("/exec/{namespace}/{pod}/{container}", any(exec))
        .route("/attach/{namespace}/{pod}/{container}", any(attach))
        .route("/portforward/{namespace}/{pod}", any(port_forward))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_options_parse_like_the_kubelets() {
        let o = CommandOptions::parse(
            "command=sh&command=-c&command=echo%20hi%20%26%26%20exit%203&input=1&output=1&error=1",
        )
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "echo hi && exit 3"]);
        assert!(o.stdin && o.stdout && o.stderr && !o.tty);
        // with a TTY there is no separate stderr
        let tty = CommandOptions::parse("command=sh&output=1&error=1&tty=1").unwrap();
        assert!(tty.tty && tty.stdout && !tty.stderr);
        let ports = CommandOptions::parse("port=80&ports=8080,9090").unwrap();
        assert_eq!(ports.ports, [80, 8080, 9090]);
        let err = CommandOptions::parse("port=99999").unwrap_err();
        assert!(err.contains("99999"), "{err}");
        assert!(CommandOptions::parse("command=x")
            .unwrap()
            .validate_streams()
            .is_err());
    }
}
