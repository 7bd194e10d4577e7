//! The TLS listener the API server and the kubelet endpoint serve on: each accepted
//! connection gets its TLS handshake (the configuration says whether a client certificate is
//! asked for or required, and which CA it must chain to), then HTTP/1.1 or HTTP/2 by ALPN,
//! with upgrades (exec, attach, port-forward). What the peer's verified certificate says
//! rides on every request of the connection as a request extension.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connection's peer is, from the first certificate of its verified chain (none when
/// it sent none); a clone goes into every request's extensions.
pub type Identify<I> = fn(Option<&CertificateDer<'_>>) -> I;

/// Accept connections on `listener` forever, serving `app` over TLS with `tls`; each request
/// carries `identify`'s answer for its connection. Dropping the future closes every
/// connection it accepted.
pub async fn serve<I>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    identify: Identify<I>,
) -> std::io::Result<()>
where
    I: Clone + Send + Sync + 'static,
{
    let acceptor = TlsAcceptor::from(tls);
    accept_forever(listener, |tcp, peer| {
        connection(acceptor.clone(), tcp, peer, app.clone(), identify)
    })
    .await
}

/// Accept connections on `listener` forever, serving `app` over plain HTTP (HTTP/1.1, or
/// HTTP/2 with prior knowledge), every request carrying `identity` whatever it sends. For a
/// benchmark's baseline only: no product listener serves without TLS.
pub async fn serve_plain<I>(listener: TcpListener, app: Router, identity: I) -> std::io::Result<()>
where
    I: Clone + Send + Sync + 'static,
{
    accept_forever(listener, |tcp, peer| {
        http(TokioIo::new(tcp), peer, identity.clone(), app.clone())
    })
    .await
}

/// Accept connections forever (TCP_NODELAY set), running `serve_one`'s future for each; the
/// connections end when this future is dropped.
async fn accept_forever<F>(
    listener: TcpListener,
    mut serve_one: impl FnMut(tokio::net::TcpStream, std::net::SocketAddr) -> F,
) -> std::io::Result<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    // the connections end with the listener: dropping this future aborts them
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and the like: wait a little instead of spinning
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        connections.spawn(serve_one(tcp, peer));
    }
}

async fn connection<I>(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    app: Router,
    identify: Identify<I>,
) where
    I: Clone + Send + Sync + 'static,
{
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let identity = identify(
        stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first()),
    );
    http(TokioIo::new(stream), peer, identity, app).await;
}

/// Serve HTTP/1.1 or HTTP/2 (with upgrades) on one connection, `identity` in every request.
async fn http<T, I>(io: TokioIo<T>, peer: std::net::SocketAddr, identity: I, app: Router)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    I: Clone + Send + Sync + 'static,
{
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(identity.clone());
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder.serve_connection_with_upgrades(io, service).await {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}
