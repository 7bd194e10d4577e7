//! A real store whose watch streams misbehave on command, standing in for what the network
//! does between the API server's watch cache and etcd: every call still goes to the wrapped
//! store (real etcd in the tests), only the watch streams pass through a [`WatchFault`].

use std::sync::Arc;

use async_trait::async_trait;
use bpfk_store::{
    EventStream, KeyValue, ListOptions, ListResult, PrefixSummary, Result, Revision, Store,
    StoreError, WatchItemStream,
};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::watch;

/// What happens to a watch stream.
pub trait WatchFault: Send + Sync + 'static {
    /// The stream the watcher sees instead of `stream` (or the error its watch call gets).
    fn wrap<T: Send + 'static>(
        &self,
        stream: BoxStream<'static, Result<T>>,
    ) -> Result<BoxStream<'static, Result<T>>>;
}

/// A gate: items pass only while it is open (a watch that lags behind etcd).
pub struct Gate(pub watch::Receiver<bool>);

impl WatchFault for Gate {
    fn wrap<T: Send + 'static>(
        &self,
        stream: BoxStream<'static, Result<T>>,
    ) -> Result<BoxStream<'static, Result<T>>> {
        let open = self.0.clone();
        Ok(stream
            .then(move |item| {
                let mut open = open.clone();
                async move {
                    let _ = open.wait_for(|o| *o).await;
                    item
                }
            })
            .boxed())
    }
}

/// A partition: while `connected` is false new watches fail and open ones end with
/// `Unavailable` (the cache then relists and watches again).
pub struct Partition(pub watch::Sender<bool>);

impl WatchFault for Partition {
    fn wrap<T: Send + 'static>(
        &self,
        stream: BoxStream<'static, Result<T>>,
    ) -> Result<BoxStream<'static, Result<T>>> {
        let mut connected = self.0.subscribe();
        if !*connected.borrow_and_update() {
            return Err(StoreError::Unavailable("partitioned".into()));
        }
        let cut = async move {
            let _ = connected.wait_for(|up| !*up).await;
        };
        let partitioned =
            futures::stream::once(async { Err(StoreError::Unavailable("partitioned".into())) });
        Ok(stream.take_until(cut).chain(partitioned).boxed())
    }
}

/// `inner` with its watch streams passed through `fault`.
pub struct FaultyWatchStore<S, F> {
    pub inner: Arc<S>,
    pub fault: F,
}

#[async_trait]
impl<S: Store, F: WatchFault> Store for FaultyWatchStore<S, F> {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner.get(key).await
    }
    async fn create_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<std::time::Duration>,
    ) -> Result<Revision> {
        self.inner.create_with_ttl(key, value, ttl).await
    }
    async fn update_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
        ttl: Option<std::time::Duration>,
    ) -> Result<Revision> {
        self.inner.update_with_ttl(key, value, expected, ttl).await
    }
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.inner.delete(key, expected).await
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        self.inner.list(prefix, opts).await
    }
    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream> {
        self.fault.wrap(self.inner.watch(prefix, after).await?)
    }
    async fn watch_with_progress(&self, prefix: &str, after: Revision) -> Result<WatchItemStream> {
        self.fault
            .wrap(self.inner.watch_with_progress(prefix, after).await?)
    }
    async fn summary(&self, prefix: &str) -> Result<PrefixSummary> {
        self.inner.summary(prefix).await
    }
    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }
    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }
    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }
}
