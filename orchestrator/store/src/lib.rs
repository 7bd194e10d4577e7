//! Object storage for the API server.
//!
//! Keys are `/registry/<resource>/<namespace>/<name>` (cluster-scoped objects:
//! `/registry/<resource>/<name>`); values are opaque bytes (the API server stores JSON).
//! A value's resourceVersion is its etcd `mod_revision`.
//!
//! * [`Store`] is the backend trait; [`etcd::EtcdStore`] is the etcd implementation.
//! * [`watch_cache::WatchCache`] keeps one backend watch per resource prefix in memory and
//!   fans it out to any number of client watches.

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use std::time::Duration;

pub mod etcd;
pub mod leases;
pub mod watch_cache;

/// An etcd revision (Kubernetes resourceVersion).
pub type Revision = i64;

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the last write of this key (the object's resourceVersion).
    pub mod_revision: Revision,
    pub create_revision: Revision,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Key created; `kv.mod_revision` is the event's revision.
    Added { kv: KeyValue },
    /// Key updated; `prev` is the value before the write when known.
    Modified {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// Key deleted. `kv` holds the last value with `mod_revision` set to the revision
    /// of the delete (as Kubernetes reports the resourceVersion of a deleted object).
    Deleted { kv: KeyValue },
}

impl Event {
    pub fn revision(&self) -> Revision {
        match self {
            Event::Added { kv } | Event::Modified { kv, .. } | Event::Deleted { kv } => {
                kv.mod_revision
            }
        }
    }
    pub fn key(&self) -> &str {
        match self {
            Event::Added { kv } | Event::Modified { kv, .. } | Event::Deleted { kv } => &kv.key,
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    /// Precondition on mod_revision failed.
    #[error("conflict on {key}: expected revision {expected}, current {current}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Revision,
    },
    /// The requested revision has been compacted away (HTTP 410 Gone).
    #[error("revision {requested} has been compacted (oldest available {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// Backend unreachable or timing out (HTTP 503).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A write the backend did not confirm in time: it may or may not have been applied
    /// (HTTP 504 Timeout; the caller must read back before assuming either outcome).
    #[error("storage timeout: {0}")]
    Timeout(String),
    #[error("storage error: {0}")]
    Internal(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Options for a (possibly paged) list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Return keys strictly greater than this key (continue token support).
    pub start_after: Option<String>,
    /// At most this many items (None or 0: no limit).
    pub limit: Option<i64>,
    /// Read at this revision (consistent paging); None = latest.
    pub revision: Option<Revision>,
}

#[derive(Debug, Clone, Default)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The revision the list was read at (collection resourceVersion).
    pub revision: Revision,
    /// More items remain after the last returned key.
    pub more: bool,
    /// Number of items remaining after this page, when known.
    pub remaining: Option<i64>,
}

pub type EventStream = BoxStream<'static, Result<Event>>;

/// An item of [`Store::watch_with_progress`]: a change, or a progress mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    Event(Event),
    /// Every change under the prefix up to and including this revision has been delivered.
    Progress(Revision),
}

pub type WatchItemStream = BoxStream<'static, Result<WatchItem>>;

/// A cheap fingerprint of a prefix, read at one revision (see [`Store::summary`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixSummary {
    /// The revision the summary was read at.
    pub revision: Revision,
    /// Number of keys under the prefix.
    pub count: i64,
    /// Highest `mod_revision` among those keys (0 when there are none).
    pub max_mod_revision: Revision,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// Create; fails with `AlreadyExists` when the key exists. Returns the new revision.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        self.create_with_ttl(key, value, None).await
    }
    /// Create, the key deleted by the backend once `ttl` has passed (an etcd lease, as
    /// kube-apiserver keeps Events); `None` = kept until deleted.
    async fn create_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<Revision>;
    /// Replace an existing key. `expected`: required current mod_revision (else `Conflict`).
    /// Fails with `NotFound` when the key does not exist.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<Revision> {
        self.update_with_ttl(key, value, expected, None).await
    }
    /// Replace, the key then expiring `ttl` after this write (`None` = kept until deleted).
    async fn update_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
        ttl: Option<Duration>,
    ) -> Result<Revision>;
    /// Delete; returns the deleted value with `mod_revision` = revision of the delete.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;
    /// List keys under `prefix` (which ends in '/').
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;
    /// Stream every change under `prefix` with revision > `after`.
    /// `Compacted` (as the first item or as the call's error) when `after + 1` was compacted.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream>;
    /// The store's current revision.
    async fn current_revision(&self) -> Result<Revision>;
    /// Compact history before `revision`.
    async fn compact(&self, revision: Revision) -> Result<()>;
    /// Ok when the backend answers.
    async fn health(&self) -> Result<()>;

    /// Like [`watch`](Store::watch), and also yields [`WatchItem::Progress`] when the backend
    /// reports that the watch has delivered everything up to a revision (etcd progress
    /// notifications). The default implementation never reports progress.
    async fn watch_with_progress(&self, prefix: &str, after: Revision) -> Result<WatchItemStream> {
        let events = self.watch(prefix, after).await?;
        Ok(events.map(|item| item.map(WatchItem::Event)).boxed())
    }

    /// Count and highest mod_revision of the keys under `prefix`, read at the latest revision
    /// (a quorum read). The default implementation lists the whole prefix.
    async fn summary(&self, prefix: &str) -> Result<PrefixSummary> {
        let list = self.list(prefix, ListOptions::default()).await?;
        Ok(PrefixSummary {
            revision: list.revision,
            count: list.items.len() as i64,
            max_mod_revision: list
                .items
                .iter()
                .map(|kv| kv.mod_revision)
                .max()
                .unwrap_or(0),
        })
    }
}
