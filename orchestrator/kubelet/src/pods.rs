//! Pods bound to this node: a reflector on `spec.nodeName=<node>` feeds one worker task per
//! pod UID; sandboxes of pods that no longer exist are removed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::pod_worker::{self, Ctx};

/// How often sandboxes of vanished pods are looked for.
const ORPHAN_SWEEP: Duration = Duration::from_secs(30);

struct Dispatcher {
    ctx: Arc<Ctx>,
    workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>>,
    /// UIDs whose worker finished (pod deleted) while the object may still be listed.
    finished: HashSet<String>,
    tasks: JoinSet<String>,
}

impl Dispatcher {
    fn dispatch(&mut self, store: &Store<Pod>) {
        let pods = store.state();
        let mut seen = HashSet::new();
        for pod in pods {
            let Some(uid) = pod.metadata.uid.clone() else {
                continue;
            };
            seen.insert(uid.clone());
            if self.finished.contains(&uid) {
                continue;
            }
            match self.workers.get(&uid) {
                Some(tx) => {
                    let changed = tx.borrow().as_ref().map(|p| &p.metadata.resource_version)
                        != Some(&pod.metadata.resource_version);
                    if changed {
                        tx.send_replace(Some(pod));
                    }
                }
                None => {
                    let (tx, rx) = watch::channel(Some(pod));
                    let ctx = self.ctx.clone();
                    let worker_uid = uid.clone();
                    self.tasks.spawn(async move {
                        pod_worker::run(ctx, worker_uid.clone(), rx).await;
                        worker_uid
                    });
                    self.workers.insert(uid, tx);
                }
            }
        }
        for (uid, tx) in &self.workers {
            if !seen.contains(uid) && tx.borrow().is_some() {
                tx.send_replace(None);
            }
        }
        self.finished.retain(|uid| seen.contains(uid));
    }

    fn worker_done(&mut self, uid: String) {
        self.workers.remove(&uid);
        self.finished.insert(uid);
    }

    fn known_uids(&self, store: &Store<Pod>) -> HashSet<String> {
        let mut keep: HashSet<String> = store
            .state()
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        keep.extend(self.workers.keys().cloned());
        keep
    }
}

/// Watch this node's pods and run them until the watch ends (it retries with back-off, so
/// only when the API server stream ends for good).
pub async fn run(ctx: Arc<Ctx>) -> Result<()> {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let config =
        watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.config.node_name));
    let (store, writer) = reflector::store::<Pod>();
    let stream = reflector::reflector(writer, watcher::watcher(api, config)).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut d = Dispatcher {
        ctx: ctx.clone(),
        workers: HashMap::new(),
        finished: HashSet::new(),
        tasks: JoinSet::new(),
    };
    let mut synced = false;
    let mut sweep = tokio::time::interval(ORPHAN_SWEEP);
    loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(event)) => {
                    if matches!(event, Event::InitDone) {
                        synced = true;
                        let keep = d.known_uids(&store);
                        if let Err(e) = pod_worker::remove_orphan_sandboxes(&ctx.cri, &keep).await {
                            tracing::warn!(error = %e, "orphan sandbox sweep failed");
                        }
                    }
                    if synced {
                        d.dispatch(&store);
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "pod watch error; retrying"),
                None => return Err(Error::Node { node: ctx.config.node_name.clone(), reason: "pod watch ended".into() }),
            },
            Some(done) = d.tasks.join_next() => match done {
                Ok(uid) => d.worker_done(uid),
                Err(e) => tracing::error!(error = %e, "pod worker panicked or was cancelled"),
            },
            _ = sweep.tick(), if synced => {
                let keep = d.known_uids(&store);
                if let Err(e) = pod_worker::remove_orphan_sandboxes(&ctx.cri, &keep).await {
                    tracing::warn!(error = %e, "orphan sandbox sweep failed");
                }
            }
        }
    }
}
