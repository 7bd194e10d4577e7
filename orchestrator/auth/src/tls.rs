//! rustls configurations from PEM: the API server's (client certificates optional, verified
//! against the cluster CA when given), the kubelet endpoint's (client certificates required)
//! and a client's (trusting only the cluster CA).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what}: no PEM certificate in it")]
    NoCertificate { what: &'static str },
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}

pub type Result<T, E = TlsError> = std::result::Result<T, E>;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in `pem`.
pub fn certificates(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| TlsError::Invalid {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

fn private_key(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Invalid {
        what,
        reason: e.to_string(),
    })
}

/// Roots holding the certificates of `ca_pem`.
pub fn roots(ca_pem: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_pem, "CA bundle")? {
        roots.add(cert).map_err(|e| TlsError::Invalid {
            what: "CA bundle",
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// Roots holding the DER certificates `ders` (a kubeconfig's CA, as kube-rs reads it).
pub fn roots_from_der(ders: &[Vec<u8>]) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for der in ders {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| TlsError::Invalid {
                what: "CA bundle",
                reason: e.to_string(),
            })?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate { what: "CA bundle" });
    }
    Ok(roots)
}

/// The certificate chain and key of `cert_pem`/`key_pem`, ready to serve.
pub fn certified_key(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey> {
    let key = provider()
        .key_provider
        .load_private_key(private_key(key_pem, "serving key")?)
        .map_err(|e| TlsError::Invalid {
            what: "serving key",
            reason: e.to_string(),
        })?;
    Ok(CertifiedKey::new(
        certificates(cert_pem, "serving certificate")?,
        key,
    ))
}

/// A server configuration's builder with this crate's provider and TLS versions, verifying
/// clients with `verifier`; what is left is the server's own certificate.
fn server_builder(
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
) -> Result<rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>> {
    Ok(ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid {
            what: "TLS versions",
            reason: e.to_string(),
        })?
        .with_client_cert_verifier(verifier))
}

/// A server whose certificate `resolver` picks, requiring every client to present a
/// certificate that chains to `client_roots` (the kubelet endpoint: no anonymous access).
pub fn server_config_requiring_clients(
    resolver: Arc<dyn ResolvesServerCert>,
    client_roots: RootCertStore,
) -> Result<ServerConfig> {
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(client_roots), provider())
        .build()
        .map_err(|e| TlsError::Invalid {
            what: "client CA",
            reason: e.to_string(),
        })?;
    let mut config = server_builder(verifier)?.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Whether the certificate `cert_pem` chains to `roots` and is valid now for every one of
/// `names` (IP addresses or DNS names).
pub fn serves_names(cert_pem: &str, roots: Arc<RootCertStore>, names: &[String]) -> Result<bool> {
    use rustls::client::danger::ServerCertVerifier;
    let chain = certificates(cert_pem, "serving certificate")?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsError::Invalid {
            what: "CA bundle",
            reason: e.to_string(),
        })?;
    let now = rustls::pki_types::UnixTime::now();
    Ok(names.iter().all(|name| {
        let Ok(server_name) = rustls::pki_types::ServerName::try_from(name.clone()) else {
            return false;
        };
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], now)
            .is_ok()
    }))
}

/// A server serving `cert_pem`/`key_pem`; a client certificate is asked for and, when sent,
/// must chain to `client_ca_pem` (requests without one are authenticated another way).
pub fn server_config(cert_pem: &str, key_pem: &str, client_ca_pem: &str) -> Result<ServerConfig> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(client_ca_pem)?), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Invalid {
                what: "client CA",
                reason: e.to_string(),
            })?;
    let mut config = server_builder(verifier)?
        .with_single_cert(
            certificates(cert_pem, "serving certificate")?,
            private_key(key_pem, "serving key")?,
        )
        .map_err(|e| TlsError::Invalid {
            what: "serving certificate",
            reason: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A client trusting only `ca_pem`, presenting `identity` (certificate and key PEM) if given.
pub fn client_config(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid {
            what: "TLS versions",
            reason: e.to_string(),
        })?
        .with_root_certificates(roots(ca_pem)?);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                certificates(cert, "client certificate")?,
                private_key(key, "client key")?,
            )
            .map_err(|e| TlsError::Invalid {
                what: "client certificate",
                reason: e.to_string(),
            }),
    }
}
