//! ClusterRole aggregation: a ClusterRole with an `aggregationRule` gets as its rules the
//! union of the rules of every other ClusterRole its selectors match, in their name order
//! (how `admin`, `edit` and `view` pick up `system:aggregate-to-*` and the roles users label
//! `rbac.authorization.k8s.io/aggregate-to-view: "true"`). Any ClusterRole's change
//! re-reconciles every aggregated one.

use std::sync::Arc;
use std::time::Duration;

use bpfk_apimachinery::selectors::Selector;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::error::{Error, Result};
use crate::work_queue::WorkQueue;

/// Shared state of the reconciler.
pub struct Context {
    roles: Api<ClusterRole>,
    store: Store<ClusterRole>,
}

/// Runs the controller until its watch ends.
pub async fn run(client: Client, concurrency: u16) -> Result<()> {
    let roles: Api<ClusterRole> = Api::all(client);
    let queue = WorkQueue::new("clusterrole-aggregation");
    let controller = queue.controller(roles.clone(), watcher::Config::default());
    let store = controller.store();
    let aggregated = store.clone();
    let ctx = Arc::new(Context {
        roles: roles.clone(),
        store,
    });
    let results = controller
        .watches(
            roles,
            watcher::Config::default(),
            queue.mapper(move |_changed: ClusterRole| aggregating(&aggregated)),
        )
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .run(queue.reconciler(reconcile), error_policy, ctx);
    queue.run_until_stopped(results).await
}

/// References to every ClusterRole that aggregates.
fn aggregating(store: &Store<ClusterRole>) -> Vec<ObjectRef<ClusterRole>> {
    store
        .state()
        .iter()
        .filter(|r| r.aggregation_rule.is_some())
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

fn error_policy(role: Arc<ClusterRole>, e: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(clusterrole = %role.name_any(), error = %e, "aggregation failed");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(role: Arc<ClusterRole>, ctx: Arc<Context>) -> Result<Action> {
    let Some(rule) = &role.aggregation_rule else {
        return Ok(Action::await_change());
    };
    let selectors = rule
        .cluster_role_selectors
        .iter()
        .flatten()
        .map(Selector::from_label_selector)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Invalid {
            object: role.name_any(),
            field: "aggregationRule.clusterRoleSelectors".into(),
            reason: e.to_string(),
        })?;
    let mut sources: Vec<Arc<ClusterRole>> = ctx
        .store
        .state()
        .into_iter()
        .filter(|r| r.name_any() != role.name_any())
        .filter(|r| selectors.iter().any(|s| s.matches(r.labels())))
        .collect();
    sources.sort_by_key(|r| r.name_any());
    let rules = union_of(sources.iter().flat_map(|r| r.rules.iter().flatten()));
    if role.rules.as_deref().unwrap_or_default() == rules.as_slice() {
        return Ok(Action::await_change());
    }
    let mut updated = (*role).clone();
    updated.rules = Some(rules);
    tracing::info!(clusterrole = %role.name_any(), sources = sources.len(), "aggregating rules");
    ctx.roles
        .replace(&role.name_any(), &PostParams::default(), &updated)
        .await?;
    Ok(Action::await_change())
}

/// `rules` in order, each once.
fn union_of<'a>(rules: impl Iterator<Item = &'a PolicyRule>) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    for rule in rules {
        if !out.contains(rule) {
            out.push(rule.clone());
        }
    }
    out
}
