//! What a controller's work queue holds, measured as client-go's workqueue measures it: an
//! object enters the queue when a watched change asks for its reconcile (its own change, a
//! mapped or owned object's change) and leaves it when its reconcile starts. An object asked
//! for again before its reconcile starts is still one entry (client-go's dirty set), so
//! `workqueue_depth` is the number of distinct objects waiting and `workqueue_adds_total`
//! the number of times one entered.
//!
//! kube's [`Controller`] keeps its queue inside, so the requests are counted where they are
//! made: [`WorkQueue::controller`] (the main watch), [`WorkQueue::counted`] (a main stream
//! built by the caller), [`WorkQueue::mapper`] and [`WorkQueue::owners`] (related objects),
//! and they leave in [`WorkQueue::reconciler`] (the reconcile's start) or, for an object deleted
//! before its turn, in [`WorkQueue::run_until_stopped`]. Requeues after a reconcile
//! (`Action::requeue`) are timers, not queue entries, as client-go's delaying queue holds
//! them apart.

use std::collections::HashSet;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::{Stream, TryStreamExt};
use kube::api::Api;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::metrics::metrics;

/// The objects waiting in one controller's queue.
pub struct WorkQueue {
    name: &'static str,
    waiting: Mutex<HashSet<String>>,
}

/// `namespace/name` of an object (`/name` when cluster-scoped).
fn key_of(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", namespace.unwrap_or_default())
}

impl WorkQueue {
    /// The queue of the controller `name` (its metrics' `name` label).
    pub fn new(name: &'static str) -> Arc<WorkQueue> {
        Arc::new(WorkQueue {
            name,
            waiting: Mutex::new(HashSet::new()),
        })
    }

    /// The object `key` asks for a reconcile.
    fn add(&self, key: String) {
        let Ok(mut waiting) = self.waiting.lock() else {
            return;
        };
        if waiting.insert(key) {
            metrics().added(self.name, waiting.len());
        }
    }

    /// The reconcile of `key` starts (or is dropped): it leaves the queue.
    fn leave(&self, key: &str) {
        let Ok(mut waiting) = self.waiting.lock() else {
            return;
        };
        if waiting.remove(key) {
            metrics().set_depth(self.name, waiting.len());
        }
    }

    fn add_ref<K: Resource>(&self, r: &ObjectRef<K>) {
        self.add(key_of(r.namespace.as_deref(), &r.name));
    }

    /// `Controller::new(api, wc)`, with each change of a watched object counted.
    pub fn controller<K>(self: &Arc<Self>, api: Api<K>, wc: watcher::Config) -> Controller<K>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Eq + Hash + Clone + Default + Unpin,
    {
        let (reader, writer) = reflector::store();
        let changes = reflector::reflector(writer, watcher(api, wc)).applied_objects();
        Controller::for_stream(self.counted(changes), reader)
    }

    /// A stream of main objects whose every item is counted as a request of its reconcile.
    pub fn counted<K: Resource, E>(
        self: &Arc<Self>,
        changes: impl Stream<Item = std::result::Result<K, E>>,
    ) -> impl Stream<Item = std::result::Result<K, E>> {
        let queue = self.clone();
        changes
            .inspect_ok(move |obj| queue.add(key_of(obj.namespace().as_deref(), &obj.name_any())))
    }

    /// A `watches` mapper whose requests are counted.
    pub fn mapper<S, K, I>(
        self: &Arc<Self>,
        map: impl Fn(S) -> I + Send + Sync + 'static,
    ) -> impl Fn(S) -> Vec<ObjectRef<K>> + Send + Sync + 'static
    where
        K: Resource,
        I: IntoIterator<Item = ObjectRef<K>>,
    {
        let queue = self.clone();
        move |changed| {
            let refs: Vec<ObjectRef<K>> = map(changed).into_iter().collect();
            refs.iter().for_each(|r| queue.add_ref(r));
            refs
        }
    }

    /// The mapper `owns` uses (every owner of the changed object's kind `K`), counted.
    pub fn owners<C, K>(self: &Arc<Self>) -> impl Fn(C) -> Vec<ObjectRef<K>> + Send + Sync + 'static
    where
        C: Resource,
        K: Resource<DynamicType = ()>,
    {
        self.mapper(|child: C| {
            let ns = child.namespace();
            child
                .owner_references()
                .iter()
                .filter_map(|owner| ObjectRef::from_owner_ref(ns.as_deref(), owner, ()))
                .collect::<Vec<_>>()
        })
    }

    /// The controller's reconciler: `reconcile`, timed, called as the object leaves the queue.
    pub fn reconciler<K, C, E, Fut>(
        self: &Arc<Self>,
        reconcile: impl Fn(Arc<K>, Arc<C>) -> Fut,
    ) -> impl FnMut(Arc<K>, Arc<C>) -> BoxFuture<'static, std::result::Result<Action, E>>
    where
        K: Resource,
        Fut: Future<Output = std::result::Result<Action, E>> + Send + 'static,
        E: 'static,
    {
        let queue = self.clone();
        move |obj, ctx| {
            queue.leave(&key_of(obj.namespace().as_deref(), &obj.name_any()));
            Box::pin(crate::metrics::timed(queue.name, reconcile(obj, ctx)))
        }
    }

    /// Drives the controller's `results` until they end; an object deleted before its
    /// reconcile leaves the queue. A failed reconcile is only logged (its error policy has
    /// requeued it).
    pub async fn run_until_stopped<T, RE, QE>(
        &self,
        results: impl Stream<Item = std::result::Result<T, controller::Error<RE, QE>>>,
    ) -> Result<()>
    where
        RE: std::error::Error + 'static,
        QE: std::error::Error + 'static,
    {
        use futures::StreamExt;
        let name = self.name;
        results
            .for_each(|r| async move {
                match r {
                    Ok(_) => {}
                    Err(controller::Error::ObjectNotFound(gone)) => {
                        self.leave(&key_of(gone.namespace.as_deref(), &gone.name));
                    }
                    Err(e) => tracing::debug!(error = %e, "{name} reconcile failed"),
                }
            })
            .await;
        Err(Error::Stopped(name, "watch ended".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn replica_set(ns: &str, name: &str, owner: &str) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: owner.into(),
                    uid: "u".into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn depth_and_adds(name: &str) -> (String, String) {
        let text = bpfk_common::metrics::encode();
        let line = |metric: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{metric}{{name=\"{name}\"}}")))
                .and_then(|l| l.rsplit(' ').next())
                .unwrap_or("absent")
                .to_string()
        };
        (line("workqueue_depth"), line("workqueue_adds_total"))
    }

    #[tokio::test]
    async fn an_object_waits_once_until_its_reconcile_starts() {
        let queue = WorkQueue::new("test-queue");
        let owners = queue.owners::<ReplicaSet, Deployment>();
        let refs = owners(replica_set("default", "web-1", "web"));
        assert_eq!(
            refs,
            [ObjectRef::<Deployment>::new("web").within("default")]
        );
        // a second change of the same owner before its reconcile: still one entry
        owners(replica_set("default", "web-2", "web"));
        owners(replica_set("other", "api-1", "api"));
        assert_eq!(depth_and_adds("test-queue"), ("2".into(), "2".into()));

        let mut web = Deployment::default();
        web.metadata.namespace = Some("default".into());
        web.metadata.name = Some("web".into());
        let mut reconciler = queue.reconciler(|_: Arc<Deployment>, _: Arc<()>| async {
            Ok::<_, ()>(Action::await_change())
        });
        assert!(reconciler(Arc::new(web), Arc::new(())).await.is_ok());
        assert_eq!(depth_and_adds("test-queue"), ("1".into(), "2".into()));
        // asked for again after its reconcile started: a new entry
        owners(replica_set("default", "web-1", "web"));
        assert_eq!(depth_and_adds("test-queue"), ("2".into(), "3".into()));
    }
}
