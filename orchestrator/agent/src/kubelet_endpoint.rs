//! The kubelet endpoint (`--kubelet-port`): container logs, exec, attach and port-forward
//! over TLS only. Its certificate is `--tls-cert-file`/`--tls-private-key-file`, or one the
//! kubelet asks the cluster for and renews ([`bpfk_kubelet::serving_cert`]); a client must
//! present a certificate of `--client-ca-file` (default: the kubeconfig's CA) and be allowed
//! by a SubjectAccessReview ([`bpfk_kubelet::endpoint_auth`]) — in practice the API server,
//! as `kube-apiserver-kubelet-client`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bpfk_kubelet::endpoint_auth::EndpointAuthorizer;
use bpfk_kubelet::log_server::{self, EndpointSecurity};
use bpfk_kubelet::serving_cert::{self, ServingCert, Wanted};

use crate::{Args, Error, Part, Result};

/// What the endpoint needs from the agent's setup.
pub struct EndpointInputs<'a> {
    pub args: &'a Args,
    pub client: kube::Client,
    /// The CA certificates (DER) of the kubeconfig: the cluster CA.
    pub kubeconfig_ca: &'a [Vec<u8>],
    pub config: &'a bpfk_kubelet::Config,
    pub port: u16,
}

fn tls_err(what: impl std::fmt::Display) -> Error {
    Error::KubeletTls(what.to_string())
}

/// The endpoint's part: it binds and serves once the certificate is at hand (a client never
/// waits on a listener that cannot answer yet).
pub fn part(inputs: EndpointInputs<'_>) -> Result<Part> {
    let args = inputs.args;
    let node_ip = args.node_ip.map(IpAddr::V4);
    let addr = SocketAddr::new(
        node_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        inputs.port,
    );
    let cluster_ca = bpfk_auth::tls::roots_from_der(inputs.kubeconfig_ca).map_err(tls_err)?;
    let client_roots = match &args.kubelet.client_ca_file {
        Some(path) => bpfk_auth::tls::roots(&read(path)?).map_err(tls_err)?,
        None => cluster_ca.clone(),
    };
    let wanted = Wanted {
        node_name: args.node_name.clone(),
        node_ip,
        cert_dir: args.cert_dir.clone(),
        ca_roots: Arc::new(cluster_ca),
    };
    let files = args
        .kubelet
        .tls_cert_file
        .clone()
        .zip(args.kubelet.tls_private_key_file.clone());
    let authorizer = Arc::new(EndpointAuthorizer::new(
        inputs.client.clone(),
        &args.node_name,
    ));
    let (client, config) = (inputs.client, inputs.config.clone());
    Ok(Box::pin(async move {
        let (served, renewal) = certificate(files, client, wanted).await?;
        let tls = bpfk_auth::tls::server_config_requiring_clients(served, client_roots)
            .map_err(tls_err)?;
        let security = EndpointSecurity {
            tls: Arc::new(tls),
            authorizer,
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::LogServer { addr, source })?;
        tracing::info!(%addr, "kubelet endpoint listening (TLS, client certificates required)");
        let serve = log_server::serve_node(listener, &config, security);
        let serve = async {
            serve
                .await
                .map_err(|source| Error::LogServer { addr, source })
        };
        match renewal {
            Some(renewal) => tokio::select! {
                r = serve => r,
                r = renewal => r.map_err(Error::from),
            },
            None => serve.await,
        }
    }))
}

type Renewal = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<(), bpfk_kubelet::bootstrap::BootstrapError>>
            + Send,
    >,
>;

/// The served certificate: the given files, or the cluster's (then with its renewal).
async fn certificate(
    files: Option<(PathBuf, PathBuf)>,
    client: kube::Client,
    wanted: Wanted,
) -> Result<(Arc<ServingCert>, Option<Renewal>)> {
    if let Some((cert, key)) = files {
        let served = ServingCert::new(&read(&cert)?, &read(&key)?).map_err(tls_err)?;
        return Ok((Arc::new(served), None));
    }
    let (cert_pem, key_pem) = serving_cert::obtain(&client, &wanted).await?;
    let served = Arc::new(ServingCert::new(&cert_pem, &key_pem).map_err(tls_err)?);
    tracing::info!(node = %wanted.node_name, names = ?wanted.names(), "kubelet serving certificate ready");
    let renewal = serving_cert::renew_forever(client, wanted, served.clone(), cert_pem);
    Ok((served, Some(Box::pin(renewal))))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| tls_err(format!("{}: {e}", path.display())))
}

/// The cluster CA as roots (what kube-rs read from the kubeconfig).
pub fn kubeconfig_ca(config: &kube::Config) -> Vec<Vec<u8>> {
    config.root_cert.clone().unwrap_or_default()
}
