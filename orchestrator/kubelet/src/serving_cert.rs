//! The kubelet endpoint's serving certificate, as the kubelet's `serverTLSBootstrap`: a new
//! key and a `kubernetes.io/kubelet-serving` CertificateSigningRequest for the node's names
//! (`CN=system:node:<name>`, `O=system:nodes`, its InternalIP and its name), made as the node
//! itself once its Node reports that address (the server's csrapproving approves a node's own
//! request for its own addresses; `kubectl certificate approve` otherwise). The pair is kept
//! in `<cert-dir>/kubelet-server-current.pem` (certificate, then key; mode 0600) and reused
//! while it chains to the cluster CA, covers the names and is short of 80% of its life;
//! [`renew_forever`] renews it then, switching the served certificate in place
//! ([`ServingCert`]) so that no connection is dropped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bpfk_auth::{pki, tls};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use crate::bootstrap::{self, renewal_due_in, Asked, BootstrapError};

/// The signer of kubelet serving certificates.
pub const SIGNER: &str = "kubernetes.io/kubelet-serving";
/// The certificate and key file under the certificate directory (the kubelet's name).
pub const FILE: &str = "kubelet-server-current.pem";
/// How long a request may wait to be approved and signed.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the Node is looked at while it does not report the node's address yet.
const NODE_POLL: Duration = Duration::from_secs(1);
/// How long after a failed renewal it is tried again.
const RETRY: Duration = Duration::from_secs(10);

type Result<T, E = BootstrapError> = std::result::Result<T, E>;

/// What the endpoint's certificate is for and where it is kept.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub node_name: String,
    /// The node's InternalIP, if it has one (the address the API server dials).
    pub node_ip: Option<std::net::IpAddr>,
    pub cert_dir: PathBuf,
    /// The cluster CA: a kept certificate must chain to it.
    pub ca_roots: Arc<RootCertStore>,
}

impl Wanted {
    /// The names the certificate is for: the InternalIP and the node's name.
    pub fn names(&self) -> Vec<String> {
        let ip = self.node_ip.map(|ip| ip.to_string());
        ip.into_iter().chain([self.node_name.clone()]).collect()
    }

    fn path(&self) -> PathBuf {
        self.cert_dir.join(FILE)
    }
}

/// The certificate the endpoint serves; switched in place when renewed.
#[derive(Debug)]
pub struct ServingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServingCert {
    pub fn new(cert_pem: &str, key_pem: &str) -> Result<ServingCert, tls::TlsError> {
        Ok(ServingCert {
            current: RwLock::new(Arc::new(tls::certified_key(cert_pem, key_pem)?)),
        })
    }

    /// Serve `cert_pem`/`key_pem` from now on.
    pub fn replace(&self, cert_pem: &str, key_pem: &str) -> Result<(), tls::TlsError> {
        let next = Arc::new(tls::certified_key(cert_pem, key_pem)?);
        match self.current.write() {
            Ok(mut current) => *current = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        Ok(())
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match self.current.read() {
            Ok(current) => Some(current.clone()),
            Err(poisoned) => Some(poisoned.into_inner().clone()),
        }
    }
}

/// The serving certificate and key (PEM): the kept one while still good, else a new one
/// asked for with `client` (the node's identity).
pub async fn obtain(client: &kube::Client, wanted: &Wanted) -> Result<(String, String)> {
    if let Some((cert_pem, key_pem)) = kept(wanted) {
        tracing::info!(path = %wanted.path().display(), "reusing the kubelet serving certificate");
        return Ok((cert_pem, key_pem));
    }
    wait_for_node_address(client, wanted).await?;
    request(client, wanted).await
}

/// Renew the served certificate at 80% of its life, forever (failures are retried while
/// the current one is valid).
pub async fn renew_forever(
    client: kube::Client,
    wanted: Wanted,
    served: Arc<ServingCert>,
    cert_pem: String,
) -> Result<()> {
    let mut due_in = renewal_due_in(&cert_pem).unwrap_or_default();
    loop {
        tokio::time::sleep(due_in).await;
        match request(&client, &wanted).await {
            Ok((cert_pem, key_pem)) => {
                served
                    .replace(&cert_pem, &key_pem)
                    .map_err(|e| BootstrapError::Kubeconfig(e.to_string()))?;
                tracing::info!(node = %wanted.node_name, "kubelet serving certificate renewed");
                due_in = renewal_due_in(&cert_pem).unwrap_or(RETRY);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the kubelet serving certificate yet");
                due_in = RETRY;
            }
        }
    }
}

/// The kept pair, if it chains to the CA, covers the names and is not due for renewal.
fn kept(wanted: &Wanted) -> Option<(String, String)> {
    let text = std::fs::read_to_string(wanted.path()).ok()?;
    let (cert_pem, key_pem) = split_pair(&text)?;
    let good =
        tls::serves_names(&cert_pem, wanted.ca_roots.clone(), &wanted.names()).unwrap_or(false);
    (good && !bootstrap::needs_renewal(&cert_pem)).then_some((cert_pem, key_pem))
}

/// The certificates and the key of a file holding both (PEM blocks in any order).
fn split_pair(text: &str) -> Option<(String, String)> {
    let (mut certs, mut key) = (String::new(), String::new());
    let mut block = String::new();
    for line in text.lines() {
        block.push_str(line);
        block.push('\n');
        if line.starts_with("-----END ") {
            if line.contains("PRIVATE KEY") {
                key.push_str(&block);
            } else {
                certs.push_str(&block);
            }
            block.clear();
        }
    }
    (!certs.is_empty() && !key.is_empty()).then_some((certs, key))
}

/// Wait until the Node exists and reports the node's InternalIP (the approver checks the
/// request's names against the Node's addresses).
async fn wait_for_node_address(client: &kube::Client, wanted: &Wanted) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let Some(ip) = wanted.node_ip.map(|ip| ip.to_string()) else {
        return Ok(());
    };
    loop {
        let node = nodes.get_opt(&wanted.node_name).await?;
        let reports = node
            .and_then(|n| n.status)
            .and_then(|s| s.addresses)
            .is_some_and(|a| a.iter().any(|a| a.address == ip));
        if reports {
            return Ok(());
        }
        tokio::time::sleep(NODE_POLL).await;
    }
}

/// A new key and a signed certificate for it, written to the certificate directory.
async fn request(client: &kube::Client, wanted: &Wanted) -> Result<(String, String)> {
    let user = format!("{}{}", bpfk_auth::user::NODE_USER_PREFIX, wanted.node_name);
    let (request_pem, key_pem) =
        pki::serving_request(&user, &[bpfk_auth::user::NODES_GROUP], &wanted.names())?;
    let asked = Asked {
        signer: SIGNER,
        usages: &["digital signature", "key encipherment", "server auth"],
        generate_name: "csr-kubelet-serving-",
        what: "the kubelet serving certificate",
    };
    let cert_pem = bootstrap::request_signed(client, &asked, request_pem, ISSUE_TIMEOUT).await?;
    write_pair(&wanted.path(), &cert_pem, &key_pem)?;
    Ok((cert_pem, key_pem))
}

fn write_pair(path: &Path, cert_pem: &str, key_pem: &str) -> Result<()> {
    let text = format!("{}\n{}", cert_pem.trim_end(), key_pem);
    pki::write_private(path, &text, 0o600)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(dir: &Path, ca: &pki::ClusterCa) -> Wanted {
        Wanted {
            node_name: "node-1".into(),
            node_ip: Some("10.250.0.11".parse().unwrap()),
            cert_dir: dir.to_path_buf(),
            ca_roots: Arc::new(tls::roots(&ca.cert_pem).unwrap()),
        }
    }

    #[test]
    fn a_kept_certificate_is_reused_only_for_its_ca_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = pki::ClusterCa::generate("ca").unwrap();
        let w = wanted(dir.path(), &ca);
        assert_eq!(w.names(), ["10.250.0.11", "node-1"]);
        assert!(kept(&w).is_none());
        let good = ca
            .issue_serving("system:node:node-1", &w.names(), pki::LEAF_VALIDITY)
            .unwrap();
        write_pair(&w.path(), &good.cert_pem, &good.key_pem).unwrap();
        let (cert, key) = kept(&w).expect("kept");
        assert_eq!(cert.trim(), good.cert_pem.trim());
        assert_eq!(key.trim(), good.key_pem.trim());
        assert!(ServingCert::new(&cert, &key).is_ok());
        // a new address: not covered
        let moved = Wanted {
            node_ip: Some("10.250.0.12".parse().unwrap()),
            ..w.clone()
        };
        assert!(kept(&moved).is_none());
        // another cluster's CA: not trusted
        let (other, _) = pki::ClusterCa::generate("other").unwrap();
        assert!(kept(&wanted(dir.path(), &other)).is_none());
        // due for renewal
        let short = ca
            .issue_serving("system:node:node-1", &w.names(), Duration::from_secs(1))
            .unwrap();
        write_pair(&w.path(), &short.cert_pem, &short.key_pem).unwrap();
        assert!(kept(&w).is_none());
    }
}
