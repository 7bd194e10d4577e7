//! HTTP/1.1 connection upgrades: asking an upstream server to switch protocols (SPDY/3.1 or
//! WebSocket) and splicing a switched client connection onto the upstream one, as
//! Kubernetes' UpgradeAwareHandler proxies streams from the API server to the kubelet and
//! from the kubelet to the runtime's streaming server.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How long connecting to the upstream server and its answer to the upgrade may take.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a refusal's body is kept.
const MAX_REFUSAL_BODY: usize = 16 * 1024;

/// The header of the stream protocol versions a SPDY client offers and the server picks.
pub const STREAM_PROTOCOL_VERSION: &str = "x-stream-protocol-version";

/// Request headers an upgrade carries upstream (the rest stays between client and proxy).
const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    STREAM_PROTOCOL_VERSION,
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "origin",
];
/// Response headers of a switch that the client must see.
const FORWARDED_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    STREAM_PROTOCOL_VERSION,
    "sec-websocket-accept",
    "sec-websocket-protocol",
];

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("invalid upstream URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("connecting to {url}: {source}")]
    Connect { url: String, source: std::io::Error },
    #[error("TLS with {url}: {source}")]
    Tls { url: String, source: std::io::Error },
    #[error("{url} did not answer within {UPSTREAM_TIMEOUT:?}")]
    Timeout { url: String },
    #[error("upgrading the connection to {url}: {source}")]
    Http { url: String, source: hyper::Error },
}

/// How the upstream is reached: plain TCP for `http://` URLs (a runtime's streaming server
/// on loopback), TLS with a client configuration for `https://` ones (a kubelet).
#[derive(Clone)]
pub enum Transport {
    Plain,
    Tls(Arc<rustls::ClientConfig>),
}

impl Transport {
    fn scheme(&self) -> &'static str {
        match self {
            Transport::Plain => "http",
            Transport::Tls(_) => "https",
        }
    }
}

/// The upstream's answer to an upgrade request.
pub enum UpstreamAnswer {
    /// 101 Switching Protocols: its headers and the switched connection.
    Switched {
        headers: HeaderMap,
        io: TokioIo<Upgraded>,
    },
    /// Anything else: its status, headers and (the start of) its body.
    Refused {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
}

/// The headers of `from` named in `names` (every value).
pub fn select_headers(from: &HeaderMap, names: &[&str]) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in names {
        for value in from.get_all(*name) {
            if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                out.append(name, value.clone());
            }
        }
    }
    out
}

/// The headers of a client's upgrade request that go upstream.
pub fn forwarded_request_headers(from: &HeaderMap) -> HeaderMap {
    select_headers(from, FORWARDED_REQUEST_HEADERS)
}

fn url_error(url: &str, reason: impl Into<String>) -> UpgradeError {
    UpgradeError::Url {
        url: url.into(),
        reason: reason.into(),
    }
}

/// The URL's parts an upgrade request needs.
#[derive(Debug, PartialEq)]
struct Target {
    /// The host as written (brackets stripped from IPv6 literals): the TLS server name.
    host: String,
    /// `host:port`, to connect to and for the Host header.
    authority: String,
    /// The path and query.
    path: String,
}

/// The parts of a `scheme://` URL.
fn split_url(url: &str, scheme: &str) -> Result<Target, UpgradeError> {
    let uri: Uri = url.parse().map_err(|e| url_error(url, format!("{e}")))?;
    if uri.scheme_str() != Some(scheme) {
        return Err(url_error(url, format!("only {scheme}:// is served here")));
    }
    let host = uri.host().ok_or_else(|| url_error(url, "no host"))?;
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    Ok(Target {
        host: host.trim_start_matches('[').trim_end_matches(']').into(),
        authority: format!("{host}:{port}"),
        path,
    })
}

/// Send `method url` with `headers` (which ask for an upgrade) over a new connection made
/// with `transport`.
pub async fn request_upgrade(
    url: &str,
    method: Method,
    headers: HeaderMap,
    transport: &Transport,
) -> Result<UpstreamAnswer, UpgradeError> {
    let timeout = |_| UpgradeError::Timeout { url: url.into() };
    tokio::time::timeout(
        UPSTREAM_TIMEOUT,
        send_upgrade(url, method, headers, transport),
    )
    .await
    .map_err(timeout)?
}

async fn send_upgrade(
    url: &str,
    method: Method,
    headers: HeaderMap,
    transport: &Transport,
) -> Result<UpstreamAnswer, UpgradeError> {
    let target = split_url(url, transport.scheme())?;
    let tcp = TcpStream::connect(&target.authority)
        .await
        .map_err(|source| UpgradeError::Connect {
            url: url.into(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    match transport {
        Transport::Plain => send_upgrade_on(tcp, url, &target, method, headers).await,
        Transport::Tls(config) => {
            let tls_err = |source| UpgradeError::Tls {
                url: url.into(),
                source,
            };
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| url_error(url, format!("host is no TLS server name: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(tls_err)?;
            send_upgrade_on(tls, url, &target, method, headers).await
        }
    }
}

async fn send_upgrade_on<T>(
    io: T,
    url: &str,
    target: &Target,
    method: Method,
    headers: HeaderMap,
) -> Result<UpstreamAnswer, UpgradeError>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let http_err = |source| UpgradeError::Http {
        url: url.into(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(http_err)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream stream connection ended");
        }
    });
    let mut request = http::Request::builder()
        .method(method)
        .uri(&target.path)
        .header(header::HOST, &target.authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| url_error(url, e.to_string()))?;
    request.headers_mut().extend(headers);
    let mut response = sender.send_request(request).await.map_err(http_err)?;
    let status = response.status();
    let headers = response.headers().clone();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let body = Limited::new(response.into_body(), MAX_REFUSAL_BODY)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Ok(UpstreamAnswer::Refused {
            status,
            headers,
            body,
        });
    }
    let io = hyper::upgrade::on(&mut response).await.map_err(http_err)?;
    Ok(UpstreamAnswer::Switched {
        headers,
        io: TokioIo::new(io),
    })
}

/// The 101 answer to a client whose upstream switched with `upstream_headers`; the client's
/// connection is then spliced onto `upstream` until either side ends.
pub fn splice_switched(
    client: OnUpgrade,
    upstream_headers: &HeaderMap,
    mut upstream: TokioIo<Upgraded>,
) -> Response {
    tokio::spawn(async move {
        match client.await {
            Ok(client) => {
                let mut client = TokioIo::new(client);
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(error = %e, "spliced stream ended");
                }
            }
            Err(e) => tracing::debug!(error = %e, "client upgrade failed"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = select_headers(upstream_headers, FORWARDED_RESPONSE_HEADERS);
    response
}

/// The upstream's refusal relayed to the client (status, content type and body).
pub fn relay_refusal(status: StatusCode, headers: &HeaderMap, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, ct.clone());
    }
    response
}

/// Whether `headers` ask to upgrade to `protocol` (`websocket`, `SPDY/3.1`).
pub fn asks_upgrade_to(headers: &HeaderMap, protocol: &str) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade
        && headers
            .get_all(header::UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(protocol))
}

/// The WebSocket subprotocols a client offers, in its order.
pub fn offered_subprotocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn urls_split_into_authority_and_path() {
        let target = |host: &str, authority: &str, path: &str| Target {
            host: host.into(),
            authority: authority.into(),
            path: path.into(),
        };
        assert_eq!(
            split_url("http://127.0.0.1:4321/exec/abc?x=1", "http").unwrap(),
            target("127.0.0.1", "127.0.0.1:4321", "/exec/abc?x=1")
        );
        assert_eq!(
            split_url("http://node", "http").unwrap(),
            target("node", "node:80", "/")
        );
        assert_eq!(
            split_url("https://[fd00::1]/x", "https").unwrap(),
            target("fd00::1", "[fd00::1]:443", "/x")
        );
        assert!(split_url("https://node/x", "http").is_err());
        assert!(split_url("http://node/x", "https").is_err());
        assert!(split_url("not a url", "http").is_err());
    }

    #[test]
    fn upgrade_requests_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(asks_upgrade_to(&h, "spdy/3.1"));
        assert!(!asks_upgrade_to(&h, "websocket"));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v5.channel.k8s.io, v4.channel.k8s.io"),
        );
        h.append(
            STREAM_PROTOCOL_VERSION,
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        h.append(
            STREAM_PROTOCOL_VERSION,
            HeaderValue::from_static("v3.channel.k8s.io"),
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(
            offered_subprotocols(&h),
            ["v5.channel.k8s.io", "v4.channel.k8s.io"]
        );
        let forwarded = forwarded_request_headers(&h);
        assert_eq!(forwarded.get_all(STREAM_PROTOCOL_VERSION).iter().count(), 2);
        assert!(forwarded.get(header::AUTHORIZATION).is_none());
        let mut no_connection = h.clone();
        no_connection.remove(header::CONNECTION);
        assert!(!asks_upgrade_to(&no_connection, "spdy/3.1"));
    }
}
