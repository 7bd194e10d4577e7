//! rustls configurations from PEM: the API server's (client certificates optional, verified
//! against the cluster CA when given) and a client's (trusting only the cluster CA).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
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
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid {
            what: "TLS versions",
            reason: e.to_string(),
        })?
        .with_client_cert_verifier(verifier)
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
