//! bpfk-controllers: the controller manager.
//!
//! Level-triggered reconcile loops on kube-rs `Controller`s (rate-limited work queues, watches
//! through the API server, never etcd):
//! [`deployment`] → ReplicaSets, [`replicaset`] → Pods, [`endpoints`] (Endpoints and
//! EndpointSlices), [`nodeipam`] (pod CIDRs), [`nodelifecycle`] (leases, NotReady nodes and
//! their pods, taints), [`taint_eviction`] (pods leave NoExecute-tainted nodes as their
//! tolerations say), [`garbagecollector`] (ownerReferences), [`namespace`] (emptying terminating
//! namespaces), [`clusterrole_aggregation`] (aggregated ClusterRoles' rules) and
//! [`service_accounts`] (default accounts, the root CA ConfigMap, token Secrets). Each can be switched off with `--controllers`.

pub mod certificates;
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
pub mod service_accounts;
pub mod taint_eviction;
pub mod util;
pub mod work_queue;

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
    let mut tasks: Tasks = Vec::new();
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
    service_account_tasks(&client, &config, &mut tasks)?;
    certificate_tasks(&client, &config, &mut tasks)?;
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

type Tasks = Vec<(&'static str, BoxFuture<'static, Result<()>>)>;

/// The ServiceAccount controllers that are enabled and have what they need (the CA file,
/// the signing key); a missing file named by a flag is an error, an unset flag a warning.
fn service_account_tasks(
    client: &Client,
    config: &ControllersConfig,
    tasks: &mut Tasks,
) -> Result<()> {
    let c = config.concurrent_syncs.max(1);
    if config.enabled("serviceaccount") {
        let fut = service_accounts::default_account::run(client.clone(), c);
        tasks.push(("serviceaccount", fut.boxed()));
    }
    let ca_pem = read_flag_file("root-ca-file", config.root_ca_file.as_deref())?;
    let key_pem = read_flag_file(
        "service-account-private-key-file",
        config.service_account_private_key_file.as_deref(),
    )?;
    if config.enabled("root-ca-cert-publisher") {
        match &ca_pem {
            Some(ca) => {
                let fut = service_accounts::root_ca::run(client.clone(), ca.clone(), c);
                tasks.push(("root-ca-cert-publisher", fut.boxed()));
            }
            None => tracing::warn!("root-ca-cert-publisher not started: no --root-ca-file"),
        }
    }
    if config.enabled("serviceaccount-token") {
        match (ca_pem, key_pem) {
            (Some(ca), Some(key)) => {
                let key = bpfk_auth::service_account::ServiceAccountKey::from_pem(&key)
                    .map_err(|e| Error::Config {
                        flag: "service-account-private-key-file",
                        reason: e.to_string(),
                    })?;
                let fut = service_accounts::legacy_tokens::run(client.clone(), key, ca, c);
                tasks.push(("serviceaccount-token", fut.boxed()));
            }
            _ => tracing::warn!(
                "serviceaccount-token not started: it needs --root-ca-file and --service-account-private-key-file"
            ),
        }
    }
    Ok(())
}

/// Kubelet TLS bootstrapping: the approver, the signer (when the signing CA and key are
/// given) and the bootstrap token cleaner.
fn certificate_tasks(client: &Client, config: &ControllersConfig, tasks: &mut Tasks) -> Result<()> {
    let c = config.concurrent_syncs.max(1);
    if config.enabled("csrapproving") {
        let fut = certificates::approver::run(client.clone(), c);
        tasks.push(("csrapproving", fut.boxed()));
    }
    if config.enabled("tokencleaner") {
        tasks.push((
            "tokencleaner",
            certificates::token_cleaner::run(client.clone()).boxed(),
        ));
    }
    if !config.enabled("csrsigning") {
        return Ok(());
    }
    let cert = read_flag_file(
        "cluster-signing-cert-file",
        config.cluster_signing_cert_file.as_deref(),
    )?;
    let key = read_flag_file(
        "cluster-signing-key-file",
        config.cluster_signing_key_file.as_deref(),
    )?;
    let (Some(cert), Some(key)) = (cert, key) else {
        tracing::warn!("csrsigning not started: it needs --cluster-signing-cert-file and --cluster-signing-key-file");
        return Ok(());
    };
    let ca = bpfk_auth::pki::ClusterCa::from_pem(&cert, &key).map_err(|e| Error::Config {
        flag: "cluster-signing-key-file",
        reason: e.to_string(),
    })?;
    let duration = config.cluster_signing_duration;
    tasks.push((
        "csrsigning",
        certificates::signer::run(client.clone(), ca, duration, c).boxed(),
    ));
    Ok(())
}

/// The text of the file a flag names, if it names one.
fn read_flag_file(flag: &'static str, path: Option<&std::path::Path>) -> Result<Option<String>> {
    let Some(path) = path else { return Ok(None) };
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|e| Error::Config {
            flag,
            reason: format!("cannot read {}: {e}", path.display()),
        })
}
