//! bpfk's Kubernetes-compatible API server: the Kubernetes REST API (JSON over HTTP) on top of
//! [`bpfk_store`], so that kubectl and kube-rs clients work against it unchanged.
//!
//! * [`router`] maps requests onto the REST storage in [`rest`] (get/list/watch/create/update/
//!   patch/delete and the status, binding, scale and finalize subresources);
//! * [`admission`] holds kind-specific rules (namespace lifecycle, ClusterIP/NodePort allocation);
//! * [`discovery`] and [`openapi`] serve what kubectl reads before anything else.

pub mod admission;
pub mod allocator;
pub mod api_services;
pub mod authn;
pub mod authz;
pub mod certificates;
pub mod cluster_dns;
pub mod codec;
pub mod compaction;
pub mod discovery;
pub mod discovery_v2;
pub mod error;
pub mod escalation;
pub mod join_token;
pub mod kubeconfig;
pub mod kubernetes_service;
pub mod managed_fields;
pub mod metrics;
mod node_authorizer;
mod node_restriction;
pub mod object;
pub mod openapi;
pub mod path;
pub mod pod_security_admission;
pub mod protobuf;
pub mod query;
pub mod rbac_bootstrap;
pub mod rest;
pub mod router;
pub mod serve;
pub mod service_account_admission;
pub mod service_accounts;
pub mod state;
pub mod streaming;
pub mod warnings;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bpfk_apimachinery::registry;
use bpfk_auth::pki::{self, ServerPki};
use bpfk_auth::token_file::TokenFile;
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
    /// The CA that signed etcd's serving certificate (then every `--etcd-servers` URL is
    /// https).
    #[arg(long = "etcd-cafile", value_name = "PATH")]
    pub etcd_cafile: Option<PathBuf>,
    /// Client certificate for etcd's `--client-cert-auth` (with `--etcd-keyfile`).
    #[arg(long = "etcd-certfile", value_name = "PATH", requires = "etcd_keyfile")]
    pub etcd_certfile: Option<PathBuf>,
    /// The key of `--etcd-certfile`.
    #[arg(long = "etcd-keyfile", value_name = "PATH", requires = "etcd_certfile")]
    pub etcd_keyfile: Option<PathBuf>,
    /// Address to serve the API on (HTTPS, with the certificate under `--data-dir`).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Write an admin kubeconfig for this server (https, the CA, the admin's client
    /// certificate; mode 0600) to PATH once it listens.
    #[arg(long = "write-kubeconfig", value_name = "PATH")]
    pub write_kubeconfig: Option<PathBuf>,
    /// Where the server keeps its PKI (`pki/`: cluster CA, serving certificate,
    /// service-account key, admin certificate), made on first start and reused after.
    #[arg(
        long = "data-dir",
        value_name = "DIR",
        default_value = "/var/lib/bpfk/server"
    )]
    pub data_dir: PathBuf,
    /// More names (DNS names or IP addresses) the serving certificate is valid for, besides
    /// loopback, the listen address, the host name and the `kubernetes` Service's names.
    #[arg(long = "tls-san", value_name = "NAME", value_delimiter = ',')]
    pub tls_san: Vec<String>,
    /// The CA (PEM) kubelets' serving certificates must chain to, as kube-apiserver's flag
    /// of the same name; the cluster CA (which signs `kubernetes.io/kubelet-serving`
    /// requests) when not given.
    #[arg(long = "kubelet-certificate-authority", value_name = "PATH")]
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// A static token file (CSV lines `token,user,uid[,"group1,group2"]`), as
    /// kube-apiserver's flag of the same name.
    #[arg(long = "token-auth-file", value_name = "PATH")]
    pub token_auth_file: Option<PathBuf>,
    /// The issuer (`iss`) of the ServiceAccount tokens this server signs and accepts.
    #[arg(long = "service-account-issuer", default_value = bpfk_auth::service_account::DEFAULT_ISSUER)]
    pub service_account_issuer: String,
    /// Audiences of tokens meant for this API server (the issuer when not set).
    #[arg(long = "api-audiences", value_delimiter = ',')]
    pub api_audiences: Vec<String>,
    /// The longest lifetime a TokenRequest gets (a Go duration); longer requests are cut.
    #[arg(long = "service-account-max-token-expiration", default_value = "24h", value_parser = parse_event_ttl)]
    pub service_account_max_token_expiration: Duration,
    /// The address the `kubernetes` Service's endpoints point to (default: the listen
    /// address unless it is loopback or unspecified, then none).
    #[arg(long = "advertise-address")]
    pub advertise_address: Option<std::net::IpAddr>,
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

/// `--event-ttl`, `--service-account-max-token-expiration`: a positive Go duration.
fn parse_event_ttl(text: &str) -> std::result::Result<Duration, String> {
    match compaction::parse_interval(text)? {
        d if d.is_zero() => Err(format!("{text:?}: the duration must be positive")),
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
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("PKI under --data-dir: {0}")]
    Pki(#[from] bpfk_auth::pki::PkiError),
    #[error("TLS: {0}")]
    Tls(#[from] bpfk_auth::tls::TlsError),
    #[error("the service-account key under --data-dir: {0}")]
    ServiceAccountKey(String),
    #[error("{flag} {path}: {reason}")]
    EtcdTls {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("--kubelet-certificate-authority {path}: {reason}")]
    KubeletCa { path: PathBuf, reason: String },
    #[error("--token-auth-file {path}: {reason}")]
    TokenFile { path: PathBuf, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A started API server.
pub struct Running {
    /// The address it listens on (the real port when the flag said port 0).
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    /// The cluster PKI it serves with.
    pub pki: Arc<ServerPki>,
    /// Served over TLS (not [`Transport::PlainFixedUser`]).
    tls: bool,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Running {
    /// `https://ADDR` (loopback when it listens on every address; `http://` when served
    /// with [`Transport::PlainFixedUser`]).
    pub fn url(&self) -> String {
        match self.tls {
            true => server_url(self.addr),
            false => server_url(self.addr).replacen("https://", "http://", 1),
        }
    }

    /// A kubeconfig for this server as `user` in `groups`, with a new client certificate:
    /// what the in-process scheduler and controllers connect with.
    pub fn component_kubeconfig(&self, user: &str, groups: &[&str]) -> Result<String> {
        let pair = self.pki.ca.issue_client(user, groups, pki::LEAF_VALIDITY)?;
        Ok(bpfk_auth::kubeconfig::render(
            &self.url(),
            &self.pki.ca.cert_pem,
            user,
            bpfk_auth::kubeconfig::Credential::Certificate {
                cert_pem: &pair.cert_pem,
                key_pem: &pair.key_pem,
            },
        ))
    }

    /// Wait until the server stops (it stops on error only).
    pub async fn wait(self) -> Result<()> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(Error::Serve(std::io::Error::other(e))),
        }
    }
}

/// `https://ADDR`, with loopback for an unspecified address.
fn server_url(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("https://127.0.0.1:{}", addr.port())
    } else {
        format!("https://{addr}")
    }
}

/// The names the serving certificate must hold for `config`.
fn serving_names(config: &ApiServerConfig) -> Vec<String> {
    let mut names = pki::default_serving_names(KUBERNETES_SERVICE_IP);
    if !config.listen.ip().is_unspecified() {
        names.push(config.listen.ip().to_string());
    }
    names.extend(config.advertise_address.map(|a| a.to_string()));
    names.extend(config.tls_san.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// The ClusterIP of the `kubernetes` Service (the first of the service range), a name of the
/// serving certificate.
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

fn authenticator(config: &ApiServerConfig, pki: &ServerPki) -> Result<authn::Authenticator> {
    let key = bpfk_auth::service_account::ServiceAccountKey::from_pem(&pki.service_account_key_pem)
        .map_err(|e| Error::ServiceAccountKey(e.to_string()))?;
    let audiences = match config.api_audiences.is_empty() {
        true => vec![config.service_account_issuer.clone()],
        false => config.api_audiences.clone(),
    };
    let service_accounts = Some(service_accounts::ServiceAccountTokens {
        key,
        issuer: config.service_account_issuer.clone(),
        audiences,
        max_expiration: config.service_account_max_token_expiration,
    });
    let Some(path) = &config.token_auth_file else {
        return Ok(authn::Authenticator {
            token_file: TokenFile::default(),
            service_accounts,
        });
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::TokenFile {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let token_file = TokenFile::parse(&text).map_err(|e| Error::TokenFile {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(authn::Authenticator {
        token_file,
        service_accounts,
    })
}

/// The TLS material of `--etcd-cafile`, `--etcd-certfile` and `--etcd-keyfile`.
fn etcd_tls(config: &ApiServerConfig) -> Result<Option<bpfk_store::etcd::EtcdTls>> {
    let read = |flag: &'static str, path: &PathBuf| {
        std::fs::read(path).map_err(|e| Error::EtcdTls {
            flag,
            path: path.clone(),
            reason: e.to_string(),
        })
    };
    let client = match (&config.etcd_certfile, &config.etcd_keyfile) {
        (Some(cert), Some(key)) => {
            Some((read("--etcd-certfile", cert)?, read("--etcd-keyfile", key)?))
        }
        _ => None,
    };
    match &config.etcd_cafile {
        Some(ca) => Ok(Some(bpfk_store::etcd::EtcdTls {
            ca_pem: read("--etcd-cafile", ca)?,
            client,
        })),
        None if client.is_some() => Err(Error::EtcdTls {
            flag: "--etcd-certfile",
            path: config.etcd_certfile.clone().unwrap_or_default(),
            reason: "a client certificate needs --etcd-cafile (the CA of etcd's certificate)"
                .into(),
        }),
        None => Ok(None),
    }
}

/// The client of the kubelets' endpoints: their certificates checked against
/// `--kubelet-certificate-authority` (or the cluster CA), the API server presenting its
/// kubelet client certificate.
fn kubelet_client(
    config: &ApiServerConfig,
    pki: &ServerPki,
) -> Result<rest::pod_log::KubeletClient> {
    let ca_pem = match &config.kubelet_certificate_authority {
        Some(path) => std::fs::read_to_string(path).map_err(|e| Error::KubeletCa {
            path: path.clone(),
            reason: e.to_string(),
        })?,
        None => pki.ca.cert_pem.clone(),
    };
    let identity = (
        pki.kubelet_client.cert_pem.as_str(),
        pki.kubelet_client.key_pem.as_str(),
    );
    let tls = bpfk_auth::tls::client_config(&ca_pem, Some(identity))?;
    Ok(rest::pod_log::KubeletClient::new(tls))
}

/// How [`start_serving`] serves the API.
#[derive(Debug, Clone)]
pub enum Transport {
    /// HTTPS with the cluster PKI under `--data-dir`, authenticating every request (client
    /// certificate, then bearer token) and authorizing it: what `bpfk-server` always does.
    Tls,
    /// Plain HTTP on the listen address with every request as this user, whatever it
    /// carries: no TLS, no credentials read (authorization still runs, so a user in
    /// `system:masters` is allowed everything). The baseline the API benchmark measures
    /// TLS, authentication and authorization against; no flag of any binary selects it, and
    /// `--write-kubeconfig` is not written with it.
    PlainFixedUser(Arc<bpfk_auth::UserInfo>),
}

/// Connect to etcd, start the watch caches and serve the API over TLS.
pub async fn start(config: &ApiServerConfig) -> Result<Running> {
    start_serving(config, Transport::Tls).await
}

/// Connect to etcd, start the watch caches and serve the API with `transport`.
pub async fn start_serving(config: &ApiServerConfig, transport: Transport) -> Result<Running> {
    let pki = Arc::new(ServerPki::load_or_create(
        &config.data_dir,
        &serving_names(config),
    )?);
    let serving = Serving::prepare(transport, &pki)?;
    let authn = authenticator(config, &pki)?;
    let etcd = bpfk_store::etcd::EtcdConfig {
        tls: etcd_tls(config)?,
        ..Default::default()
    };
    let store = Arc::new(EtcdStore::connect_with(&config.etcd_servers, etcd).await?);
    let kubelets = kubelet_client(config, &pki)?;
    let state =
        AppState::with_authenticator(store, config.admission(), config.event_ttl, authn, kubelets);
    let (listener, addr) = listen(config.listen).await?;
    spawn_background(config, &state, &pki, addr);
    let app = router::router(state.clone());
    let tls = matches!(serving, Serving::Tls(_));
    let task = match serving {
        Serving::Tls(tls) => {
            if let Some(path) = &config.write_kubeconfig {
                kubeconfig::write_admin(path, &server_url(addr), &pki)?;
            }
            tracing::info!(%addr, etcd = ?config.etcd_servers, "API server listening (TLS)");
            tokio::spawn(
                async move { serve::serve(listener, tls, app).await.map_err(Error::Serve) },
            )
        }
        Serving::Plain(user) => {
            tracing::warn!(%addr, user = %user.name, "API server listening on plain HTTP, every request as this user (a benchmark's baseline)");
            tokio::spawn(async move {
                serve::serve_plain(listener, user, app)
                    .await
                    .map_err(Error::Serve)
            })
        }
    };
    Ok(Running {
        addr,
        state,
        pki,
        tls,
        task,
    })
}

/// What the listener serves with, made before etcd is connected (a bad certificate fails the
/// start at once).
enum Serving {
    Tls(Arc<rustls::ServerConfig>),
    Plain(Arc<bpfk_auth::UserInfo>),
}

impl Serving {
    fn prepare(transport: Transport, pki: &ServerPki) -> Result<Serving> {
        match transport {
            Transport::PlainFixedUser(user) => Ok(Serving::Plain(user)),
            Transport::Tls => {
                // the CA goes in the chain too: a joining machine finds it there by its hash
                let chain = format!("{}{}", pki.serving.cert_pem, pki.ca.cert_pem);
                Ok(Serving::Tls(Arc::new(bpfk_auth::tls::server_config(
                    &chain,
                    &pki.serving.key_pem,
                    &pki.ca.cert_pem,
                )?)))
            }
        }
    }
}

/// Bind `addr`; the listener and the address it got (the real port for port 0).
async fn listen(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr)> {
    let listen_error = |source| Error::Listen { addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    Ok((listener, bound))
}

/// The server's own work beside requests: the bootstrap (system namespaces, RBAC, the
/// `kubernetes` Service), the join token and etcd compaction. The OpenAPI documents are
/// built on the first request for one (a second of CPU in a debug build, which most servers,
/// never asked, should not spend while they start).
fn spawn_background(
    config: &ApiServerConfig,
    state: &Arc<AppState>,
    pki: &ServerPki,
    addr: SocketAddr,
) {
    let advertised = kubernetes_service::advertised(addr, config.advertise_address);
    tokio::spawn(bootstrap(state.clone(), addr.port(), advertised));
    tokio::spawn(join_token::ensure(
        state.clone(),
        config.data_dir.join(JOIN_TOKEN_FILE),
        pki.ca.cert_pem.clone(),
    ));
    tokio::spawn(compaction::run(
        state.store.clone(),
        config.etcd_compaction_interval,
    ));
}

/// The file under `--data-dir` the join token is written to.
pub const JOIN_TOKEN_FILE: &str = "join-token";

/// How often the system namespaces are recreated when someone deleted one (as
/// kube-apiserver's system-namespaces controller does, every minute there).
const SYSTEM_NAMESPACES_PERIOD: Duration = Duration::from_secs(10);

/// Creates the namespaces that always exist (`default`, `kube-system`, `kube-public`,
/// `kube-node-lease`) where missing; false when one could not be written.
async fn ensure_system_namespaces(state: &AppState) -> bool {
    let Some(res) = registry::find("", "v1", "namespaces") else {
        return false;
    };
    let mut done = true;
    for ns in admission::SYSTEM_NAMESPACES
        .iter()
        .chain(["kube-node-lease"].iter())
    {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match rest::write::create(state, res, None, obj, &query::Query::default()).await {
            Ok(_) => tracing::info!(namespace = ns, "created system namespace"),
            Err(error::ApiError::AlreadyExists { .. }) => {}
            Err(e) => {
                tracing::warn!(
                    namespace = ns,
                    "cannot create system namespace yet: {}",
                    e.message()
                );
                done = false;
            }
        }
    }
    done
}

/// Recreates a deleted system namespace (kube-node-lease: without it no node can renew its
/// lease and every node goes NotReady).
async fn keep_system_namespaces(state: Arc<AppState>) {
    loop {
        tokio::time::sleep(SYSTEM_NAMESPACES_PERIOD).await;
        ensure_system_namespaces(&state).await;
    }
}

/// Serve until the process is stopped.
pub async fn run(config: ApiServerConfig) -> Result<()> {
    start(&config).await?.wait().await
}

/// Create the namespaces that always exist and the bootstrap RBAC policy (then /readyz
/// answers ok; the local APIServices are kept from then on), then repair the Service
/// allocation keys, then
/// create the `kube-dns` Service; each retried until etcd answers; then keep the
/// `kubernetes` Service and its endpoints.
async fn bootstrap(state: Arc<AppState>, listen_port: u16, advertised: Option<SocketAddr>) {
    let mut delay = Duration::from_millis(200);
    while !ensure_system_namespaces(&state).await {
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    tracing::info!("system namespaces present");
    tokio::spawn(keep_system_namespaces(state.clone()));
    rbac_bootstrap::ensure(&state).await;
    tokio::spawn(api_services::keep(state.clone()));
    state
        .bootstrapped
        .store(true, std::sync::atomic::Ordering::Release);
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
    kubernetes_service::run(state, KUBERNETES_SERVICE_IP, listen_port, advertised).await;
}
