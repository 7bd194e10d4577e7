//! Garbage collector: deletes objects whose owners (by ownerReference uid) are all gone
//! (background cascade), and drives the `foregroundDeletion` and `orphan` finalizers when the
//! API server leaves them on an object being deleted.
//!
//! It watches the metadata of every known kind (`PartialObjectMetadata`, as Kubernetes'
//! collector uses metadata informers), keeps an owner → dependents graph, and
//! checks a dependent when it appears or when one of its owners disappears. Before deleting
//! it confirms with a live GET that the owner is really gone (the graph may lag behind).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use tokio::sync::{mpsc, Mutex};

use crate::error::{is_conflict, is_not_found, Error, Result};
use crate::served_kinds::{self, Kind};

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

#[derive(Debug, Clone)]
struct Obj {
    kind: usize,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
}

#[derive(Debug, Default)]
struct Graph {
    objects: HashMap<String, Obj>,
    dependents: HashMap<String, HashSet<String>>,
    relist: HashMap<usize, HashSet<String>>,
}

impl Graph {
    /// Records an object; returns whether it should be checked.
    fn upsert(&mut self, uid: &str, obj: Obj) {
        self.remove(uid);
        for o in &obj.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.to_string());
        }
        self.objects.insert(uid.to_string(), obj);
    }

    /// Forgets an object; returns its dependents and its owners.
    fn remove(&mut self, uid: &str) -> (Vec<String>, Vec<String>) {
        let Some(obj) = self.objects.remove(uid) else {
            return (vec![], vec![]);
        };
        for o in &obj.owners {
            if let Some(set) = self.dependents.get_mut(&o.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
        }
        let deps = self
            .dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        (deps, obj.owners.iter().map(|o| o.uid.clone()).collect())
    }
}

struct Collector {
    client: Client,
    kinds: Vec<Kind>,
    graph: Mutex<Graph>,
}

fn obj_of(kind: usize, o: &PartialObjectMeta<DynamicObject>) -> Option<(String, Obj)> {
    let uid = o.metadata.uid.clone()?;
    Some((
        uid,
        Obj {
            kind,
            namespace: o.metadata.namespace.clone(),
            name: o.metadata.name.clone()?,
            owners: o.metadata.owner_references.clone().unwrap_or_default(),
            deleting: o.metadata.deletion_timestamp.is_some(),
            finalizers: o.metadata.finalizers.clone().unwrap_or_default(),
        },
    ))
}

impl Collector {
    fn api(&self, kind: usize, namespace: Option<&str>) -> Api<DynamicObject> {
        let k = &self.kinds[kind];
        match (k.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &k.resource),
            _ => Api::all_with(self.client.clone(), &k.resource),
        }
    }

    /// Applies a watch event to the graph; returns the uids to check.
    async fn on_event(
        &self,
        kind: usize,
        ev: watcher::Event<PartialObjectMeta<DynamicObject>>,
    ) -> Vec<String> {
        let mut g = self.graph.lock().await;
        match ev {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                let Some((uid, obj)) = obj_of(kind, &o) else {
                    return vec![];
                };
                if let Some(seen) = g.relist.get_mut(&kind) {
                    seen.insert(uid.clone());
                }
                let check = !obj.owners.is_empty()
                    || (obj.deleting
                        && obj
                            .finalizers
                            .iter()
                            .any(|f| f == FOREGROUND || f == ORPHAN));
                g.upsert(&uid, obj);
                if check {
                    vec![uid]
                } else {
                    vec![]
                }
            }
            watcher::Event::Delete(o) => {
                let Some(uid) = o.metadata.uid.clone() else {
                    return vec![];
                };
                let (mut deps, owners) = g.remove(&uid);
                // an owner waiting in foreground deletion may now be free
                deps.extend(
                    owners
                        .into_iter()
                        .filter(|o| g.objects.get(o).is_some_and(|x| x.deleting)),
                );
                deps
            }
            watcher::Event::Init => {
                g.relist.insert(kind, HashSet::new());
                vec![]
            }
            watcher::Event::InitDone => {
                let Some(seen) = g.relist.remove(&kind) else {
                    return vec![];
                };
                let gone: Vec<String> = g
                    .objects
                    .iter()
                    .filter(|(uid, o)| o.kind == kind && !seen.contains(*uid))
                    .map(|(uid, _)| uid.clone())
                    .collect();
                let mut out = Vec::new();
                for uid in gone {
                    out.extend(g.remove(&uid).0);
                }
                out
            }
        }
    }

    /// Whether an owner exists: in the graph, or confirmed by a live GET.
    async fn owner_exists(&self, dependent: &Obj, owner: &OwnerReference) -> Result<bool> {
        if self.graph.lock().await.objects.contains_key(&owner.uid) {
            return Ok(true);
        }
        let Some(kind) = served_kinds::find(&self.kinds, &owner.api_version, &owner.kind) else {
            // a kind we cannot look up: never delete on its account
            return Ok(true);
        };
        let idx = self
            .kinds
            .iter()
            .position(|k| std::ptr::eq(k, kind))
            .unwrap_or(0);
        match self
            .api(idx, dependent.namespace.as_deref())
            .get_opt(&owner.name)
            .await?
        {
            Some(o) => Ok(o.metadata.uid.as_deref() == Some(owner.uid.as_str())),
            None => Ok(false),
        }
    }

    async fn check(&self, uid: String) -> Result<()> {
        let Some(obj) = self.graph.lock().await.objects.get(&uid).cloned() else {
            return Ok(());
        };
        if obj.deleting {
            return self.finish_owner(&uid, &obj).await;
        }
        if obj.owners.is_empty() {
            return Ok(());
        }
        let mut dangling = Vec::new();
        for o in &obj.owners {
            if !self.owner_exists(&obj, o).await? {
                dangling.push(o.uid.clone());
            }
        }
        if dangling.is_empty() {
            return Ok(());
        }
        let api = self.api(obj.kind, obj.namespace.as_deref());
        let what = format!(
            "{} {}/{}",
            self.kinds[obj.kind].resource.kind,
            obj.namespace.as_deref().unwrap_or(""),
            obj.name
        );
        if dangling.len() == obj.owners.len() {
            // is any owner itself being deleted in the foreground? then cascade that way
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            };
            tracing::info!(object = %what, "owner gone: deleting dependent");
            match api.delete(&obj.name, &dp).await {
                Ok(_) => Ok(()),
                Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
                Err(e) => Err(e.into()),
            }
        } else {
            let keep: Vec<&OwnerReference> = obj
                .owners
                .iter()
                .filter(|o| !dangling.contains(&o.uid))
                .collect();
            let patch = json!({"metadata": {"ownerReferences": keep, "uid": uid}});
            tracing::info!(object = %what, "removing references to deleted owners");
            match api
                .patch(&obj.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }

    /// An object being deleted with the `foregroundDeletion` or `orphan` finalizer: delete or
    /// orphan its dependents, then remove the finalizer.
    async fn finish_owner(&self, uid: &str, obj: &Obj) -> Result<()> {
        let foreground = obj.finalizers.iter().any(|f| f == FOREGROUND);
        let orphan = obj.finalizers.iter().any(|f| f == ORPHAN);
        if !foreground && !orphan {
            return Ok(());
        }
        let deps: Vec<(String, Obj)> = {
            let g = self.graph.lock().await;
            g.dependents
                .get(uid)
                .into_iter()
                .flatten()
                .filter_map(|d| g.objects.get(d).map(|o| (d.clone(), o.clone())))
                .collect()
        };
        for (duid, d) in &deps {
            let api = self.api(d.kind, d.namespace.as_deref());
            let r = if orphan {
                let keep: Vec<&OwnerReference> = d.owners.iter().filter(|o| o.uid != uid).collect();
                api.patch(
                    &d.name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"ownerReferences": keep}})),
                )
                .await
                .map(|_| ())
            } else if d.deleting {
                Ok(())
            } else {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(duid.clone()),
                        resource_version: None,
                    }),
                    propagation_policy: Some(PropagationPolicy::Foreground),
                    ..Default::default()
                };
                api.delete(&d.name, &dp).await.map(|_| ())
            };
            match r {
                Ok(()) => {}
                Err(e) if is_not_found(&e) || is_conflict(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if foreground && !deps.is_empty() {
            // wait for the dependents' Delete events, which re-check this owner
            return Ok(());
        }
        let remaining: Vec<&String> = obj
            .finalizers
            .iter()
            .filter(|f| f.as_str() != FOREGROUND && f.as_str() != ORPHAN)
            .collect();
        let api = self.api(obj.kind, obj.namespace.as_deref());
        match api
            .patch(
                &obj.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": remaining}})),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Runs the garbage collector until its watches end.
pub async fn run(client: Client) -> Result<()> {
    let collector = Arc::new(Collector {
        client: client.clone(),
        kinds: served_kinds::known(),
        graph: Mutex::new(Graph::default()),
    });
    let streams = collector.kinds.iter().enumerate().map(|(i, k)| {
        // metadata only: owners, finalizers and deletion are all the collector reads
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client.clone(), &k.resource);
        watcher(api, watcher::Config::default())
            .default_backoff()
            .map(move |ev| (i, ev))
            .boxed()
    });
    let mut events = futures::stream::select_all(streams);
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let worker = {
        let collector = collector.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = HashSet::new();
                batch.insert(first);
                while batch.len() < 256 {
                    match rx.try_recv() {
                        Ok(uid) => {
                            batch.insert(uid);
                        }
                        Err(_) => break,
                    }
                }
                let results: Vec<(String, Result<()>)> = futures::stream::iter(batch)
                    .map(|uid| {
                        let c = collector.clone();
                        async move {
                            let r = c.check(uid.clone()).await;
                            (uid, r)
                        }
                    })
                    .buffer_unordered(32)
                    .collect()
                    .await;
                for (uid, r) in results {
                    if let Err(e) = r {
                        tracing::warn!(%uid, error = %e, "garbage collection check failed, retrying");
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                            let _ = tx.send(uid);
                        });
                    }
                }
            }
        })
    };
    while let Some((kind, ev)) = events.next().await {
        match ev {
            Ok(ev) => {
                for uid in collector.on_event(kind, ev).await {
                    let _ = tx.send(uid);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, kind = %collector.kinds[kind].resource.kind, "watch error")
            }
        }
        if worker.is_finished() {
            break;
        }
    }
    Err(Error::Stopped("garbagecollector", "watch ended".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(owners: &[&str]) -> Obj {
        Obj {
            kind: 0,
            namespace: Some("default".into()),
            name: "x".into(),
            owners: owners
                .iter()
                .map(|u| OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "rs".into(),
                    uid: u.to_string(),
                    controller: Some(true),
                    block_owner_deletion: None,
                })
                .collect(),
            deleting: false,
            finalizers: vec![],
        }
    }

    #[test]
    fn graph_tracks_dependents() {
        let mut g = Graph::default();
        g.upsert("owner", obj(&[]));
        g.upsert("a", obj(&["owner"]));
        g.upsert("b", obj(&["owner"]));
        assert_eq!(g.dependents.get("owner").map(|s| s.len()), Some(2));
        let (mut deps, _) = g.remove("owner");
        deps.sort();
        assert_eq!(deps, vec!["a", "b"]);
        g.remove("a");
        g.remove("b");
        assert!(g.dependents.is_empty());
        // re-upserting with other owners moves the edge
        g.upsert("c", obj(&["o1"]));
        g.upsert("c", obj(&["o2"]));
        assert!(!g.dependents.contains_key("o1"));
        assert!(g.dependents.get("o2").is_some_and(|s| s.contains("c")));
    }
}
