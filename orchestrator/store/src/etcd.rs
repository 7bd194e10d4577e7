//! [`Store`] on a real etcd server (v3 API over gRPC, via `etcd-client`).
//!
//! * Writes are transactions comparing `create_revision` (create) or `mod_revision`
//!   (update/delete preconditions), so a stale resourceVersion never overwrites anything.
//! * The client connects lazily, so a server can start while etcd is down; every call is
//!   bounded by [`EtcdConfig::request_timeout`] and an unreachable etcd yields
//!   [`StoreError::Unavailable`] instead of a hang.
//! * Works with etcd 3.4 and later (only v3 KV/watch calls that 3.4 serves are used).

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions,
    EventType, GetOptions, Identity, KvClient, LeaseClient, PutOptions, SortOrder, SortTarget,
    TlsOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchClient, WatchOptions, WatchResponse,
    WatchStream,
};
use futures::StreamExt;

use crate::leases::{grant_seconds, Leases};
use crate::{
    Event, EventStream, KeyValue, ListOptions, ListResult, PrefixSummary, Result, Revision, Store,
    StoreError, WatchItem, WatchItemStream,
};

/// Largest gRPC response accepted (a list of many objects can be tens of megabytes).
const MAX_RESPONSE_BYTES: usize = 512 * 1024 * 1024;

/// Connection settings for [`EtcdStore`].
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// Bound on every request (including waiting for a connection).
    pub request_timeout: Duration,
    /// Bound on establishing a TCP connection to one endpoint.
    pub connect_timeout: Duration,
    /// HTTP/2 keep-alive ping interval; a dead connection is noticed after
    /// `keepalive_interval + keepalive_timeout`.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// TLS to etcd (`https://` endpoints): the CA that signed etcd's serving certificate
    /// and, when etcd asks for one (`--client-cert-auth`), the client certificate.
    pub tls: Option<EtcdTls>,
}

/// PEM material for TLS to etcd (kube-apiserver's `--etcd-cafile`, `--etcd-certfile`,
/// `--etcd-keyfile`).
#[derive(Clone)]
pub struct EtcdTls {
    pub ca_pem: Vec<u8>,
    /// Client certificate and its key, both or neither.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for EtcdTls {
    // never the key
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("client_certificate", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// The etcd backend.
#[derive(Clone)]
pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
    /// Leases shared by keys that expire (Events).
    leases: std::sync::Arc<std::sync::Mutex<Leases>>,
    config: EtcdConfig,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("config", &self.config)
            .finish()
    }
}

/// Endpoints are URLs (or host:port, taken as http); all https when TLS is configured, none
/// https without it.
fn check_endpoints(endpoints: &[String], tls: bool) -> Result<()> {
    for endpoint in endpoints {
        let scheme = match endpoint.split_once("://") {
            Some((scheme, _)) => scheme,
            None => "http",
        };
        if !matches!(scheme, "http" | "https") || endpoint.is_empty() {
            return Err(StoreError::Internal(format!(
                "etcd endpoint {endpoint:?}: expected a URL like https://127.0.0.1:2379"
            )));
        }
        if (scheme == "https") != tls {
            let why = if tls {
                "TLS is configured (--etcd-cafile), so every endpoint must be https://"
            } else {
                "an https:// endpoint needs the CA that signed etcd's certificate (--etcd-cafile)"
            };
            return Err(StoreError::Internal(format!(
                "etcd endpoint {endpoint:?}: {why}"
            )));
        }
    }
    Ok(())
}

fn tls_options(tls: &EtcdTls) -> TlsOptions {
    let options = TlsOptions::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
    match &tls.client {
        Some((cert, key)) => options.identity(Identity::from_pem(cert, key)),
        None => options,
    }
}

impl EtcdStore {
    /// Connect with default settings. Does not need etcd to be up: the connection is made
    /// on first use.
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        Self::connect_with(endpoints, EtcdConfig::default()).await
    }

    /// Connect with explicit settings.
    pub async fn connect_with(endpoints: &[String], config: EtcdConfig) -> Result<Self> {
        if endpoints.is_empty() {
            return Err(StoreError::Internal("no etcd endpoints given".into()));
        }
        check_endpoints(endpoints, config.tls.is_some())?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_timeout(config.request_timeout)
            .with_keep_alive(config.keepalive_interval, config.keepalive_timeout)
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let Some(tls) = &config.tls {
            options = options.with_tls(tls_options(tls));
        }
        let client = bounded(config.request_timeout, "connect", async {
            Client::connect(endpoints, Some(options))
                .await
                .map_err(map_error)
        })
        .await?;
        Ok(EtcdStore {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            lease: client.lease_client(),
            leases: Default::default(),
            config,
        })
    }

    async fn txn(&self, what: &str, txn: Txn) -> Result<TxnResponse> {
        let mut kv = self.kv.clone();
        let write = WRITES.contains(&what);
        let op = what.to_string();
        bounded(self.config.request_timeout, what, async move {
            kv.txn(txn).await.map_err(|e| {
                if write && outcome_unknown(&e) {
                    StoreError::Timeout(format!(
                        "etcd did not confirm {op} ({e}); the write may still be applied"
                    ))
                } else {
                    map_error(e)
                }
            })
        })
        .await
    }

    async fn range(
        &self,
        what: &str,
        key: Vec<u8>,
        options: GetOptions,
    ) -> Result<etcd_client::GetResponse> {
        let mut kv = self.kv.clone();
        bounded(self.config.request_timeout, what, async move {
            kv.get(key, Some(options)).await.map_err(map_error)
        })
        .await
    }

    /// Open a watch from `after + 1` and wait for etcd to confirm it.
    async fn open_watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let options = WatchOptions::new()
            .with_range(prefix_end(prefix.as_bytes()))
            .with_start_revision(after + 1)
            .with_prev_key()
            .with_progress_notify();
        let mut client = self.watch.clone();
        let key = prefix.as_bytes().to_vec();
        bounded(self.config.request_timeout, "watch", async move {
            let mut stream = client.watch(key, Some(options)).await.map_err(map_error)?;
            match stream.message().await.map_err(map_error)? {
                Some(resp) if resp.created() && !resp.canceled() => Ok(stream),
                Some(resp) => Err(watch_end_error(&resp, after)),
                None => Err(StoreError::Unavailable(
                    "etcd closed the watch stream before confirming it".into(),
                )),
            }
        })
        .await
    }
}

/// Operations whose outcome is unknown when they time out.
const WRITES: [&str; 4] = ["create", "update", "delete", "compact"];

impl EtcdStore {
    /// The revision etcd has compacted up to, for error messages (0 when it cannot be
    /// learned quickly). etcd reports it to a watch that starts before it; this is only
    /// called after etcd said a revision was compacted, so the watch delivers no events.
    async fn compaction_point(&self, prefix: &str) -> Revision {
        let learn = async {
            let mut stream = match self.open_watch(prefix, 0).await {
                Err(StoreError::Compacted { compacted, .. }) => return compacted,
                Err(_) => return 0,
                Ok(stream) => stream,
            };
            match stream.message().await {
                Ok(Some(resp)) => resp.compact_revision(),
                _ => 0,
            }
        };
        tokio::time::timeout(Duration::from_secs(1), learn)
            .await
            .unwrap_or(0)
    }
}

impl EtcdStore {
    /// The lease a key expiring `ttl` from now is attached to: a shared one (see
    /// [`crate::leases`]), granted when none fits.
    async fn lease_for(&self, ttl: Duration) -> Result<i64> {
        let now = std::time::Instant::now();
        if let Some(id) = self.lock_leases().reusable(ttl, now) {
            return Ok(id);
        }
        let mut lease = self.lease.clone();
        let seconds = grant_seconds(ttl);
        let granted = bounded(self.config.request_timeout, "lease grant", async move {
            lease.grant(seconds, None).await.map_err(map_error)
        })
        .await?;
        self.lock_leases().granted(ttl, granted.id(), now);
        Ok(granted.id())
    }

    fn lock_leases(&self) -> std::sync::MutexGuard<'_, Leases> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run the put transaction `build` makes with the put options of a key expiring `ttl`
    /// from now; when etcd no longer knows the shared lease (etcd was restored, say),
    /// forget it and try once more with a new one.
    async fn put_txn(
        &self,
        what: &str,
        ttl: Option<Duration>,
        build: impl Fn(Option<PutOptions>) -> Txn,
    ) -> Result<TxnResponse> {
        let Some(ttl) = ttl else {
            return self.txn(what, build(None)).await;
        };
        let id = self.lease_for(ttl).await?;
        match self
            .txn(what, build(Some(PutOptions::new().with_lease(id))))
            .await
        {
            Err(StoreError::Internal(m)) if m.contains("lease not found") => {
                self.lock_leases().forget(id);
                let id = self.lease_for(ttl).await?;
                self.txn(what, build(Some(PutOptions::new().with_lease(id))))
                    .await
            }
            other => other,
        }
    }
}

/// Await `fut` at most `limit`; past it the backend counts as unavailable.
async fn bounded<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result,
        Err(_) if WRITES.contains(&what) => Err(StoreError::Timeout(format!(
            "etcd did not answer {what} within {limit:?}; the write may still be applied"
        ))),
        Err(_) => Err(StoreError::Unavailable(format!(
            "etcd did not answer {what} within {limit:?}"
        ))),
    }
}

/// Translate an etcd client error. Compaction is recognised by the callers that know the
/// requested revision (see [`is_compacted`]).
fn map_error(error: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    use tonic::Code;
    match &error {
        E::GRpcStatus(status) => match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::ResourceExhausted => StoreError::Unavailable(status.message().to_string()),
            // Connection-level failures surface as Unknown from the transport.
            Code::Unknown => StoreError::Unavailable(status.message().to_string()),
            _ => StoreError::Internal(format!("etcd: {}", status.message())),
        },
        E::TransportError(_) | E::IoError(_) | E::EndpointError(_) | E::WatchError(_) => {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::Internal(error.to_string()),
    }
}

/// Whether a request may have reached etcd and been applied although it failed: it timed
/// out (tonic reports its own deadline as Cancelled "Timeout expired") or was cut off after
/// being sent. A refused connection (Unavailable) never carried the request.
fn outcome_unknown(error: &etcd_client::Error) -> bool {
    use tonic::Code;
    matches!(error, etcd_client::Error::GRpcStatus(status)
        if matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled))
}

fn is_compacted(error: &StoreError) -> bool {
    matches!(error, StoreError::Internal(m) if m.contains("required revision has been compacted"))
}

fn is_future_revision(error: &StoreError) -> bool {
    matches!(error, StoreError::Internal(m) if m.contains("required revision is a future revision"))
}

/// The first key after every key that starts with `prefix` (etcd's range end for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: the range extends to the end of the keyspace.
    vec![0]
}

fn convert(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        mod_revision: kv.mod_revision(),
        create_revision: kv.create_revision(),
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| StoreError::Internal("etcd response without header".into()))
}

/// The value read by the `or_else` branch of a failed precondition txn, if any.
fn txn_read_value(resp: &TxnResponse) -> Option<KeyValue> {
    resp.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().map(convert),
        _ => None,
    })
}

/// Why a watch response ended the watch.
fn watch_end_error(resp: &WatchResponse, after: Revision) -> StoreError {
    if resp.compact_revision() != 0 {
        StoreError::Compacted {
            requested: after,
            compacted: resp.compact_revision(),
        }
    } else {
        // etcd cancels watches on leader loss and similar transient conditions.
        StoreError::Unavailable(format!(
            "etcd cancelled the watch: {}",
            if resp.cancel_reason().is_empty() {
                "no reason given"
            } else {
                resp.cancel_reason()
            }
        ))
    }
}

fn convert_event(event: &etcd_client::Event) -> Option<Event> {
    let kv = event.kv()?;
    Some(match event.event_type() {
        EventType::Put if kv.create_revision() == kv.mod_revision() => {
            Event::Added { kv: convert(kv) }
        }
        EventType::Put => Event::Modified {
            kv: convert(kv),
            prev: event.prev_kv().map(convert),
        },
        EventType::Delete => {
            let prev = event.prev_kv();
            Event::Deleted {
                kv: KeyValue {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    value: prev.map(|p| p.value().to_vec()).unwrap_or_default(),
                    mod_revision: kv.mod_revision(),
                    create_revision: prev.map(|p| p.create_revision()).unwrap_or_default(),
                },
            }
        }
    })
}

/// State of a running watch turned into a stream of [`WatchItem`]s.
struct WatchState {
    stream: WatchStream,
    after: Revision,
    queued: VecDeque<Result<WatchItem>>,
    finished: bool,
}

impl WatchState {
    async fn next(mut self) -> Option<(Result<WatchItem>, WatchState)> {
        loop {
            if let Some(item) = self.queued.pop_front() {
                return Some((item, self));
            }
            if self.finished {
                return None;
            }
            match self.stream.message().await {
                Ok(Some(resp)) => self.absorb(resp),
                Ok(None) => {
                    self.finished = true;
                    self.queued.push_back(Err(StoreError::Unavailable(
                        "etcd closed the watch stream".into(),
                    )));
                }
                Err(e) => {
                    self.finished = true;
                    self.queued.push_back(Err(match map_error(e) {
                        StoreError::Internal(m) => StoreError::Unavailable(m),
                        other => other,
                    }));
                }
            }
        }
    }

    fn absorb(&mut self, resp: WatchResponse) {
        if resp.canceled() || resp.compact_revision() != 0 {
            self.finished = true;
            self.queued
                .push_back(Err(watch_end_error(&resp, self.after)));
            return;
        }
        if resp.events().is_empty() {
            // A progress notification: etcd sends these to a synced watcher, in order with
            // its events, so everything up to the header revision has been delivered.
            if let Some(header) = resp.header() {
                self.queued
                    .push_back(Ok(WatchItem::Progress(header.revision())));
            }
            return;
        }
        for event in resp.events() {
            if let Some(event) = convert_event(event) {
                self.after = self.after.max(event.revision());
                self.queued.push_back(Ok(WatchItem::Event(event)));
            }
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self
            .range("get", key.as_bytes().to_vec(), GetOptions::new())
            .await?;
        Ok(resp.kvs().first().map(convert))
    }

    async fn create_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<Revision> {
        let build = |options: Option<PutOptions>| {
            Txn::new()
                .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, value.clone(), options)])
        };
        let resp = self.put_txn("create", ttl, build).await?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists(key.to_string()));
        }
        header_revision(resp.header())
    }

    async fn update_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
        ttl: Option<Duration>,
    ) -> Result<Revision> {
        let compare = match expected {
            Some(rev) => Compare::mod_revision(key, CompareOp::Equal, rev),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let build = |options: Option<PutOptions>| {
            Txn::new()
                .when([compare.clone()])
                .and_then([TxnOp::put(key, value.clone(), options)])
                .or_else([TxnOp::get(key, None)])
        };
        let resp = self.put_txn("update", ttl, build).await?;
        if resp.succeeded() {
            return header_revision(resp.header());
        }
        match (txn_read_value(&resp), expected) {
            (Some(current), Some(expected)) => Err(StoreError::Conflict {
                key: key.to_string(),
                expected,
                current: current.mod_revision,
            }),
            _ => Err(StoreError::NotFound(key.to_string())),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let compare = match expected {
            Some(rev) => Compare::mod_revision(key, CompareOp::Equal, rev),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.txn("delete", txn).await?;
        if !resp.succeeded() {
            return match (txn_read_value(&resp), expected) {
                (Some(current), Some(expected)) => Err(StoreError::Conflict {
                    key: key.to_string(),
                    expected,
                    current: current.mod_revision,
                }),
                _ => Err(StoreError::NotFound(key.to_string())),
            };
        }
        let revision = header_revision(resp.header())?;
        let deleted = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Delete(del) => del.prev_kvs().first().map(convert),
            _ => None,
        });
        match deleted {
            Some(mut kv) => {
                kv.mod_revision = revision;
                Ok(kv)
            }
            // The compare saw the key, so the delete removed it; etcd always returns prev_kv.
            None => Err(StoreError::Internal(format!(
                "etcd deleted {key} without returning its previous value"
            ))),
        }
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let start = match &opts.start_after {
            Some(after) => {
                let mut start = after.as_bytes().to_vec();
                start.push(0);
                start
            }
            None => prefix.as_bytes().to_vec(),
        };
        let mut options = GetOptions::new().with_range(prefix_end(prefix.as_bytes()));
        if let Some(limit) = opts.limit.filter(|l| *l > 0) {
            options = options.with_limit(limit);
        }
        let at = opts.revision.filter(|r| *r > 0);
        if let Some(rev) = at {
            options = options.with_revision(rev);
        }
        let resp = match self.range("list", start, options).await {
            Ok(resp) => resp,
            Err(e) if is_compacted(&e) => {
                return Err(StoreError::Compacted {
                    requested: opts.revision.unwrap_or_default(),
                    compacted: self.compaction_point(prefix).await,
                })
            }
            Err(e) if is_future_revision(&e) => {
                return Err(StoreError::Internal(format!(
                    "revision {} is newer than the store's current revision",
                    opts.revision.unwrap_or_default()
                )))
            }
            Err(e) => return Err(e),
        };
        let items: Vec<KeyValue> = resp.kvs().iter().map(convert).collect();
        let remaining = (resp.count() - items.len() as i64).max(0);
        Ok(ListResult {
            // etcd's header carries its current revision even for a read in the past.
            revision: match at {
                Some(rev) => rev,
                None => header_revision(resp.header())?,
            },
            more: resp.more(),
            remaining: Some(remaining),
            items,
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream> {
        let items = self.watch_with_progress(prefix, after).await?;
        Ok(items
            .filter_map(|item| async move {
                match item {
                    Ok(WatchItem::Event(event)) => Some(Ok(event)),
                    Ok(WatchItem::Progress(_)) => None,
                    Err(e) => Some(Err(e)),
                }
            })
            .boxed())
    }

    async fn watch_with_progress(&self, prefix: &str, after: Revision) -> Result<WatchItemStream> {
        let stream = self.open_watch(prefix, after).await?;
        let state = WatchState {
            stream,
            after,
            queued: VecDeque::new(),
            finished: false,
        };
        Ok(futures::stream::unfold(state, WatchState::next).boxed())
    }

    async fn current_revision(&self) -> Result<Revision> {
        let resp = self
            .range(
                "current revision",
                b"/".to_vec(),
                GetOptions::new().with_count_only(),
            )
            .await?;
        header_revision(resp.header())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut kv = self.kv.clone();
        let result = bounded(self.config.request_timeout, "compact", async move {
            kv.compact(revision, Some(CompactionOptions::new().with_physical()))
                .await
                .map_err(map_error)
        })
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_compacted(&e) => Err(StoreError::Compacted {
                requested: revision,
                compacted: self.compaction_point("/").await,
            }),
            Err(e) => Err(e),
        }
    }

    async fn health(&self) -> Result<()> {
        // A linearizable read needs a leader and a quorum, like any write would.
        self.range(
            "health check",
            b"health".to_vec(),
            GetOptions::new().with_count_only(),
        )
        .await
        .map(|_| ())
    }

    async fn summary(&self, prefix: &str) -> Result<PrefixSummary> {
        let options = GetOptions::new()
            .with_range(prefix_end(prefix.as_bytes()))
            .with_sort(SortTarget::Mod, SortOrder::Descend)
            .with_limit(1)
            .with_keys_only();
        let resp = self
            .range("summary", prefix.as_bytes().to_vec(), options)
            .await?;
        Ok(PrefixSummary {
            revision: header_revision(resp.header())?,
            count: resp.count(),
            max_mod_revision: resp.kvs().first().map(|kv| kv.mod_revision()).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
