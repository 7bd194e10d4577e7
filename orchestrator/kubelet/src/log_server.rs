//! The node's container log endpoint, shaped like the kubelet's:
//! `GET /containerLogs/{namespace}/{pod}/{container}?tailLines=&timestamps=&previous=&limitBytes=&sinceSeconds=&sinceTime=&follow=`
//! answers the container's log as text (for the API server's pods/log); with `follow` the
//! answer streams new lines until the container stops running or the client leaves
//! ([`crate::log_stream`]).
//!
//! The pod's UID is found from the log directory names (`<ns>_<pod>_<uid>`); when a pod of
//! that name was recreated, the most recently written directory wins.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use crate::cri::CriClient;
use crate::log_stream::{self, Source};
use crate::logs::{self, LogError, LogOptions};

/// Query parameters of a log request (the pods/log names).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    pub tail_lines: Option<usize>,
    pub timestamps: Option<bool>,
    pub previous: Option<bool>,
    pub limit_bytes: Option<usize>,
    pub follow: Option<bool>,
    pub since_seconds: Option<i64>,
    /// RFC 3339.
    pub since_time: Option<String>,
}

impl LogQuery {
    /// The earliest line time asked for (`sinceSeconds` before now, or `sinceTime`).
    fn since(&self, now: Timestamp) -> Result<Option<Timestamp>, String> {
        if let Some(s) = self.since_seconds {
            if s <= 0 {
                return Err("sinceSeconds: Invalid value: must be greater than 0".into());
            }
            return Ok(now.checked_sub(SignedDuration::from_secs(s)).ok());
        }
        match self.since_time.as_deref() {
            Some(t) => t
                .parse()
                .map(Some)
                .map_err(|e| format!("sinceTime: Invalid value {t:?}: {e}")),
            None => Ok(None),
        }
    }
}

/// What the endpoint reads from: the pod log root and, to tell when a followed container
/// ended, the runtime.
#[derive(Debug, Clone)]
pub struct LogState {
    pub root: PathBuf,
    pub cri: Option<CriClient>,
}

/// The UID of the newest log directory of pod `ns/pod` under `root`.
pub fn find_pod_uid(root: &Path, ns: &str, pod: &str) -> Option<String> {
    let prefix = format!("{ns}_{pod}_");
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let uid = name.strip_prefix(&prefix)?.to_string();
            // a pod name has no '_' so the rest is the UID only when it has none either
            if uid.contains('_') {
                return None;
            }
            let modified = e.metadata().and_then(|m| m.modified()).ok()?;
            Some((modified, uid))
        })
        .max()
        .map(|(_, uid)| uid)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The log file of the asked attempt, its lines and its size when read.
fn read_attempt(
    root: &Path,
    (ns, pod, uid, container): (&str, &str, &str, &str),
    previous: bool,
) -> Result<(Source, Vec<logs::LogLine>, u64), LogError> {
    let (path, attempt) = logs::attempt_file(root, ns, pod, uid, container, previous)?;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let lines = logs::read_file(&path)?;
    let source = Source {
        path,
        pod_uid: uid.into(),
        container: container.into(),
        attempt,
    };
    Ok((source, lines, size))
}

async fn container_logs(
    State(state): State<Arc<LogState>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    let since = match q.since(Timestamp::now()) {
        Ok(s) => s,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let Some(uid) = find_pod_uid(&state.root, &ns, &pod) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no logs for pod {ns}/{pod} on this node\n"),
        );
    };
    let root = state.root.clone();
    let previous = q.previous.unwrap_or(false);
    let read = tokio::task::spawn_blocking(move || {
        read_attempt(&root, (&ns, &pod, &uid, &container), previous)
    })
    .await;
    let opts = LogOptions {
        tail_lines: q.tail_lines,
        timestamps: q.timestamps.unwrap_or(false),
        limit_bytes: q.limit_bytes,
    };
    let (source, lines, size) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(e @ LogError::NoLog { .. })) => {
            return text(StatusCode::NOT_FOUND, format!("{e}\n"))
        }
        Ok(Err(e)) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading logs: {e}\n"),
            )
        }
    };
    let first = logs::render(&log_stream::since(lines, since), &opts);
    if !q.follow.unwrap_or(false) || previous {
        return text(StatusCode::OK, first);
    }
    let stream = log_stream::follow(first, source, size, opts, state.cri.clone());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// The log endpoint's routes over `state`.
pub fn router_with(state: LogState) -> Router {
    Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .with_state(Arc::new(state))
}

/// The log endpoint's routes over the pod log root (a followed log then ends only when the
/// client leaves: there is no runtime to ask whether the container still runs).
pub fn router(pod_log_dir: PathBuf) -> Router {
    router_with(LogState {
        root: pod_log_dir,
        cri: None,
    })
}

/// How the endpoint serves: its TLS (client certificates required) and who decides what a
/// client may do.
#[derive(Clone)]
pub struct EndpointSecurity {
    pub tls: Arc<rustls::ServerConfig>,
    pub authorizer: Arc<crate::endpoint_auth::EndpointAuthorizer>,
}

/// Serve `app` on `listener` with `security`, until the future is dropped or it fails.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    security: EndpointSecurity,
) -> std::io::Result<()> {
    let app = app.layer(axum::middleware::from_fn_with_state(
        security.authorizer,
        crate::endpoint_auth::authorize,
    ));
    bpfk_streaming::tls_server::serve(listener, security.tls, app, crate::endpoint_auth::identify)
        .await
}

/// Serve the node's endpoint for `config` with `security`: container logs (its pod log
/// root; its runtime tells when a followed container ended) and the streaming endpoints
/// ([`crate::stream_server`]: exec, attach, portforward through the runtime).
pub async fn serve_node(
    listener: tokio::net::TcpListener,
    config: &crate::Config,
    security: EndpointSecurity,
) -> std::io::Result<()> {
    let cri = CriClient::connect_lazy(&config.runtime_socket).map_err(std::io::Error::other)?;
    let state = LogState {
        root: config.pod_log_dir.clone(),
        cri: Some(cri.clone()),
    };
    let streams = crate::stream_server::router(crate::stream_server::StreamState { cri });
    serve_tls(listener, router_with(state).merge(streams), security).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_seconds_or_time() {
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let q = LogQuery {
            since_seconds: Some(30),
            ..Default::default()
        };
        assert_eq!(
            q.since(now).unwrap(),
            Some("2026-01-01T00:00:30Z".parse().unwrap())
        );
        let q = LogQuery {
            since_time: Some("2026-01-01T00:00:10Z".into()),
            ..Default::default()
        };
        assert_eq!(
            q.since(now).unwrap(),
            Some("2026-01-01T00:00:10Z".parse().unwrap())
        );
        let bad = LogQuery {
            since_seconds: Some(0),
            ..Default::default()
        };
        assert!(bad.since(now).unwrap_err().starts_with("sinceSeconds"));
        let bad = LogQuery {
            since_time: Some("yesterday".into()),
            ..Default::default()
        };
        assert!(bad.since(now).unwrap_err().starts_with("sinceTime"));
        assert_eq!(LogQuery::default().since(now).unwrap(), None);
    }

    #[test]
    fn finds_the_newest_uid_of_a_pod() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("ns_web_old")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::create_dir(root.path().join("ns_web_new")).unwrap();
        std::fs::create_dir(root.path().join("ns_web-2_other")).unwrap();
        std::fs::create_dir(root.path().join("ns_web_x_y")).unwrap();
        assert_eq!(
            find_pod_uid(root.path(), "ns", "web").as_deref(),
            Some("new")
        );
        assert_eq!(
            find_pod_uid(root.path(), "ns", "web-2").as_deref(),
            Some("other")
        );
        assert_eq!(find_pod_uid(root.path(), "ns", "nope"), None);
    }
}
