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

/// Accept connections on `listener` forever, serving `app` over plain HTTP with every request
/// as `user`, whatever credentials it carries: what [`crate::Transport::PlainFixedUser`]
/// serves with (a benchmark's baseline; no flag selects it).
pub async fn serve_plain(
    listener: TcpListener,
    user: Arc<bpfk_auth::UserInfo>,
    app: Router,
) -> std::io::Result<()> {
    bpfk_streaming::tls_server::serve_plain(listener, app, PeerIdentity(Some(user))).await
}
#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The name of the user the request carries, as the router reads it.
    async fn who(req: axum::extract::Request) -> String {
        match req.extensions().get::<PeerIdentity>() {
            Some(PeerIdentity(Some(user))) => user.name.clone(),
            _ => "nobody".into(),
        }
    }

    async fn get(addr: std::net::SocketAddr, headers: &str) -> String {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET /api HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn plain_http_stamps_every_request_with_the_fixed_user() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let user = Arc::new(bpfk_auth::user::authenticated(
            "bench-admin".into(),
            String::new(),
            vec![bpfk_auth::user::SYSTEM_MASTERS.into()],
        ));
        let app = Router::new().fallback(who);
        let server = tokio::spawn(serve_plain(listener, user, app));
        let plain = get(addr, "").await;
        assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
        assert!(plain.ends_with("bench-admin"), "{plain}");
        // a credential the request carries is not read: the fixed user stays
        let with_token = get(addr, "Authorization: Bearer someone-else\r\n").await;
        assert!(with_token.ends_with("bench-admin"), "{with_token}");
        server.abort();
    }
}
