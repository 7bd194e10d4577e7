//! Shared informers: one watch per resource for all the controllers of a process, as
//! kube-controller-manager's shared informer factory does. An informer keeps a reflector
//! store and hands every object it sees applied or deleted to each subscriber, so N
//! controllers interested in pods cost one watch and one decode of each event, not N.
//!
//! kube-runtime's own shared streams (`reflect_shared`) hand subscribers applied objects
//! only; controllers also need deletions (a pod removed with no grace period must drop out of
//! its Service's endpoints at once), so deletions are forwarded here too.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, store::Writer, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

/// One watch of `K` shared by several controllers.
pub struct Informer<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
    reader: Store<K>,
    subscribers: Vec<mpsc::UnboundedSender<Arc<K>>>,
    event_subscribers: Vec<mpsc::UnboundedSender<watcher::Event<Arc<K>>>>,
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    /// An informer over `api`; nothing is watched until [`Informer::run`].
    pub fn new(api: Api<K>, config: watcher::Config) -> Self {
        let (reader, writer) = reflector::store();
        Informer {
            api,
            config,
            writer,
            reader,
            subscribers: Vec::new(),
            event_subscribers: Vec::new(),
        }
    }

    /// The store every subscriber reads (ready after the first list).
    pub fn store(&self) -> Store<K> {
        self.reader.clone()
    }

    /// A stream of the objects this informer sees applied or deleted, from its first list on
    /// (after each relist, every listed object once more). Subscribe before [`Informer::run`].
    pub fn subscribe(&mut self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.push(tx);
        tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
    }

    /// The watch events themselves, objects shared with the store: `Init`, `InitApply` and
    /// `InitDone` around every (re)list, then `Apply` and `Delete`. For a consumer that keeps
    /// its own state and must know when a relist is complete (the scheduler in the same
    /// process). Watch errors are retried inside the informer and not passed on. Subscribe
    /// before [`Informer::run`].
    pub fn subscribe_events(
        &mut self,
    ) -> impl Stream<Item = watcher::Event<Arc<K>>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        self.event_subscribers.push(tx);
        tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
    }

    /// Whether anything subscribed (an informer nobody follows need not run).
    pub fn has_subscribers(&self) -> bool {
        !self.subscribers.is_empty() || !self.event_subscribers.is_empty()
    }

    /// Watches until the watch stream ends (watch errors are retried with backoff).
    pub async fn run(mut self, name: &'static str) {
        let events = watcher(self.api.clone(), self.config.clone()).default_backoff();
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => self.apply(event),
                Err(e) => tracing::warn!(error = %e, informer = name, "watch error"),
            }
        }
        tracing::warn!(informer = name, "watch ended");
    }

    fn apply(&mut self, event: watcher::Event<K>) {
        self.writer.apply_watcher_event(&event);
        match event {
            watcher::Event::Apply(obj) => {
                // the store's copy: no second clone of the object
                if let Some(stored) = self.reader.get(&ObjectRef::from_obj(&obj)) {
                    self.publish(&stored);
                    self.publish_event(|| watcher::Event::Apply(stored.clone()));
                }
            }
            watcher::Event::Delete(obj) => {
                let obj = Arc::new(obj);
                self.publish(&obj);
                self.publish_event(|| watcher::Event::Delete(obj.clone()));
            }
            watcher::Event::InitDone => {
                for obj in self.reader.state() {
                    self.publish(&obj);
                }
                self.publish_event(|| watcher::Event::InitDone);
            }
            watcher::Event::Init => self.publish_event(|| watcher::Event::Init),
            // the store takes a relist's objects only at InitDone: event subscribers get
            // their own copy now
            watcher::Event::InitApply(obj) => {
                if !self.event_subscribers.is_empty() {
                    let obj = Arc::new(obj);
                    self.publish_event(|| watcher::Event::InitApply(obj.clone()));
                }
            }
        }
    }

    fn publish_event(&mut self, event: impl Fn() -> watcher::Event<Arc<K>>) {
        self.event_subscribers.retain(|tx| tx.send(event()).is_ok());
    }

    fn publish(&mut self, obj: &Arc<K>) {
        // a subscriber that went away (its controller stopped) is dropped
        self.subscribers.retain(|tx| tx.send(obj.clone()).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use kube::ResourceExt;
    use serde_json::json;

    fn pod(name: &str, rv: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv}
        }))
        .unwrap()
    }

    fn informer() -> Informer<Pod> {
        // never run: apply() is driven by hand
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        Informer::new(Api::all(client), watcher::Config::default())
    }

    fn drain(rx: &mut (impl Stream<Item = Arc<Pod>> + Unpin)) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while let Some(Some(p)) = futures::FutureExt::now_or_never(rx.next()) {
            out.push((
                p.metadata.name.clone().unwrap(),
                p.metadata.resource_version.clone().unwrap(),
            ));
        }
        out
    }

    #[tokio::test]
    async fn event_subscribers_see_relists_with_their_boundaries() {
        let mut inf = informer();
        let mut events = Box::pin(inf.subscribe_events());
        assert!(inf.has_subscribers());
        let mut drain_events = || {
            let mut out = Vec::new();
            while let Some(Some(ev)) = futures::FutureExt::now_or_never(events.next()) {
                out.push(match ev {
                    watcher::Event::Init => "init".to_string(),
                    watcher::Event::InitApply(p) => format!("list {}", p.name_any()),
                    watcher::Event::InitDone => "done".to_string(),
                    watcher::Event::Apply(p) => format!("apply {}", p.name_any()),
                    watcher::Event::Delete(p) => format!("delete {}", p.name_any()),
                });
            }
            out
        };
        inf.apply(watcher::Event::Init);
        inf.apply(watcher::Event::InitApply(pod("p1", "1")));
        inf.apply(watcher::Event::InitDone);
        inf.apply(watcher::Event::Apply(pod("p2", "2")));
        inf.apply(watcher::Event::Delete(pod("p1", "3")));
        // a relist (after a 410) is passed on with its boundaries
        inf.apply(watcher::Event::Init);
        inf.apply(watcher::Event::InitApply(pod("p2", "4")));
        inf.apply(watcher::Event::InitDone);
        assert_eq!(
            drain_events(),
            [
                "init",
                "list p1",
                "done",
                "apply p2",
                "delete p1",
                "init",
                "list p2",
                "done"
            ]
        );
        // an applied object is the store's own copy, not a clone
        inf.apply(watcher::Event::Apply(pod("p3", "5")));
        let Some(Some(watcher::Event::Apply(p3))) = futures::FutureExt::now_or_never(events.next())
        else {
            panic!("no apply event");
        };
        let stored = inf.store().get(&ObjectRef::from_obj(&*p3)).unwrap();
        assert!(Arc::ptr_eq(&p3, &stored));
    }

    #[tokio::test]
    async fn every_subscriber_sees_the_list_then_applies_and_deletes() {
        let mut inf = informer();
        let mut a = Box::pin(inf.subscribe());
        let mut b = Box::pin(inf.subscribe());
        let store = inf.store();
        inf.apply(watcher::Event::Init);
        inf.apply(watcher::Event::InitApply(pod("p1", "1")));
        assert!(
            drain(&mut a).is_empty(),
            "nothing before the list is complete"
        );
        inf.apply(watcher::Event::InitDone);
        assert_eq!(drain(&mut a), vec![("p1".into(), "1".into())]);
        inf.apply(watcher::Event::Apply(pod("p1", "2")));
        inf.apply(watcher::Event::Apply(pod("p2", "3")));
        inf.apply(watcher::Event::Delete(pod("p1", "4")));
        let want: Vec<(String, String)> = vec![
            ("p1".into(), "1".into()),
            ("p1".into(), "2".into()),
            ("p2".into(), "3".into()),
            ("p1".into(), "4".into()),
        ];
        assert_eq!(drain(&mut a), want[1..]);
        assert_eq!(drain(&mut b), want);
        let names: Vec<String> = store.state().iter().map(|p| p.name_any()).collect();
        assert_eq!(names, vec!["p2".to_string()]);
    }

    #[tokio::test]
    async fn a_dropped_subscriber_does_not_stop_the_others() {
        let mut inf = informer();
        let gone = inf.subscribe();
        let mut kept = Box::pin(inf.subscribe());
        drop(gone);
        inf.apply(watcher::Event::Init);
        inf.apply(watcher::Event::InitDone);
        inf.apply(watcher::Event::Apply(pod("p1", "1")));
        assert_eq!(inf.subscribers.len(), 1);
        assert_eq!(drain(&mut kept), vec![("p1".into(), "1".into())]);
    }
}
