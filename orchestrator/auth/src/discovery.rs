//! Token discovery: how a joining machine learns the cluster CA without trusting the
//! network. The join token carries the SHA-256 of the CA's public key (kubeadm's
//! `--discovery-token-ca-cert-hash`); the API server sends its CA in its TLS chain. The
//! machine opens one TLS connection that accepts the server only if a certificate of its
//! chain has that hash and the serving certificate verifies against it for the name dialled;
//! no credential is sent on it. The CA found is what every later connection trusts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
};

use crate::pki::public_key_hash_of_der;

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot reach {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{name:?} is not a host name or IP address")]
    Name { name: String },
    #[error("the TLS handshake with {addr} failed: {reason}")]
    Handshake { addr: SocketAddr, reason: String },
}

/// Accepts a chain holding a certificate with the pinned public-key hash that the serving
/// certificate verifies against; remembers that CA.
#[derive(Debug)]
struct PinnedCa {
    hash: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
    found: Mutex<Option<CertificateDer<'static>>>,
}

impl PinnedCa {
    fn pinned<'a>(&self, chain: &'a [CertificateDer<'a>]) -> Option<&'a CertificateDer<'a>> {
        chain
            .iter()
            .find(|c| public_key_hash_of_der(c.as_ref()).as_deref() == Some(self.hash.as_str()))
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let ca = self.pinned(intermediates).ok_or_else(|| {
            Error::General(format!(
                "no certificate the server sent has the join token's CA hash {}",
                self.hash
            ))
        })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)?;
        if let Ok(mut found) = self.found.lock() {
            *found = Some(ca.clone().into_owned());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The cluster CA (PEM) of the API server at `addr`, reached as `name` (the host of its URL),
/// whose public key hashes to `ca_hash` (`sha256:<hex>`). Blocking; bounded by `timeout`.
pub fn discover_ca(
    addr: SocketAddr,
    name: &str,
    ca_hash: &str,
    timeout: Duration,
) -> Result<String, DiscoveryError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCa {
        hash: ca_hash.to_string(),
        provider: provider.clone(),
        found: Mutex::new(None),
    });
    let handshake = |reason: String| DiscoveryError::Handshake { addr, reason };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| handshake(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|_| DiscoveryError::Name { name: name.into() })?;
    let mut tcp = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| DiscoveryError::Connect { addr, source })?;
    let set = |r: std::io::Result<()>| r.map_err(|source| DiscoveryError::Connect { addr, source });
    set(tcp.set_read_timeout(Some(timeout)))?;
    set(tcp.set_write_timeout(Some(timeout)))?;
    let mut tls = ClientConnection::new(Arc::new(config), server_name)
        .map_err(|e| handshake(e.to_string()))?;
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp)
            .map_err(|e| handshake(e.to_string()))?;
    }
    // nothing is sent: close politely
    tls.send_close_notify();
    let _ = tls.complete_io(&mut tcp);
    let _ = tcp.flush();
    let _ = tcp.read(&mut [0u8; 0]);
    let found = verifier.found.lock().ok().and_then(|f| f.clone());
    let der = found.ok_or_else(|| handshake("the server presented no certificate".into()))?;
    Ok(pem_of(der.as_ref()))
}

/// A DER certificate as PEM.
pub fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{ca_public_key_hash, ClusterCa};
    use std::net::TcpListener;

    /// A TLS server on loopback presenting `chain_pem` (leaf first), for one connection.
    fn serve_once(chain_pem: String, key_pem: String, ca_pem: String) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Arc::new(crate::tls::server_config(&chain_pem, &key_pem, &ca_pem).unwrap());
        std::thread::spawn(move || {
            if let Ok((mut tcp, _)) = listener.accept() {
                let mut tls = rustls::ServerConnection::new(config).unwrap();
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                while tls.is_handshaking() {
                    if tls.complete_io(&mut tcp).is_err() {
                        return;
                    }
                }
            }
        });
        addr
    }

    #[test]
    fn the_pinned_ca_is_found_and_a_wrong_pin_or_name_is_refused() {
        let (ca, _) = ClusterCa::generate("test-ca").unwrap();
        let hour = Duration::from_secs(3600);
        let serving = ca
            .issue_serving("apiserver", &["127.0.0.1".to_string()], hour)
            .unwrap();
        let chain = format!("{}{}", serving.cert_pem, ca.cert_pem);
        let hash = ca_public_key_hash(&ca.cert_pem).unwrap();
        let t = Duration::from_secs(5);

        let addr = serve_once(chain.clone(), serving.key_pem.clone(), ca.cert_pem.clone());
        let found = discover_ca(addr, "127.0.0.1", &hash, t).unwrap();
        assert_eq!(ca_public_key_hash(&found).unwrap(), hash);

        let (other, _) = ClusterCa::generate("other-ca").unwrap();
        let wrong = ca_public_key_hash(&other.cert_pem).unwrap();
        let addr = serve_once(chain.clone(), serving.key_pem.clone(), ca.cert_pem.clone());
        let err = discover_ca(addr, "127.0.0.1", &wrong, t)
            .unwrap_err()
            .to_string();
        assert!(err.contains("CA hash"), "{err}");

        // the right CA, but a certificate not for the name dialled
        let addr = serve_once(chain, serving.key_pem, ca.cert_pem.clone());
        assert!(discover_ca(addr, "api.example", &hash, t).is_err());
    }
}
