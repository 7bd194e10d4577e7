//! bpfk-controllers: the controller manager.
//!
//! Level-triggered reconcile loops on kube-rs `Controller`s (rate-limited work queues, watches
//! through the API server, never etcd):
//! [`deployment`] → ReplicaSets, [`replicaset`] → Pods, [`endpoints`] (Endpoints and
//! EndpointSlices), [`nodeipam`] (pod CIDRs), [`nodelifecycle`] (leases, NotReady, taints,
//! eviction), [`garbagecollector`] (ownerReferences) and [`namespace`] (emptying terminating
//! namespaces). Each can be switched off with `--controllers`.

pub mod config;
pub mod deployment;
pub mod endpoints;
pub mod error;
pub mod expectations;
pub mod garbagecollector;
pub mod kinds;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod replicaset;
pub mod util;

use futures::future::BoxFuture;
use futures::FutureExt;
use kube::Client;
use tokio::task::JoinSet;

pub use config::ControllersConfig;
pub use error::{Error, Result};

/// Runs every enabled controller; returns when one of them stops (with its error).
pub async fn run(client: Client, config: ControllersConfig) -> Result<()> {
    config.validate()?;
    let c = config.concurrent_syncs.max(1);
    let mut tasks: Vec<(&'static str, BoxFuture<'static, Result<()>>)> = Vec::new();
    if config.enabled("deployment") {
        tasks.push(("deployment", deployment::run(client.clone(), c).boxed()));
    }
    if config.enabled("replicaset") {
        tasks.push(("replicaset", replicaset::run(client.clone(), c).boxed()));
    }
    let (ep, eps) = (config.enabled("endpoint"), config.enabled("endpointslice"));
    if ep || eps {
        tasks.push((
            "endpoint",
            endpoints::run(client.clone(), c, ep, eps).boxed(),
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
            eviction_timeout: config.pod_eviction_timeout,
        };
        tasks.push((
            "nodelifecycle",
            nodelifecycle::run(client.clone(), settings).boxed(),
        ));
    }
    if config.enabled("garbagecollector") {
        tasks.push((
            "garbagecollector",
            garbagecollector::run(client.clone()).boxed(),
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
