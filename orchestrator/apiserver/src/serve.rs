//! The API server's TLS listener ([`bpfk_streaming::tls_server`]): a client certificate is
//! asked for and verified against the cluster CA when sent, and the user it names rides on
//! every request of the connection as a [`PeerIdentity`].

use std::sync::Arc;

use axum::Router;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;

use crate::authn::PeerIdentity;

/// Accept connections on `listener` forever, serving `app` over TLS with `tls`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
) -> std::io::Result<()> {
    bpfk_streaming::tls_server::serve(listener, tls, app, identify).await
}

fn identify(cert: Option<&CertificateDer<'_>>) -> PeerIdentity {
    PeerIdentity(
        cert.and_then(|c| bpfk_auth::pki::user_of_certificate(c))
            .map(Arc::new),
    )
}
