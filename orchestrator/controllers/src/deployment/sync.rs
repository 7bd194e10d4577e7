//! The writes a Deployment sync makes to its ReplicaSets (scale, create, revision, prune) and
//! to the Deployment's own annotations.

use std::collections::BTreeMap;

use bpfk_common::events::{self, EventType};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::hash::POD_TEMPLATE_HASH;
use super::{revision, rs_replicas, rs_status, Context, DESIRED_REPLICAS, MAX_REPLICAS, REVISION};
use crate::error::{is_conflict, is_not_found, Result};
use crate::util::{controlled_by, controller_ref, key, owner_ref, selector};

/// One sync of one Deployment.
pub(super) struct Sync<'a> {
    pub ctx: &'a Context,
    pub d: &'a Deployment,
    pub spec: &'a DeploymentSpec,
    pub ns: String,
    pub name: String,
}

impl Sync<'_> {
    pub fn rs_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.ctx.client.clone(), &self.ns)
    }

    fn deployment_api(&self) -> Api<Deployment> {
        Api::namespaced(self.ctx.client.clone(), &self.ns)
    }

    async fn patch_rs(&self, rs: &ReplicaSet, patch: serde_json::Value) -> Result<ReplicaSet> {
        let params = PatchParams::default();
        Ok(self
            .rs_api()
            .patch(&rs.name_any(), &params, &Patch::Merge(&patch))
            .await?)
    }

    /// Sets a ReplicaSet's replicas (and the annotations Kubernetes keeps with them).
    pub async fn scale(&self, rs: &mut ReplicaSet, replicas: i32, max_surge: i32) -> Result<()> {
        if rs_replicas(rs) == replicas {
            return Ok(());
        }
        let desired = self.spec.replicas.unwrap_or(1);
        let patch = json!({
            "metadata": {"annotations": {
                DESIRED_REPLICAS: desired.to_string(),
                MAX_REPLICAS: (desired + max_surge).to_string(),
            }},
            "spec": {"replicas": replicas}
        });
        let from = rs_replicas(rs);
        tracing::info!(deployment = %format!("{}/{}", self.ns, self.name), replicaset = %rs.name_any(),
            from, to = replicas, "scaling replica set");
        *rs = self.patch_rs(rs, patch).await?;
        self.record_scaling(rs, from, replicas);
        Ok(())
    }

    /// `ScalingReplicaSet` about the Deployment, related to the ReplicaSet at the version the
    /// scaling wrote (so each scaling is its own event, not a repeat of the last one).
    fn record_scaling(&self, rs: &ReplicaSet, from: i32, to: i32) {
        let direction = if to > from { "up" } else { "down" };
        let note = format!(
            "Scaled {direction} replica set {} from {from} to {to}",
            rs.name_any()
        );
        let mut ev = events::event(EventType::Normal, "ScalingReplicaSet", "Scale", note);
        let mut related = rs.object_ref(&());
        related.resource_version = rs.metadata.resource_version.clone();
        ev.secondary = Some(related);
        let (recorder, regarding) = (self.ctx.recorder.clone(), self.d.object_ref(&()));
        tokio::spawn(async move { events::record(&recorder, &regarding, ev).await });
    }

    /// Creates the ReplicaSet for the current template; `None` when a foreign ReplicaSet holds
    /// its name (the collision count is bumped for the next sync).
    pub async fn create_new(
        &self,
        hash: &str,
        replicas: i32,
        revision: i64,
        max_surge: i32,
    ) -> Result<Option<ReplicaSet>> {
        let rs = new_replica_set(self.d, hash, replicas, revision, max_surge);
        let e = match self.rs_api().create(&PostParams::default(), &rs).await {
            Ok(rs) => {
                tracing::info!(deployment = %format!("{}/{}", self.ns, self.name), replicaset = %rs.name_any(),
                    replicas, "created replica set");
                if replicas > 0 {
                    self.record_scaling(&rs, 0, replicas);
                }
                return Ok(Some(rs));
            }
            Err(e) => e,
        };
        if !is_conflict(&e) {
            return Err(e.into());
        }
        // our cache may lag: is it ours?
        let existing = self.rs_api().get(&rs.name_any()).await?;
        if controlled_by(
            &existing.metadata,
            self.d.metadata.uid.as_deref().unwrap_or(""),
        ) {
            return Ok(Some(existing));
        }
        self.bump_collision_count().await?;
        Ok(None)
    }

    async fn bump_collision_count(&self) -> Result<()> {
        let status = self.d.status.as_ref();
        let count = status.and_then(|s| s.collision_count).unwrap_or(0) + 1;
        let patch = Patch::Merge(json!({"status": {"collisionCount": count}}));
        self.deployment_api()
            .patch_status(&self.name, &PatchParams::default(), &patch)
            .await?;
        Ok(())
    }

    /// Keeps the new ReplicaSet's revision the highest (also after a rollback to an old
    /// template).
    pub async fn ensure_newest_revision(&self, rs: &mut ReplicaSet, max_old: i64) -> Result<()> {
        if revision(rs) > max_old {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {REVISION: (max_old + 1).to_string()}}});
        *rs = self.patch_rs(rs, patch).await?;
        Ok(())
    }

    /// Copies the new ReplicaSet's revision onto the Deployment.
    pub async fn sync_revision_annotation(&self, new_rs: Option<&ReplicaSet>) -> Result<()> {
        let Some(rs) = new_rs else {
            return Ok(());
        };
        let rev = revision(rs).to_string();
        if self.d.annotations().get(REVISION) == Some(&rev) {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
        self.deployment_api()
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Whether any pod of the old ReplicaSets still exists and has not finished (Recreate waits
    /// for them, terminating ones included). Asks the API server: this controller keeps no pod
    /// cache.
    pub async fn old_pods_exist(&self, old: &[ReplicaSet]) -> Result<bool> {
        let uids: Vec<&str> = old
            .iter()
            .filter_map(|rs| rs.metadata.uid.as_deref())
            .collect();
        if uids.is_empty() {
            return Ok(false);
        }
        let sel = selector(&self.d.metadata, "spec.selector", &self.spec.selector)?;
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let pods = api
            .list(&ListParams::default().labels(&sel.to_string()))
            .await?;
        Ok(pods.items.iter().any(|p| {
            controller_ref(&p.metadata).is_some_and(|o| uids.contains(&o.uid.as_str()))
                && !matches!(
                    p.status.as_ref().and_then(|st| st.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        }))
    }

    /// Deletes the oldest zero-replica ReplicaSets beyond `revisionHistoryLimit` (default 10).
    pub async fn cleanup_history(&self, old: &[ReplicaSet]) -> Result<()> {
        let limit = self.spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        for rs in history_to_prune(old, limit) {
            tracing::info!(replicaset = %key(&rs.metadata), "deleting old replica set beyond revision history limit");
            match self
                .rs_api()
                .delete(&rs.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// The idle old ReplicaSets (no replicas, no pods) beyond the `limit` newest ones.
pub fn history_to_prune(old: &[ReplicaSet], limit: usize) -> Vec<&ReplicaSet> {
    let mut idle: Vec<&ReplicaSet> = old
        .iter()
        .filter(|rs| {
            rs.metadata.deletion_timestamp.is_none() && rs_replicas(rs) == 0 && rs_status(rs).0 == 0
        })
        .collect();
    if idle.len() <= limit {
        return Vec::new();
    }
    idle.sort_by_key(|rs| revision(rs));
    let excess = idle.len() - limit;
    idle.truncate(excess);
    idle
}

/// The ReplicaSet `<deployment>-<hash>` for the Deployment's current template.
pub fn new_replica_set(
    d: &Deployment,
    hash: &str,
    replicas: i32,
    revision: i64,
    max_surge: i32,
) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let mut template = spec.template;
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.into(), hash.into());
    let rs_labels = meta.labels.clone().unwrap_or_default();
    let mut sel: LabelSelector = spec.selector;
    sel.match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.into(), hash.into());
    let desired = spec.replicas.unwrap_or(1);
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", d.name_any())),
            namespace: Some(d.namespace().unwrap_or_else(|| "default".into())),
            labels: Some(rs_labels),
            annotations: Some(BTreeMap::from([
                (REVISION.to_string(), revision.to_string()),
                (DESIRED_REPLICAS.to_string(), desired.to_string()),
                (MAX_REPLICAS.to_string(), (desired + max_surge).to_string()),
            ])),
            owner_references: Some(vec![owner_ref(d)]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector: sel,
            template: Some(template),
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_replica_set_carries_hash_revision_and_owner() {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "prod", "uid": "d1"},
            "spec": {"replicas": 4, "minReadySeconds": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}}}
        }))
        .unwrap();
        let rs = new_replica_set(&d, "abc", 2, 5, 1);
        assert_eq!(rs.name_any(), "web-abc");
        assert_eq!(rs.namespace().as_deref(), Some("prod"));
        assert_eq!(
            rs.labels().get(POD_TEMPLATE_HASH).map(String::as_str),
            Some("abc")
        );
        assert_eq!(revision(&rs), 5);
        assert_eq!(
            rs.annotations().get(MAX_REPLICAS).map(String::as_str),
            Some("5")
        );
        let spec = rs.spec.as_ref().unwrap();
        assert_eq!((spec.replicas, spec.min_ready_seconds), (Some(2), Some(3)));
        let sel = spec.selector.match_labels.as_ref().unwrap();
        assert_eq!(sel.get(POD_TEMPLATE_HASH).map(String::as_str), Some("abc"));
        assert!(controlled_by(&rs.metadata, "d1"));
    }

    #[test]
    fn prunes_the_oldest_idle_revisions_beyond_the_limit() {
        let rs = |name: &str, rev: i64, replicas: i32| -> ReplicaSet {
            serde_json::from_value(json!({
                "metadata": {"name": name, "annotations": {REVISION: rev.to_string()}},
                "spec": {"replicas": replicas, "selector": {}},
                "status": {"replicas": replicas}
            }))
            .unwrap()
        };
        let old = [
            rs("r3", 3, 0),
            rs("r1", 1, 0),
            rs("busy", 0, 2),
            rs("r2", 2, 0),
        ];
        let names = |v: Vec<&ReplicaSet>| v.iter().map(|r| r.name_any()).collect::<Vec<_>>();
        assert_eq!(names(history_to_prune(&old, 1)), ["r1", "r2"]);
        assert!(history_to_prune(&old, 3).is_empty());
    }
}
