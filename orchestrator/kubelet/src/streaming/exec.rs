//! `/exec/{namespace}/{pod}/{container}`: runs the command in the pod's running container
//! through CRI ExecSync and answers over the WebSocket channel protocol.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::channel::{self, PROTOCOLS};
use crate::cri::{proto, CriClient, LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE};

/// How long an exec may run (ExecSync has to be bounded).
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(600);

/// What an exec request asks for (the pods/exec query parameters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

fn flag(v: &str) -> bool {
    matches!(v, "1" | "true" | "True")
}

/// `s` percent-decoded (`+` is a space, as in forms).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl ExecRequest {
    /// From the raw query (`command` repeats, in order).
    pub fn parse(query: &str) -> Result<ExecRequest, String> {
        let mut r = ExecRequest::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = decode(v);
            match k {
                "command" => r.command.push(v),
                "input" | "stdin" => r.stdin = flag(&v),
                "output" | "stdout" => r.stdout = flag(&v),
                "error" | "stderr" => r.stderr = flag(&v),
                "tty" => r.tty = flag(&v),
                _ => {}
            }
        }
        if r.command.is_empty() {
            return Err("command: Required value: you must specify at least 1 command".into());
        }
        if r.stdin || r.tty {
            return Err("exec with stdin or a TTY is not supported by this kubelet yet (only non-interactive commands through CRI ExecSync)".into());
        }
        Ok(r)
    }
}

/// The id of the running container `container` of pod `ns/pod`.
async fn running_container(cri: &CriClient, ns: &str, pod: &str, container: &str) -> Result<String, String> {
    let filter = proto::ContainerFilter {
        label_selector: [
            (LABEL_POD_NAMESPACE.to_string(), ns.to_string()),
            (LABEL_POD_NAME.to_string(), pod.to_string()),
            (LABEL_CONTAINER_NAME.to_string(), container.to_string()),
        ]
        .into(),
        ..Default::default()
    };
    let list = cri.list_containers(Some(filter)).await.map_err(|e| e.to_string())?;
    list.into_iter()
        .find(|c| c.state == proto::ContainerState::ContainerRunning as i32)
        .map(|c| c.id)
        .ok_or_else(|| format!("container {container} of pod {ns}/{pod} is not running on this node"))
}

async fn exec(
    State(cri): State<CriClient>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let request = match ExecRequest::parse(query.as_deref().unwrap_or_default()) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let id = match running_container(&cri, &ns, &pod, &container).await {
        Ok(id) => id,
        Err(e) => return (StatusCode::NOT_FOUND, e).into_response(),
    };
    ws.protocols(PROTOCOLS)
        .on_upgrade(move |socket| run(socket, cri, id, request))
}

/// Runs the command and sends its output and final Status.
async fn run(mut socket: WebSocket, cri: CriClient, id: String, r: ExecRequest) {
    let status = match cri.exec_sync(&id, r.command.clone(), EXEC_TIMEOUT).await {
        Ok(out) => {
            let sends = [(r.stdout, channel::STDOUT, out.stdout), (r.stderr, channel::STDERR, out.stderr)];
            for (wanted, ch, data) in sends {
                if wanted && !data.is_empty() && socket.send(Message::Binary(channel::frame(ch, &data).into())).await.is_err() {
                    return;
                }
            }
            channel::exit_status(&r.command, out.exit_code)
        }
        Err(e) => channel::failure(&format!("exec in container {id}: {e}")),
    };
    let text = serde_json::to_vec(&status).unwrap_or_default();
    // the client may be gone already; nothing to tell it then
    let _ = socket.send(Message::Binary(channel::frame(channel::ERROR, &text).into())).await;
    let _ = socket.send(Message::Close(None)).await;
}

/// The streaming routes over the runtime `cri`.
pub fn router(cri: CriClient) -> Router {
    Router::new()
        .route("/exec/{namespace}/{pod}/{container}", get(exec).post(exec))
        .with_state(cri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_requests_from_the_query() {
        let r = ExecRequest::parse("command=sh&command=-c&command=echo+hi%20there&stdout=true&stderr=1").unwrap();
        assert_eq!(r.command, ["sh", "-c", "echo hi there"]);
        assert!(r.stdout && r.stderr && !r.stdin && !r.tty);
        assert!(ExecRequest::parse("stdout=1").unwrap_err().starts_with("command: Required"));
        assert!(ExecRequest::parse("command=sh&stdin=true").unwrap_err().contains("stdin"));
        assert_eq!(decode("100%25"), "100%");
        assert_eq!(decode("bad%zz"), "bad%zz");
    }
}
