//! One in-memory cache per resource prefix, fed by a single backend watch and fanned out to
//! any number of client watches.
//!
//! [`WatchCache::start`] spawns a task that lists the prefix, then watches it from the list
//! revision. The cache keeps:
//! * the current objects (key → value), so lists and gets are served from memory;
//! * a ring buffer of the last `history` events, so a client watch that resumes from a recent
//!   revision is replayed from memory;
//! * a broadcast channel that delivers each new event to every client watch.
//!
//! When the backend watch fails (etcd down), the task re-watches with backoff from the last
//! revision it saw. When the backend reports that revision compacted, it relists and sends
//! client watches synthetic events for the difference, so they stay consistent.
//!
//! Invariants: the objects in memory are the backend's objects at [`WatchCache::revision`];
//! every event with a revision above the buffer's window start is in the buffer; a client
//! watch sees no event at or below the revision it started after, and its revisions never
//! go down (several events may share one revision).
//!
//! Client watches yield `Arc<Event>`: one copy of each event is shared by every watcher.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use crate::{
    Event, KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError, WatchItem,
    WatchItemStream,
};

/// Most events a client watch may fall behind the live stream before it resynchronises
/// from the history buffer (or, past the buffer, gets `Compacted`).
const MAX_BROADCAST_LAG: usize = 4096;
const MIN_BROADCAST_LAG: usize = 64;
/// First and longest pause between attempts to reach a failing backend.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long [`WatchCache::watch`] waits for the initial list before giving up.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`WatchCache::wait_for_revision`] waits for events before asking the backend.
const FRESHNESS_POLL: Duration = Duration::from_millis(100);

/// An event with its position in the cache's broadcast sequence.
type Sequenced = (u64, Arc<Event>);

/// The watch cache of one prefix. Dropping it stops the backend watch.
pub struct WatchCache {
    shared: Arc<Shared>,
    task: tokio::task::AbortHandle,
}

struct Shared {
    store: Arc<dyn Store>,
    prefix: String,
    history: usize,
    state: RwLock<State>,
    /// Sent under the `state` write lock, so a snapshot taken under a read lock plus a
    /// subscription made under the same lock neither miss nor duplicate an event.
    events: broadcast::Sender<Sequenced>,
    revision: watch::Sender<Revision>,
    ready: watch::Sender<bool>,
    backend_watches: AtomicU64,
    relists: AtomicU64,
    lagged: AtomicU64,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Arc<KeyValue>>,
    buffer: VecDeque<Sequenced>,
    /// Every event with a revision above this is in `buffer`.
    window_start: Revision,
    /// The backend revision the objects correspond to.
    revision: Revision,
    /// Sequence number of the last broadcast event.
    seq: u64,
    ready: bool,
}

/// Counters that show what the cache costs the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Backend watches opened so far (1 while nothing failed).
    pub backend_watches: u64,
    /// Full relists after the first (after compaction).
    pub relists: u64,
    /// Objects held.
    pub objects: usize,
    /// Events held in the history buffer.
    pub buffered_events: usize,
    /// Client watches currently subscribed to the live stream.
    pub live_watchers: usize,
    /// Times a client watch fell behind the live stream (it then resumed from the history
    /// buffer, or got `Compacted` when the buffer had moved on).
    pub lagged_watchers: u64,
}

impl WatchCache {
    /// Start caching `prefix` (which ends in '/'), keeping the last `history` events.
    /// Must be called inside a Tokio runtime.
    pub fn start(store: Arc<dyn Store>, prefix: String, history: usize) -> Arc<WatchCache> {
        let (events, _) = broadcast::channel(history.clamp(MIN_BROADCAST_LAG, MAX_BROADCAST_LAG));
        let shared = Arc::new(Shared {
            store,
            prefix,
            history,
            state: RwLock::new(State::default()),
            events,
            revision: watch::Sender::new(0),
            ready: watch::Sender::new(false),
            backend_watches: AtomicU64::new(0),
            relists: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
        });
        let task = tokio::spawn(run(shared.clone())).abort_handle();
        Arc::new(WatchCache { shared, task })
    }

    /// The prefix this cache holds.
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// Wait until the initial list has been loaded (forever while the backend is down).
    pub async fn wait_ready(&self) {
        let mut ready = self.shared.ready.subscribe();
        // The sender lives in `shared`, which we hold: `wait_for` cannot fail.
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Whether the initial list has been loaded.
    pub fn is_ready(&self) -> bool {
        *self.shared.ready.borrow()
    }

    /// The latest backend revision the cache has caught up with.
    pub fn revision(&self) -> Revision {
        *self.shared.revision.borrow()
    }

    /// Counters (backend watches opened, relists, sizes).
    pub fn stats(&self) -> CacheStats {
        let state = self.shared.read();
        CacheStats {
            backend_watches: self.shared.backend_watches.load(Ordering::Relaxed),
            relists: self.shared.relists.load(Ordering::Relaxed),
            objects: state.objects.len(),
            buffered_events: state.buffer.len(),
            live_watchers: self.shared.events.receiver_count(),
            lagged_watchers: self.shared.lagged.load(Ordering::Relaxed),
        }
    }

    /// All objects, sorted by key, and the revision they correspond to. Waits for the
    /// initial list (see [`is_ready`](Self::is_ready) to answer "unavailable" instead).
    pub async fn list(&self) -> (Vec<KeyValue>, Revision) {
        self.list_prefix(&self.shared.prefix).await
    }

    /// The objects whose key starts with `key_prefix` (e.g. one namespace), sorted by key.
    pub async fn list_prefix(&self, key_prefix: &str) -> (Vec<KeyValue>, Revision) {
        self.wait_ready().await;
        let state = self.shared.read();
        let items = state
            .objects
            .range(key_prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(key_prefix))
            .map(|(_, kv)| KeyValue::clone(kv))
            .collect();
        (items, state.revision)
    }

    /// One object from memory.
    pub async fn get(&self, key: &str) -> Option<KeyValue> {
        self.wait_ready().await;
        self.shared
            .read()
            .objects
            .get(key)
            .map(|kv| KeyValue::clone(kv))
    }

    /// Wait until the cache has caught up with backend revision `rev` (e.g. the revision of a
    /// write just made), so that a list from memory includes that write. When no event moves
    /// the cache (the write was under another prefix), the backend is asked whether this
    /// prefix changed since the cache's revision; if not, the cache is known to be current.
    /// Fails with `Unavailable` after `timeout`.
    pub async fn wait_for_revision(&self, rev: Revision, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut revisions = self.shared.revision.subscribe();
        let mut last_error = None;
        loop {
            if self.is_ready() && *revisions.borrow_and_update() >= rev {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(last_error.unwrap_or_else(|| {
                    StoreError::Unavailable(format!(
                        "watch cache of {} is at revision {}, did not reach {rev} within {timeout:?}",
                        self.shared.prefix,
                        self.revision()
                    ))
                }));
            }
            let pause = FRESHNESS_POLL.min(deadline - now);
            if tokio::time::timeout(pause, revisions.changed())
                .await
                .is_ok()
            {
                continue;
            }
            if !self.is_ready() {
                continue;
            }
            match self.shared.store.summary(&self.shared.prefix).await {
                Ok(summary) => {
                    let mut state = self.shared.write();
                    // The backend's keys at `summary.revision` all have a mod_revision at or
                    // below ours and there are as many as we hold: they are exactly our
                    // objects, so our state is the backend's state at `summary.revision`.
                    if state.revision < summary.revision
                        && summary.count == state.objects.len() as i64
                        && summary.max_mod_revision <= state.revision
                    {
                        state.revision = summary.revision;
                        self.shared.revision.send_replace(summary.revision);
                    }
                }
                Err(e) => last_error = Some(e),
            }
        }
    }

    /// Watch the prefix.
    /// * `None` or `Some(0)`: synthetic `Added` events for every current object, then live
    ///   events.
    /// * `Some(rv)` within the history buffer: the buffered events after `rv`, then live.
    /// * `Some(rv)` older than the buffer: a direct backend watch from `rv` for this client
    ///   (which yields `Compacted` when the backend no longer has `rv`).
    ///
    /// Returns `Unavailable` when the initial list has not loaded within a few seconds.
    pub async fn watch(&self, after: Option<Revision>) -> Result<CacheWatch> {
        if tokio::time::timeout(READY_TIMEOUT, self.wait_ready())
            .await
            .is_err()
        {
            return Err(StoreError::Unavailable(format!(
                "watch cache of {} has not loaded yet",
                self.shared.prefix
            )));
        }
        let direct_from = {
            let state = self.shared.read();
            match after {
                None | Some(0) => {
                    let pending = state
                        .objects
                        .values()
                        .map(|kv| {
                            Arc::new(Event::Added {
                                kv: KeyValue::clone(kv),
                            })
                        })
                        .collect();
                    return Ok(self.cached_watch(&state, pending, state.revision));
                }
                Some(rv) if rv >= state.window_start => {
                    let pending = state
                        .buffer
                        .iter()
                        .filter(|(_, ev)| ev.revision() > rv)
                        .map(|(_, ev)| ev.clone())
                        .collect();
                    return Ok(self.cached_watch(&state, pending, rv));
                }
                Some(rv) => rv,
            }
        };
        let stream = self
            .shared
            .store
            .watch_with_progress(&self.shared.prefix, direct_from)
            .await?;
        Ok(CacheWatch {
            inner: WatchInner::Direct(stream),
            floor: direct_from,
            last_rev: direct_from,
        })
    }

    fn cached_watch(
        &self,
        state: &State,
        pending: VecDeque<Arc<Event>>,
        last_rev: Revision,
    ) -> CacheWatch {
        CacheWatch {
            inner: WatchInner::Cached(CachedWatch {
                shared: self.shared.clone(),
                pending,
                live: BroadcastStream::new(self.shared.events.subscribe()),
                last_seq: state.seq,
            }),
            floor: last_rev,
            last_rev,
        }
    }
}

impl Drop for WatchCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for WatchCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchCache")
            .field("prefix", &self.shared.prefix)
            .field("revision", &self.revision())
            .finish()
    }
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Install a full list: the first one, or a relist after compaction (then watchers get
    /// the difference as synthetic events and the history buffer restarts).
    fn install(&self, list: ListResult) {
        let mut state = self.write();
        let fresh: BTreeMap<String, Arc<KeyValue>> = list
            .items
            .into_iter()
            .map(|kv| (kv.key.clone(), Arc::new(kv)))
            .collect();
        if state.ready {
            let mut diff = diff_events(&state.objects, &fresh, list.revision);
            diff.sort_by_key(Event::revision);
            for event in diff {
                state.seq += 1;
                let seq = state.seq;
                let _ = self.events.send((seq, Arc::new(event)));
            }
        }
        state.objects = fresh;
        state.buffer.clear();
        state.window_start = list.revision;
        state.revision = state.revision.max(list.revision);
        state.ready = true;
        self.revision.send_replace(state.revision);
        drop(state);
        self.ready.send_replace(true);
    }

    fn apply(&self, event: Event) {
        let mut state = self.write();
        match &event {
            Event::Added { kv } | Event::Modified { kv, .. } => {
                state.objects.insert(kv.key.clone(), Arc::new(kv.clone()));
            }
            Event::Deleted { kv } => {
                state.objects.remove(&kv.key);
            }
        }
        let revision = event.revision();
        let event = Arc::new(event);
        state.seq += 1;
        let seq = state.seq;
        if self.history > 0 {
            state.buffer.push_back((seq, event.clone()));
            while state.buffer.len() > self.history {
                if let Some((_, evicted)) = state.buffer.pop_front() {
                    state.window_start = state.window_start.max(evicted.revision());
                }
            }
        } else {
            state.window_start = state.window_start.max(revision);
        }
        if revision > state.revision {
            state.revision = revision;
            self.revision.send_replace(revision);
        }
        let _ = self.events.send((seq, event));
    }

    fn progress(&self, revision: Revision) {
        let mut state = self.write();
        if revision > state.revision {
            state.revision = revision;
            self.revision.send_replace(revision);
        }
    }
}

/// Events that turn `old` into `new` (read at `revision`).
fn diff_events(
    old: &BTreeMap<String, Arc<KeyValue>>,
    new: &BTreeMap<String, Arc<KeyValue>>,
    revision: Revision,
) -> Vec<Event> {
    let mut events = Vec::new();
    for (key, kv) in new {
        match old.get(key) {
            None => events.push(Event::Added {
                kv: KeyValue::clone(kv),
            }),
            Some(prev) if prev.mod_revision != kv.mod_revision => events.push(Event::Modified {
                kv: KeyValue::clone(kv),
                prev: Some(KeyValue::clone(prev)),
            }),
            Some(_) => {}
        }
    }
    for (key, prev) in old {
        if !new.contains_key(key) {
            let mut kv = KeyValue::clone(prev);
            kv.mod_revision = revision;
            events.push(Event::Deleted { kv });
        }
    }
    events
}

/// Exponential backoff between attempts to reach the backend.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(BACKOFF_START)
    }
    fn reset(&mut self) {
        self.0 = BACKOFF_START;
    }
    /// The pause to take now; the next one is twice as long, up to the maximum.
    fn next_delay(&mut self) -> Duration {
        let delay = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        delay
    }
    async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

/// The cache's backend loop: list, then watch from the list revision; re-watch after
/// failures, relist after compaction.
async fn run(shared: Arc<Shared>) {
    let prefix = shared.prefix.clone();
    let mut backoff = Backoff::new();
    let mut first = true;
    'relist: loop {
        let list = match shared.store.list(&prefix, ListOptions::default()).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(%prefix, error = %e, "watch cache: list failed, retrying");
                backoff.wait().await;
                continue;
            }
        };
        if !first {
            shared.relists.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        let mut from = list.revision;
        tracing::debug!(%prefix, revision = from, items = list.items.len(), "watch cache: listed");
        shared.install(list);
        loop {
            match shared.store.watch_with_progress(&prefix, from).await {
                Ok(stream) => {
                    shared.backend_watches.fetch_add(1, Ordering::Relaxed);
                    backoff.reset();
                    match follow(&shared, stream, &mut from).await {
                        StoreError::Compacted { .. } => {
                            tracing::warn!(%prefix, from, "watch cache: revision compacted, relisting");
                            continue 'relist;
                        }
                        e => {
                            tracing::warn!(%prefix, from, error = %e, "watch cache: backend watch ended, re-watching");
                        }
                    }
                }
                Err(StoreError::Compacted { .. }) => {
                    tracing::warn!(%prefix, from, "watch cache: revision compacted, relisting");
                    continue 'relist;
                }
                Err(e) => {
                    tracing::warn!(%prefix, from, error = %e, "watch cache: cannot watch, retrying");
                }
            }
            backoff.wait().await;
        }
    }
}

/// Apply a backend watch until it fails; returns why it ended.
async fn follow(shared: &Shared, mut stream: WatchItemStream, from: &mut Revision) -> StoreError {
    while let Some(item) = stream.next().await {
        match item {
            Ok(WatchItem::Event(event)) => {
                *from = (*from).max(event.revision());
                shared.apply(event);
            }
            Ok(WatchItem::Progress(revision)) => {
                *from = (*from).max(revision);
                shared.progress(revision);
            }
            Err(e) => return e,
        }
    }
    StoreError::Unavailable("backend watch ended".into())
}

/// A client watch from a [`WatchCache`]: a stream of events in revision order.
///
/// Ends with an error item when it cannot continue: `Compacted` when the client fell
/// behind further than the cache's history (or the backend compacted the revision of a
/// direct watch), `Unavailable` when a direct backend watch fails. A client watch that falls
/// behind the live stream but not beyond the history catches up transparently.
pub struct CacheWatch {
    inner: WatchInner,
    /// The revision the client started after: live events at or below it are not for it.
    floor: Revision,
    /// Highest revision given to this client (or the revision it started after).
    last_rev: Revision,
}

enum WatchInner {
    Cached(CachedWatch),
    Direct(WatchItemStream),
    Done,
}

struct CachedWatch {
    shared: Arc<Shared>,
    /// Events to deliver before the live stream (initial objects or replayed history).
    pending: VecDeque<Arc<Event>>,
    live: BroadcastStream<Sequenced>,
    /// Sequence number of the last live event taken from `live` (or the subscription point).
    last_seq: u64,
}

impl CachedWatch {
    /// After falling behind the broadcast: continue from the history buffer if it still
    /// holds every event after the last one taken (by sequence number).
    fn resync(&mut self, floor: Revision, last_rev: Revision) -> Result<()> {
        self.shared.lagged.fetch_add(1, Ordering::Relaxed);
        let state = self.shared.read();
        let oldest_buffered = state.buffer.front().map_or(state.seq + 1, |(seq, _)| *seq);
        if oldest_buffered > self.last_seq + 1 {
            return Err(StoreError::Compacted {
                requested: last_rev,
                compacted: state.window_start,
            });
        }
        let last_seq = self.last_seq;
        self.pending = state
            .buffer
            .iter()
            .filter(|(seq, ev)| {
                *seq > last_seq && ev.revision() > floor && ev.revision() >= last_rev
            })
            .map(|(_, ev)| ev.clone())
            .collect();
        self.live = BroadcastStream::new(self.shared.events.subscribe());
        self.last_seq = state.seq;
        Ok(())
    }
}

impl CacheWatch {
    /// The highest revision delivered to this client so far (or the one it started after).
    pub fn last_revision(&self) -> Revision {
        self.last_rev
    }

    /// A revision to send as a BOOKMARK now: every event up to it has been delivered to this
    /// client. `None` while events are still queued for it (send the bookmark later).
    pub fn bookmark_revision(&self) -> Option<Revision> {
        match &self.inner {
            WatchInner::Cached(c) => {
                if !c.pending.is_empty() {
                    return None;
                }
                let state = c.shared.read();
                (c.last_seq == state.seq).then(|| self.last_rev.max(state.revision))
            }
            WatchInner::Direct(_) => (self.last_rev > 0).then_some(self.last_rev),
            WatchInner::Done => None,
        }
    }

    /// Whether this watch is served by its own backend watch (resumed from a revision older
    /// than the cache's history) instead of the shared cache.
    pub fn is_direct(&self) -> bool {
        matches!(self.inner, WatchInner::Direct(_))
    }
}

impl Stream for CacheWatch {
    type Item = Result<Arc<Event>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match &mut this.inner {
                WatchInner::Cached(c) => {
                    if let Some(event) = c.pending.pop_front() {
                        this.last_rev = this.last_rev.max(event.revision());
                        return Poll::Ready(Some(Ok(event)));
                    }
                    match c.live.poll_next_unpin(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok((seq, event)))) => {
                            c.last_seq = seq;
                            // Several events may share a revision (one etcd transaction, or
                            // a relist's difference); never go back below one delivered.
                            if event.revision() > this.floor && event.revision() >= this.last_rev {
                                this.last_rev = event.revision();
                                return Poll::Ready(Some(Ok(event)));
                            }
                        }
                        Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(_)))) => {
                            if let Err(e) = c.resync(this.floor, this.last_rev) {
                                this.inner = WatchInner::Done;
                                return Poll::Ready(Some(Err(e)));
                            }
                        }
                        Poll::Ready(None) => {
                            this.inner = WatchInner::Done;
                            return Poll::Ready(Some(Err(StoreError::Unavailable(
                                "watch cache stopped".into(),
                            ))));
                        }
                    }
                }
                WatchInner::Direct(stream) => match stream.poll_next_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(WatchItem::Event(event)))) => {
                        this.last_rev = this.last_rev.max(event.revision());
                        return Poll::Ready(Some(Ok(Arc::new(event))));
                    }
                    Poll::Ready(Some(Ok(WatchItem::Progress(revision)))) => {
                        this.last_rev = this.last_rev.max(revision);
                    }
                    Poll::Ready(Some(Err(e))) => {
                        this.inner = WatchInner::Done;
                        return Poll::Ready(Some(Err(e)));
                    }
                    Poll::Ready(None) => {
                        this.inner = WatchInner::Done;
                        return Poll::Ready(None);
                    }
                },
                WatchInner::Done => return Poll::Ready(None),
            }
        }
    }
}

impl std::fmt::Debug for CacheWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheWatch")
            .field("direct", &self.is_direct())
            .field("last_revision", &self.last_rev)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, rev: Revision) -> Arc<KeyValue> {
        Arc::new(KeyValue {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            mod_revision: rev,
            create_revision: 1,
        })
    }

    fn map(items: &[Arc<KeyValue>]) -> BTreeMap<String, Arc<KeyValue>> {
        items
            .iter()
            .map(|kv| (kv.key.clone(), kv.clone()))
            .collect()
    }

    #[test]
    fn diff_turns_the_old_objects_into_the_new_ones() {
        let old = map(&[kv("a", "a1", 2), kv("b", "b1", 3), kv("c", "c1", 4)]);
        let new = map(&[kv("a", "a2", 7), kv("c", "c1", 4), kv("d", "d1", 8)]);
        let mut events = diff_events(&old, &new, 9);
        events.sort_by_key(|e| e.key().to_string());
        assert_eq!(
            events,
            vec![
                Event::Modified {
                    kv: KeyValue::clone(&new["a"]),
                    prev: Some(KeyValue::clone(&old["a"])),
                },
                Event::Deleted {
                    kv: KeyValue {
                        mod_revision: 9,
                        ..KeyValue::clone(&old["b"])
                    },
                },
                Event::Added {
                    kv: KeyValue::clone(&new["d"]),
                },
            ]
        );
        assert!(diff_events(&new, &new, 9).is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let mut backoff = Backoff::new();
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        assert_eq!(delays[0], BACKOFF_START);
        assert_eq!(delays[1], BACKOFF_START * 2);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(delays[7], BACKOFF_MAX);
        backoff.reset();
        assert_eq!(backoff.next_delay(), BACKOFF_START);
    }
}
