//! WATCH: a stream of newline-delimited JSON events served from the watch cache.

use std::sync::Arc;
use std::time::Duration;

use bpfk_apimachinery::registry::ResourceInfo;
use bpfk_store::{Event, StoreError};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::read::Filter;
use super::rendered::Rendered;
use crate::error::{ApiError, Result};
use crate::query::{Query, Representation};
use crate::state::AppState;

/// How often an idle watch with bookmarks enabled gets a BOOKMARK.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);
/// Watches without `timeoutSeconds` end after this long (clients then resume).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// One watch event line.
fn line(kind: &str, object: Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// The ERROR event that tells a client its resourceVersion is too old (it must relist).
fn expired(message: String) -> Bytes {
    line("ERROR", ApiError::Gone { message }.status())
}

struct Watcher {
    res: &'static ResourceInfo,
    filter: Filter,
    repr: Representation,
    q: Query,
    tx: mpsc::Sender<Bytes>,
    /// Revision of the newest event this watcher has been given (matched or not).
    revision: i64,
}

impl Watcher {
    fn render(&self, obj: Value) -> Value {
        match self.repr {
            Representation::Object => obj,
            Representation::Table => {
                super::read::table(self.res, std::slice::from_ref(&obj), &self.q, None, None)
            }
            Representation::Metadata => super::read::partial_metadata(&obj),
        }
    }

    async fn send(&self, kind: &str, rendered: &Rendered) -> bool {
        let line = match self.repr {
            Representation::Object => rendered.line(kind),
            Representation::Table => line(kind, self.render(rendered.object.clone())),
            Representation::Metadata => line(kind, super::read::partial_metadata(&rendered.object)),
        };
        self.tx.send(line).await.is_ok()
    }

    async fn bookmark(&self, initial_end: bool) -> bool {
        let mut meta = json!({"resourceVersion": self.revision.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let (kind, api_version) = match self.repr {
            Representation::Metadata => ("PartialObjectMetadata".into(), "meta.k8s.io/v1".into()),
            _ => (self.res.kind.to_string(), self.res.api_version()),
        };
        let obj = json!({"kind": kind, "apiVersion": api_version, "metadata": meta});
        self.tx.send(line("BOOKMARK", obj)).await.is_ok()
    }

    /// Forward one store event (`render` gives its decoded and encoded object); false when
    /// the client is gone.
    async fn forward(
        &mut self,
        event: &Event,
        render: impl FnOnce() -> Option<Arc<Rendered>>,
    ) -> bool {
        self.revision = self.revision.max(event.revision());
        if !self.filter.key_in_scope(event.key()) {
            return true;
        }
        let Some(r) = render() else {
            return true;
        };
        let now = self.filter.matches(&r.object);
        let kind = match event {
            Event::Added { .. } if now => "ADDED",
            Event::Deleted { .. } if now => "DELETED",
            Event::Added { .. } | Event::Deleted { .. } => return true,
            Event::Modified { .. } => {
                let before = r
                    .prev_object()
                    .map(|p| self.filter.matches(p))
                    .unwrap_or(now);
                match (before, now) {
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    (false, false) => return true,
                }
            }
        };
        self.send(kind, &r).await
    }
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// The current state as ADDED events, then what follows; `end_bookmark`: a BOOKMARK
    /// annotated `k8s.io/initial-events-end` after the state (watch-list).
    Snapshot { end_bookmark: bool },
    /// The events after a revision.
    After(i64),
    /// The events from now on, without the current state.
    Now,
}

/// Decide where a watch starts, as Kubernetes does for `resourceVersion` and
/// `sendInitialEvents`, waiting for the cache to be fresh enough first (504 when it does not
/// get there).
async fn plan_start(state: &AppState, res: &'static ResourceInfo, q: &Query) -> Result<Start> {
    super::resource_version::check_options(q, true)?;
    let rv = super::resource_version::parse(q.resource_version.as_deref())?;
    let wait = |rev| super::resource_version::wait_fresh(state, res, rev);
    Ok(match (q.send_initial_events, rv) {
        // watch-list with a consistent read: the state at least as new as etcd's now
        (Some(true), None) => {
            wait(state.store.current_revision().await?).await?;
            Start::Snapshot { end_bookmark: true }
        }
        (Some(true), Some(rev)) => {
            if rev > 0 {
                wait(rev).await?;
            }
            Start::Snapshot { end_bookmark: true }
        }
        (Some(false), None | Some(0)) => Start::Now,
        // the legacy meaning of "" and "0": the current state first, no bookmark
        (None, None | Some(0)) => Start::Snapshot {
            end_bookmark: false,
        },
        (_, Some(rev)) => {
            wait(rev).await?;
            Start::After(rev)
        }
    })
}

/// Start a watch; the returned channel yields the response body's chunks.
pub async fn start(
    state: Arc<AppState>,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    q: Query,
    repr: Representation,
) -> Result<mpsc::Receiver<Bytes>> {
    let filter = Filter::from_query(res, ns, &q)?;
    let cache = state.ready_cache(res).await?.clone();
    let start = plan_start(&state, res, &q).await?;
    let (tx, rx) = mpsc::channel(256);
    let timeout = q
        .timeout_seconds
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let bookmarks = q.allow_watch_bookmarks;
    let mut watcher = Watcher {
        res,
        filter,
        repr,
        q,
        tx,
        revision: 0,
    };

    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let start_rev = match start {
            Start::After(rev) => rev,
            Start::Now => cache.revision(),
            Start::Snapshot { end_bookmark } => {
                let (items, revision) = cache.list().await;
                for kv in items {
                    let event = Event::Added { kv };
                    if !watcher
                        .forward(&event, || Rendered::of(res, &event).map(Arc::new))
                        .await
                    {
                        return;
                    }
                }
                watcher.revision = revision;
                if end_bookmark && !watcher.bookmark(true).await {
                    return;
                }
                revision
            }
        };
        watcher.revision = watcher.revision.max(start_rev);
        let mut events = match cache.watch(Some(start_rev)).await {
            Ok(stream) => stream,
            Err(StoreError::Compacted {
                requested,
                compacted,
            }) => {
                let _ = watcher
                    .tx
                    .send(expired(format!(
                        "too old resource version: {requested} ({compacted})"
                    )))
                    .await;
                return;
            }
            Err(e) => {
                let _ = watcher
                    .tx
                    .send(line("ERROR", ApiError::from(e).status()))
                    .await;
                return;
            }
        };
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = ticker.tick(), if bookmarks => {
                    if let Some(rev) = events.bookmark_revision() {
                        watcher.revision = watcher.revision.max(rev);
                        if !watcher.bookmark(false).await {
                            return;
                        }
                    }
                }
                next = events.next() => match next {
                    None => return,
                    Some(Ok(event)) => {
                        if !watcher.forward(&event, || state.renders.get(res, &event)).await {
                            return;
                        }
                    }
                    Some(Err(StoreError::Compacted { requested, compacted })) => {
                        let _ = watcher.tx.send(expired(format!("too old resource version: {requested} ({compacted})"))).await;
                        return;
                    }
                    Some(Err(e)) => {
                        let _ = watcher.tx.send(line("ERROR", ApiError::from(e).status())).await;
                        return;
                    }
                }
            }
        }
    });
    Ok(rx)
}
