//! bpfk's kubelet: registers the Node and keeps its Lease, runs the pods bound to it through
//! a CRI runtime (containerd) and reports their status.
//!
//! Modules: [`cri`] (tonic client of the `runtime.v1` subset in `proto/`), [`oci`] (local
//! stand-in images from busybox-static, imported with ctr), [`cni`] (bridge + host-local
//! configuration for the node's podCIDR), [`node`] (registration, status, Lease),
//! [`pods`] (watch → one [`pod_worker`] per pod, which decides with [`pod_actions`] and acts
//! through CRI), [`cri_config`] (Pod → CRI sandbox and container configs),
//! [`status`] (CRI state → PodStatus), [`prober`] (liveness, readiness and startup probes),
//! [`lifecycle`] and [`termination`] (hooks, kill order, termination messages), [`logs`]
//! (CRI log files) and [`log_server`] (the node endpoint: `/containerLogs/...` for pods/log
//! and [`stream_server`]'s exec/attach/port-forward, over TLS with [`serving_cert`]'s
//! certificate, for the clients [`endpoint_auth`] lets in), [`bootstrap`] (joining:
//! the node's client certificate),
//! [`events`] (pod events), [`objects`] (the ConfigMaps and Secrets pods refer to), [`env`]
//! and [`downward`] (container environment, Downward API), [`volumes`] (configMap, secret,
//! downwardAPI and projected volumes, written atomically), [`images`] and [`keyring`] (pulls
//! through CRI with pull-secret credentials and back-off), [`image_gc`] (image GC by disk
//! usage), [`pod_dns`] (pods' resolv.conf by dnsPolicy).

pub mod bootstrap;
pub mod cni;
pub mod config;
pub mod cri;
pub mod cri_config;
pub mod downward;
pub mod endpoint_auth;
pub mod env;
pub mod error;
pub mod etc_hosts;
pub mod events;
pub mod image_gc;
pub mod images;
pub mod keyring;
pub mod lifecycle;
pub mod log_rotation;
pub mod log_server;
pub mod log_stream;
pub mod logs;
pub mod node;
pub mod objects;
pub mod pod_actions;
pub mod pod_dns;
pub mod pod_worker;
pub mod pods;
pub mod prober;
pub mod security_context;
pub mod service_env;
pub mod serving_cert;
pub mod status;
pub mod stream_server;
pub mod termination;
pub mod tokens;
pub mod volumes;

use std::sync::Arc;

pub use config::{Capacity, Config, KubeletArgs};
pub use error::{Error, Result};

/// Aborts a spawned task when dropped (so dropping [`run`]'s future stops everything).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Run the kubelet for `config.node_name` until its pod watch ends for good. Dropping the
/// future stops the heartbeat and every pod worker (containers keep running; a restarted
/// kubelet adopts their sandboxes).
pub async fn run(client: kube::Client, config: Config) -> Result<()> {
    run_sharing_pod_cidr(client, config, None).await
}

/// [`run`], handing the node's pod range to `pod_cidr_to` as soon as the kubelet knows it
/// (`config.pod_cidr`, else the Node's `spec.podCIDR` from node IPAM), so a service proxy
/// in the same process need not poll the Node for it.
pub async fn run_sharing_pod_cidr(
    client: kube::Client,
    config: Config,
    pod_cidr_to: Option<tokio::sync::oneshot::Sender<String>>,
) -> Result<()> {
    node::check_config(&config)?;
    let cri = cri::CriClient::connect(&config.runtime_socket).await?;
    let version = cri.version().await?;
    tracing::info!(
        node = %config.node_name,
        runtime = %version.runtime_name,
        version = %version.runtime_version,
        api = %version.runtime_api_version,
        "connected to container runtime"
    );
    let node = node::register(&client, &config, &cri).await?;
    let pod_cidr = node::wait_pod_cidr(&client, &config).await?;
    if let Some(to) = pod_cidr_to {
        // A receiver that is gone no longer needs it.
        let _ = to.send(pod_cidr.clone());
    }
    let conflist = cni::write_conflist(
        &config.cni_conf_dir,
        &pod_cidr,
        &config.bridge_name,
        &config.cni_state_dir,
    )?;
    tracing::info!(path = %conflist.display(), %pod_cidr, "CNI configuration written");
    let _heartbeat = AbortOnDrop(tokio::spawn(node::heartbeat(
        client.clone(),
        config.clone(),
        cri.clone(),
        node,
    )));
    let _image_gc = AbortOnDrop(tokio::spawn(image_gc::run(
        cri.clone(),
        image_gc::GcPolicy {
            high_percent: config.image_gc_high_percent,
            low_percent: config.image_gc_low_percent,
            min_age: config.image_gc_min_age,
            period: config.image_gc_period,
            keep: vec![config.pod_infra_image.clone()],
        },
    )));
    let _log_rotation = AbortOnDrop(tokio::spawn(log_rotation::run(
        cri.clone(),
        config.log_rotation,
    )));
    let backoff =
        images::PullBackOff::new(config.image_pull_backoff, config.image_pull_backoff_max);
    let capacity = config
        .capacity
        .clone()
        .unwrap_or_else(node::machine_capacity);
    let services =
        bpfk_common::informer::Informer::new(kube::Api::all(client.clone()), Default::default());
    let service_store = services.store();
    let _services = AbortOnDrop(tokio::spawn(services.run("services")));
    let ctx = Arc::new(pod_worker::Ctx {
        services: service_store,
        host_ip: node::host_ip(&config),
        objects: objects::ObjectCache::new(client.clone(), config.object_cache_ttl),
        tokens: tokens::TokenManager::new(client.clone()),
        images: images::ImageManager::new(cri.clone(), config.serialize_image_pulls, backoff),
        node_capacity: capacity,
        client,
        cri,
        config,
    });
    pods::run(ctx).await
}
