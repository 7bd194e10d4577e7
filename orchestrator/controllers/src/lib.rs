//! bpfk-controllers: the controller manager.
//!
//! Level-triggered reconcile loops on kube-rs `Controller`s (rate-limited work queues, watches
//! through the API server, never etcd):
//! [`deployment`] → ReplicaSets, [`replicaset`] → Pods, [`endpoints`] (Endpoints and
//! EndpointSlices), [`nodeipam`] (pod CIDRs), [`nodelifecycle`] (leases, NotReady nodes and
//! their pods, taints), [`taint_eviction`] (pods leave NoExecute-tainted nodes as their
//! tolerations say), [`garbagecollector`] (ownerReferences), [`namespace`] (emptying terminating
//! namespaces) and [`clusterrole_aggregation`] (aggregated ClusterRoles' rules). Each can be switched off with `--controllers`.

pub mod claim;
pub mod clusterrole_aggregation;
pub mod config;
pub mod deployment;
pub mod endpoints;
pub mod error;
pub mod expectations;
pub mod garbagecollector;
pub mod metrics;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod replicaset;
pub mod served_kinds;
pub mod taint_eviction;
pub mod util;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use tokio::task::JoinSet;

pub use bpfk_common::informer;

pub use config::ControllersConfig;
pub use error::{Error, Result};

/// Runs every enabled controller; returns when one of them stops (with its error).
pub async fn run(client: Client, config: ControllersConfig) -> Result<()> {
    let pods = pod_informer(&client);
    run_with_pods(client, config, pods).await
}

/// The informer of all pods [`run_with_pods`] takes: subscribe to it before (for the
/// scheduler of the same process, with [`informer::Informer::subscribe_events`]) and its one
/// watch serves them too.
pub fn pod_informer(client: &Client) -> informer::Informer<Pod> {
    informer::Informer::new(Api::all(client.clone()), Default::default())
}

/// [`run`] with a pod informer that other components of the process may also follow; it
/// runs (here) when a controller needs it or anything subscribed to it.
pub async fn run_with_pods(
    client: Client,
    config: ControllersConfig,
    mut pods: informer::Informer<Pod>,
) -> Result<()> {
    config.validate()?;
    let c = config.concurrent_syncs.max(1);
    let mut tasks: Vec<(&'static str, BoxFuture<'static, Result<()>>)> = Vec::new();
    if config.enabled("deployment") {
        tasks.push(("deployment", deployment::run(client.clone(), c).boxed()));
    }
    // one pod watch for every controller that follows pods
    if config.enabled("replicaset") {
        let (store, changes) = (pods.store(), pods.subscribe());
        tasks.push((
            "replicaset",
            replicaset::run(client.clone(), c, store, changes).boxed(),
        ));
    }
    let (ep, eps) = (config.enabled("endpoint"), config.enabled("endpointslice"));
    if ep || eps {
        let (store, changes) = (pods.store(), pods.subscribe());
        tasks.push((
            "endpoint",
            endpoints::run(client.clone(), c, ep, eps, store, changes).boxed(),
        ));
    }
    if config.enabled("nodeipam") {
        let (cidr, mask) = (config.cluster_cidr.clone(), config.node_cidr_mask_size);
        // check the flags before starting anything
        nodeipam::CidrSet::new(&cidr, mask)?;
        let client = client.clone();
        tasks.push((
            "nodeipam",
            async move { nodeipam::run(client, &cidr, mask, c).await }.boxed(),
        ));
    }
    if config.enabled("nodelifecycle") {
        let settings = nodelifecycle::Settings {
            grace_period: config.node_monitor_grace_period,
            monitor_period: config.node_monitor_period,
        };
        tasks.push((
            "nodelifecycle",
            nodelifecycle::run(client.clone(), settings, pods.store()).boxed(),
        ));
    }
    let pods_needed = ["replicaset", "endpoint", "endpointslice", "nodelifecycle"]
        .iter()
        .any(|n| config.enabled(n))
        || pods.has_subscribers();
    if pods_needed {
        tasks.push((
            "pod informer",
            async move {
                pods.run("pods").await;
                Ok(())
            }
            .boxed(),
        ));
    }
    if config.enabled("garbagecollector") {
        tasks.push((
            "garbagecollector",
            garbagecollector::run(client.clone()).boxed(),
        ));
    }
    if config.enabled("clusterrole-aggregation") {
        let client = client.clone();
        tasks.push((
            "clusterrole-aggregation",
            clusterrole_aggregation::run(client, c).boxed(),
        ));
    }
    if config.enabled("namespace") {
        tasks.push(("namespace", namespace::run(client.clone(), c).boxed()));
    }
    let mut set = JoinSet::new();
    for (name, fut) in tasks {
        tracing::info!(controller = name, "starting controller");
        set.spawn(async move { (name, fut.await) });
    }
    match set.join_next().await {
        None => Ok(()),
        Some(Ok((name, Ok(())))) => Err(Error::Stopped(name, "returned".into())),
        Some(Ok((_, Err(e)))) => Err(e),
        Some(Err(e)) => Err(Error::Stopped("controller task", e.to_string())),
    }
}
