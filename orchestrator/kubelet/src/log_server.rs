//! The node's container log endpoint, shaped like the kubelet's:
//! `GET /containerLogs/{namespace}/{pod}/{container}?tailLines=&timestamps=&previous=&limitBytes=`
//! answers the container's log as text (for the API server's pods/log). `follow` is not
//! supported yet (the current content is returned).
//!
//! The pod's UID is found from the log directory names (`<ns>_<pod>_<uid>`); when a pod of
//! that name was recreated, the most recently written directory wins.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use crate::logs::{self, LogError, LogOptions};

/// Query parameters of a log request (the pods/log names).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    pub tail_lines: Option<usize>,
    pub timestamps: Option<bool>,
    pub previous: Option<bool>,
    pub limit_bytes: Option<usize>,
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

async fn container_logs(
    State(root): State<Arc<PathBuf>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    let Some(uid) = find_pod_uid(&root, &ns, &pod) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no logs for pod {ns}/{pod} on this node\n"),
        );
    };
    let root = root.clone();
    let previous = q.previous.unwrap_or(false);
    let read = tokio::task::spawn_blocking(move || {
        logs::container_lines(&root, &ns, &pod, &uid, &container, previous)
    })
    .await;
    let opts = LogOptions {
        tail_lines: q.tail_lines,
        timestamps: q.timestamps.unwrap_or(false),
        limit_bytes: q.limit_bytes,
    };
    match read {
        Ok(Ok(lines)) => text(StatusCode::OK, logs::render(&lines, &opts)),
        Ok(Err(e @ LogError::NoLog { .. })) => text(StatusCode::NOT_FOUND, format!("{e}\n")),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading logs: {e}\n"),
        ),
    }
}

/// The log endpoint's routes over the pod log root.
pub fn router(pod_log_dir: PathBuf) -> Router {
    Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .with_state(Arc::new(pod_log_dir))
}

/// Serve the log endpoint on `listener` until the future is dropped or the server fails.
pub async fn serve(listener: tokio::net::TcpListener, pod_log_dir: PathBuf) -> std::io::Result<()> {
    axum::serve(listener, router(pod_log_dir)).await
}

#[cfg(test)]
mod tests {
    use super::*;

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
