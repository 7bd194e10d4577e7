//! bpfk's Kubernetes-compatible API server: the Kubernetes REST API (JSON over HTTP) on top of
//! [`bpfk_store`], so that kubectl and kube-rs clients work against it unchanged.
//!
//! * [`router`] maps requests onto the REST storage in [`rest`] (get/list/watch/create/update/
//!   patch/delete and the status, binding, scale and finalize subresources);
//! * [`admission`] holds kind-specific rules (namespace lifecycle, ClusterIP/NodePort allocation);
//! * [`discovery`] and [`openapi`] serve what kubectl reads before anything else.

pub mod admission;
pub mod allocator;
pub mod cluster_dns;
pub mod codec;
pub mod compaction;
pub mod discovery;
pub mod discovery_v2;
pub mod error;
pub mod kubeconfig;
pub mod metrics;
pub mod object;
pub mod openapi;
pub mod path;
pub mod query;
pub mod rest;
pub mod router;
pub mod state;
pub mod streaming;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bpfk_apimachinery::registry;
use bpfk_store::etcd::EtcdStore;
use serde_json::json;

pub use state::AppState;

/// Flags of the API server.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiServerConfig {
    /// etcd client URLs, comma separated.
    #[arg(
        long = "etcd-servers",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub etcd_servers: Vec<String>,
    /// Address to serve the API on (plain HTTP; keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Write a kubeconfig for this server to PATH once it listens.
    #[arg(long = "write-kubeconfig", value_name = "PATH")]
    pub write_kubeconfig: Option<PathBuf>,
    /// Seconds a pod tolerates `node.kubernetes.io/not-ready:NoExecute` when it has no
    /// toleration of it (the DefaultTolerationSeconds admission).
    #[arg(long = "default-not-ready-toleration-seconds", default_value_t = 300)]
    pub default_not_ready_toleration_seconds: i64,
    /// Seconds a pod tolerates `node.kubernetes.io/unreachable:NoExecute` when it has no
    /// toleration of it.
    #[arg(long = "default-unreachable-toleration-seconds", default_value_t = 300)]
    pub default_unreachable_toleration_seconds: i64,
    /// How often etcd's history is compacted (a Go duration: 5m, 30s; 0 = never), as
    /// kube-apiserver's flag of the same name.
    #[arg(long = "etcd-compaction-interval", default_value = "5m", value_parser = compaction::parse_interval)]
    pub etcd_compaction_interval: Duration,
    /// How long Events are kept after their last write (a Go duration), as kube-apiserver's
    /// `--event-ttl`: they are written under an etcd lease.
    #[arg(long = "event-ttl", default_value = "1h", value_parser = parse_event_ttl)]
    pub event_ttl: Duration,
}

/// `--event-ttl`: a positive Go duration.
fn parse_event_ttl(text: &str) -> std::result::Result<Duration, String> {
    match compaction::parse_interval(text)? {
        d if d.is_zero() => Err(format!("{text:?}: the event TTL must be positive")),
        d => Ok(d),
    }
}

impl ApiServerConfig {
    /// What the admission of writes was configured with.
    pub fn admission(&self) -> admission::AdmissionSettings {
        admission::AdmissionSettings {
            not_ready_toleration_seconds: self.default_not_ready_toleration_seconds,
            unreachable_toleration_seconds: self.default_unreachable_toleration_seconds,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot set up the etcd client: {0}")]
    Store(#[from] bpfk_store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A started API server.
pub struct Running {
    /// The address it listens on (the real port when the flag said port 0).
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Running {
    /// `http://ADDR`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Wait until the server stops (it stops on error only).
    pub async fn wait(self) -> Result<()> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(Error::Serve(std::io::Error::other(e))),
        }
    }
}

/// Connect to etcd, start the watch caches and serve the API.
pub async fn start(config: &ApiServerConfig) -> Result<Running> {
    let store = Arc::new(EtcdStore::connect(&config.etcd_servers).await?);
    let state = AppState::with_settings(store, config.admission(), config.event_ttl);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Listen {
        addr: config.listen,
        source,
    })?;
    tokio::spawn(bootstrap(state.clone()));
    tokio::spawn(compaction::run(
        state.store.clone(),
        config.etcd_compaction_interval,
    ));
    if let Some(path) = &config.write_kubeconfig {
        kubeconfig::write(path, &format!("http://{addr}")).map_err(|source| Error::Kubeconfig {
            path: path.clone(),
            source,
        })?;
    }
    tracing::info!(%addr, etcd = ?config.etcd_servers, "API server listening");
    let app = router::router(state.clone());
    let task = tokio::spawn(async move { axum::serve(listener, app).await.map_err(Error::Serve) });
    Ok(Running { addr, state, task })
}

/// Serve until the process is stopped.
pub async fn run(config: ApiServerConfig) -> Result<()> {
    start(&config).await?.wait().await
}

/// Create the namespaces that always exist, then repair the Service allocation keys, then
/// create the `kube-dns` Service; each retried until etcd answers.
async fn bootstrap(state: Arc<AppState>) {
    let Some(res) = registry::find("", "v1", "namespaces") else {
        return;
    };
    let mut delay = Duration::from_millis(200);
    loop {
        let mut pending = false;
        for ns in admission::SYSTEM_NAMESPACES
            .iter()
            .chain(["kube-node-lease"].iter())
        {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match rest::write::create(&state, res, None, obj, &query::Query::default()).await {
                Ok(_) | Err(error::ApiError::AlreadyExists { .. }) => {}
                Err(e) => {
                    tracing::warn!(
                        namespace = ns,
                        "cannot create system namespace yet: {}",
                        e.message()
                    );
                    pending = true;
                }
            }
        }
        if !pending {
            tracing::info!("system namespaces present");
            break;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    let mut delay = Duration::from_millis(200);
    loop {
        match allocator::repair_allocations(&state).await {
            Ok(report) => {
                tracing::info!(
                    restored = report.restored.len(),
                    released = report.released.len(),
                    doubly_held = report.doubly_held.len(),
                    "service allocations checked"
                );
                break;
            }
            Err(e) => tracing::warn!("cannot check service allocations yet: {}", e.message()),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    cluster_dns::ensure_kube_dns(&state).await;
}
