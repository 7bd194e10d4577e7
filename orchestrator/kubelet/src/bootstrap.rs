//! Kubelet TLS bootstrapping, as `bpfk-agent --server URL --token TOKEN` joins a cluster:
//! learn the cluster CA from the server by the hash the join token carries
//! ([`bpfk_auth::discovery`]), then, authenticated by the token's bootstrap part, ask for a
//! node client certificate (`CN=system:node:<name>`, `O=system:nodes`) through a
//! CertificateSigningRequest to `kubernetes.io/kube-apiserver-client-kubelet` (approved by
//! the server's csrapproving, or by `kubectl certificate approve`), and write the node's
//! kubeconfig with it. A node that has a kubeconfig whose certificate is still good reuses
//! it without the token; [`renew_when_due`] renews it before it expires.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bpfk_auth::bootstrap_token::JoinToken;
use bpfk_auth::kubeconfig::{self, Credential};
use bpfk_auth::pki;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};

/// The signer of kubelet client certificates.
pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The kubeconfig written under the certificate directory.
pub const KUBECONFIG_FILE: &str = "kubelet.kubeconfig";
/// How long the CA discovery's one connection may take.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a pending request is looked at.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("--server {0:?}: expected https://HOST:PORT")]
    Server(String),
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("CA discovery: {0}")]
    Discovery(#[from] bpfk_auth::discovery::DiscoveryError),
    #[error("{0}")]
    Pki(#[from] pki::PkiError),
    #[error("the API server: {0}")]
    Api(#[from] kube::Error),
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("the certificate request {name} was {outcome}: {message}")]
    Refused {
        name: String,
        outcome: String,
        message: String,
    },
    #[error("the certificate request {name} was not issued within {waited:?} (approve it with `kubectl certificate approve {name}`)")]
    NotIssued { name: String, waited: Duration },
}

type Result<T, E = BootstrapError> = std::result::Result<T, E>;

/// What joining needs.
#[derive(Debug, Clone)]
pub struct Join {
    /// `https://HOST:PORT` of the API server.
    pub server: String,
    pub token: JoinToken,
    pub node_name: String,
    /// Where the node's kubeconfig (with its key) is written.
    pub cert_dir: PathBuf,
    /// How long to wait for the certificate to be issued.
    pub issue_timeout: Duration,
}

impl Join {
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.cert_dir.join(KUBECONFIG_FILE)
    }
}

/// The node's kubeconfig: the one written before when its certificate has more than a
/// tenth of its life left, else a new one by joining.
pub async fn ensure_credentials(join: &Join) -> Result<PathBuf> {
    let path = join.kubeconfig_path();
    if let Some(cert) = written_certificate(&path) {
        if !needs_renewal(&cert) {
            tracing::info!(path = %path.display(), "reusing the node's certificate");
            return Ok(path);
        }
    }
    let ca_pem = discover(join).await?;
    let bootstrap = client_of(&kubeconfig::render(
        &join.server,
        &ca_pem,
        &format!("system:bootstrap:{}", join.token.token.id),
        Credential::Token(&join.token.token.expose()),
    ))
    .await?;
    let (cert_pem, key_pem) = request_certificate(&bootstrap, join).await?;
    write_kubeconfig(join, &ca_pem, &cert_pem, &key_pem)?;
    tracing::info!(node = %join.node_name, path = %path.display(), "joined: node certificate issued");
    Ok(path)
}

/// The client certificate inside a kubeconfig this module wrote.
fn written_certificate(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let config = kube::config::Kubeconfig::from_yaml(&text).ok()?;
    let data = config
        .auth_infos
        .first()?
        .auth_info
        .as_ref()?
        .client_certificate_data
        .clone()?;
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()?;
    String::from_utf8(pem).ok()
}

/// Whether a certificate is past 80% of its life (kubelet rotates between 70% and 90%).
pub fn needs_renewal(cert_pem: &str) -> bool {
    renewal_due_in(cert_pem).is_none_or(|left| left.is_zero())
}

/// How long until a certificate is at 80% of its life; None when it does not parse.
pub fn renewal_due_in(cert_pem: &str) -> Option<Duration> {
    let (not_before, not_after) = pki::validity_of(cert_pem)?;
    let life = not_after - not_before;
    let due = not_before + life * 0.8;
    let left = due - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(left).unwrap_or_default())
}

/// The cluster CA, found by the join token's hash.
async fn discover(join: &Join) -> Result<String> {
    let (host, addr) = resolve(&join.server).await?;
    let hash = join.token.ca_hash.clone();
    let found = tokio::task::spawn_blocking(move || {
        bpfk_auth::discovery::discover_ca(addr, &host, &hash, DISCOVERY_TIMEOUT)
    })
    .await
    .map_err(|e| BootstrapError::Kubeconfig(e.to_string()))??;
    Ok(found)
}

/// The host of an `https://HOST:PORT` URL and an address it resolves to.
async fn resolve(server: &str) -> Result<(String, SocketAddr)> {
    let uri: http::Uri = server
        .parse()
        .map_err(|_| BootstrapError::Server(server.into()))?;
    if uri.scheme_str() != Some("https") {
        return Err(BootstrapError::Server(server.into()));
    }
    let host = uri
        .host()
        .ok_or_else(|| BootstrapError::Server(server.into()))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let resolved = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map(|mut addrs| addrs.next());
    match resolved {
        Ok(Some(addr)) => Ok((host, addr)),
        Ok(None) => Err(BootstrapError::Resolve {
            host,
            reason: "no address".into(),
        }),
        Err(e) => Err(BootstrapError::Resolve {
            host,
            reason: e.to_string(),
        }),
    }
}

async fn client_of(kubeconfig_yaml: &str) -> Result<kube::Client> {
    let err = |e: &dyn std::fmt::Display| BootstrapError::Kubeconfig(e.to_string());
    let config = kube::config::Kubeconfig::from_yaml(kubeconfig_yaml).map_err(|e| err(&e))?;
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .map_err(|e| err(&e))?;
    kube::Client::try_from(config).map_err(|e| err(&e))
}

/// A new key and a client certificate for it, through a CertificateSigningRequest made
/// with `client` (the bootstrap token's, or the node's own when renewing).
pub async fn request_certificate(client: &kube::Client, join: &Join) -> Result<(String, String)> {
    let user = format!("{}{}", bpfk_auth::user::NODE_USER_PREFIX, join.node_name);
    let (request_pem, key_pem) = pki::client_request(&user, &[bpfk_auth::user::NODES_GROUP])?;
    let asked = Asked {
        signer: SIGNER,
        usages: &["digital signature", "client auth"],
        generate_name: "node-csr-",
        what: "a node client certificate",
    };
    let cert_pem = request_signed(client, &asked, request_pem, join.issue_timeout).await?;
    Ok((cert_pem, key_pem))
}

/// What a CertificateSigningRequest asks for.
pub struct Asked<'a> {
    pub signer: &'a str,
    pub usages: &'a [&'a str],
    /// The prefix of the request's name.
    pub generate_name: &'a str,
    /// What it is, for the log.
    pub what: &'a str,
}

/// Create a CertificateSigningRequest of `request_pem` as `client`'s user and wait up to
/// `timeout` until it is issued: the certificate (PEM).
pub async fn request_signed(
    client: &kube::Client,
    asked: &Asked<'_>,
    request_pem: String,
    timeout: Duration,
) -> Result<String> {
    let mut csr = CertificateSigningRequest {
        spec: CertificateSigningRequestSpec {
            request: ByteString(request_pem.into_bytes()),
            signer_name: asked.signer.into(),
            usages: Some(asked.usages.iter().map(|u| u.to_string()).collect()),
            ..Default::default()
        },
        ..Default::default()
    };
    csr.metadata.generate_name = Some(asked.generate_name.into());
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let created = api.create(&PostParams::default(), &csr).await?;
    let name = created.metadata.name.clone().unwrap_or_default();
    tracing::info!(csr = %name, signer = asked.signer, "asked for {}", asked.what);
    wait_issued(&api, &name, timeout).await
}

async fn wait_issued(
    api: &Api<CertificateSigningRequest>,
    name: &str,
    timeout: Duration,
) -> Result<String> {
    let started = Instant::now();
    loop {
        let csr = api.get(name).await?;
        let status = csr.status.unwrap_or_default();
        if let Some(refused) = status
            .conditions
            .iter()
            .flatten()
            .find(|c| matches!(c.type_.as_str(), "Denied" | "Failed") && c.status == "True")
        {
            return Err(BootstrapError::Refused {
                name: name.into(),
                outcome: refused.type_.to_lowercase(),
                message: refused.message.clone().unwrap_or_default(),
            });
        }
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            return String::from_utf8(cert.0).map_err(|_| {
                BootstrapError::Kubeconfig("the issued certificate is not PEM".into())
            });
        }
        if started.elapsed() > timeout {
            return Err(BootstrapError::NotIssued {
                name: name.into(),
                waited: timeout,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

fn write_kubeconfig(join: &Join, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<()> {
    let user = format!("{}{}", bpfk_auth::user::NODE_USER_PREFIX, join.node_name);
    let text = kubeconfig::render(
        &join.server,
        ca_pem,
        &user,
        Credential::Certificate { cert_pem, key_pem },
    );
    pki::write_private(&join.kubeconfig_path(), &text, 0o600)?;
    Ok(())
}

/// Wait until the node's certificate is at 80% of its life, then renew it with a request
/// made as the node itself (`selfnodeclient`) and rewrite the kubeconfig; returns once the
/// new one is written (the caller restarts onto it: clients read their certificate when
/// they are built). Failed attempts are retried every 10 s while the old one is valid.
pub async fn renew_when_due(join: &Join) -> Result<()> {
    let path = join.kubeconfig_path();
    let wait = written_certificate(&path)
        .and_then(|c| renewal_due_in(&c))
        .unwrap_or_default();
    tokio::time::sleep(wait).await;
    loop {
        match renew(join).await {
            Ok(()) => {
                tracing::info!(node = %join.node_name, "node certificate renewed");
                return Ok(());
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew the node certificate yet"),
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

async fn renew(join: &Join) -> Result<()> {
    let current = std::fs::read_to_string(join.kubeconfig_path())
        .map_err(|e| BootstrapError::Kubeconfig(e.to_string()))?;
    let ca_pem = written_ca(&current)?;
    let client = client_of(&current).await?;
    let (cert_pem, key_pem) = request_certificate(&client, join).await?;
    write_kubeconfig(join, &ca_pem, &cert_pem, &key_pem)
}

/// The CA inside a kubeconfig this module wrote.
fn written_ca(kubeconfig_yaml: &str) -> Result<String> {
    use base64::Engine;
    let missing = || BootstrapError::Kubeconfig("the node kubeconfig holds no CA".into());
    let config = kube::config::Kubeconfig::from_yaml(kubeconfig_yaml)
        .map_err(|e| BootstrapError::Kubeconfig(e.to_string()))?;
    let data = config
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority_data.clone())
        .ok_or_else(missing)?;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| missing())?;
    String::from_utf8(pem).map_err(|_| missing())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_renewed_at_eighty_percent_of_their_life() {
        let (ca, _) = pki::ClusterCa::generate("ca").unwrap();
        let fresh = ca
            .issue_client(
                "system:node:n1",
                &["system:nodes"],
                Duration::from_secs(3600),
            )
            .unwrap();
        assert!(!needs_renewal(&fresh.cert_pem));
        let due = renewal_due_in(&fresh.cert_pem).unwrap();
        // issued a minute back (clock skew): 80% of 61 minutes from then
        assert!(
            due > Duration::from_secs(2700) && due < Duration::from_secs(3000),
            "{due:?}"
        );
        assert!(needs_renewal("not a certificate"));
    }

    #[tokio::test]
    async fn servers_must_be_https_urls() {
        for bad in ["http://127.0.0.1:6443", "127.0.0.1:6443", "https://"] {
            assert!(
                matches!(resolve(bad).await, Err(BootstrapError::Server(_))),
                "{bad}"
            );
        }
        let (host, addr) = resolve("https://127.0.0.1:6443").await.unwrap();
        assert_eq!((host.as_str(), addr.port()), ("127.0.0.1", 6443));
    }
}
