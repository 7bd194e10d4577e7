//! One run of a probe or lifecycle-hook handler against a container: `exec` through CRI
//! ExecSync, `httpGet` (HTTP/1.1; HTTPS without certificate verification, as Kubernetes'
//! prober), `tcpSocket`, `grpc` (grpc.health.v1 Check) and the hooks' `sleep`. Network
//! handlers reach the pod IP directly: the kubelet runs in the node's network namespace.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{
    ContainerPort, ExecAction, GRPCAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::Outcome;
use crate::cri::CriClient;

/// The most of a command's output or an answer a failure message keeps.
const MESSAGE_LIMIT: usize = 1024;
/// The User-Agent of HTTP probes (kubelet: `kube-probe/<major>.<minor>`).
const USER_AGENT: &str = "kube-probe/1.32";

/// What a handler does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Exec(ExecAction),
    HttpGet(HTTPGetAction),
    TcpSocket(TCPSocketAction),
    Grpc(GRPCAction),
    /// Hooks only: sleep this many seconds.
    Sleep(i64),
}

impl Action {
    /// The handler of a probe (None when it names none).
    pub fn of_probe(p: &Probe) -> Option<Action> {
        if let Some(e) = &p.exec {
            return Some(Action::Exec(e.clone()));
        }
        if let Some(h) = &p.http_get {
            return Some(Action::HttpGet(h.clone()));
        }
        if let Some(t) = &p.tcp_socket {
            return Some(Action::TcpSocket(t.clone()));
        }
        p.grpc.clone().map(Action::Grpc)
    }

    /// The handler of a lifecycle hook (None when it names none).
    pub fn of_hook(h: &LifecycleHandler) -> Option<Action> {
        if let Some(e) = &h.exec {
            return Some(Action::Exec(e.clone()));
        }
        if let Some(g) = &h.http_get {
            return Some(Action::HttpGet(g.clone()));
        }
        if let Some(t) = &h.tcp_socket {
            return Some(Action::TcpSocket(t.clone()));
        }
        h.sleep.as_ref().map(|s| Action::Sleep(s.seconds))
    }
}

/// The container a handler runs against.
#[derive(Debug, Clone)]
pub struct Target {
    pub cri: CriClient,
    pub container_id: String,
    pub pod_ip: Option<String>,
    /// The container's ports (named ports resolve through them).
    pub ports: Vec<ContainerPort>,
}

/// Runs `action` against `target`, failing when it takes longer than `timeout`.
pub async fn run(action: &Action, target: &Target, timeout: Duration) -> Outcome {
    let run = async {
        match action {
            Action::Exec(e) => exec(e, target, timeout).await,
            Action::HttpGet(h) => http_get(h, target).await,
            Action::TcpSocket(t) => tcp_socket(t, target).await,
            Action::Grpc(g) => grpc(g, target).await,
            Action::Sleep(s) => {
                tokio::time::sleep(Duration::from_secs((*s).max(0) as u64)).await;
                Outcome::Success
            }
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Failure(format!(
            "timeout: no answer within {}s",
            timeout.as_secs_f64()
        )),
    }
}

/// `text` cut to [`MESSAGE_LIMIT`] bytes (on a character boundary).
fn limited(text: &str) -> String {
    let text = text.trim_end();
    if text.len() <= MESSAGE_LIMIT {
        return text.to_string();
    }
    let mut end = MESSAGE_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

async fn exec(e: &ExecAction, t: &Target, timeout: Duration) -> Outcome {
    let cmd = e.command.clone().unwrap_or_default();
    if cmd.is_empty() {
        return Outcome::Failure("exec handler without a command".into());
    }
    match t.cri.exec_sync(&t.container_id, cmd.clone(), timeout).await {
        Ok(r) if r.exit_code == 0 => Outcome::Success,
        Ok(r) => {
            let mut output = String::from_utf8_lossy(&r.stdout).into_owned();
            output.push_str(&String::from_utf8_lossy(&r.stderr));
            if output.trim().is_empty() {
                Outcome::Failure(format!("command {cmd:?} exited with {}", r.exit_code))
            } else {
                Outcome::Failure(limited(&output))
            }
        }
        Err(err) => Outcome::Failure(format!("command {cmd:?} could not run: {err}")),
    }
}

/// The port number `port` names: a number, or a container port's name.
pub fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
        {
            Some(p) => p.container_port,
            None => name
                .parse()
                .map_err(|_| format!("port {name:?} is no number and no port of the container"))?,
        },
    };
    u16::try_from(number)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("port {number} is out of range 1-65535"))
}

/// The host to probe: the handler's, else the pod IP.
fn host_of(host: Option<&String>, t: &Target) -> Result<String, String> {
    host.filter(|h| !h.is_empty())
        .or(t.pod_ip.as_ref())
        .cloned()
        .ok_or_else(|| "the pod has no IP address yet".to_string())
}

/// `host:port`, bracketing an IPv6 address.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn tcp_socket(a: &TCPSocketAction, t: &Target) -> Outcome {
    let addr = match host_of(a.host.as_ref(), t)
        .and_then(|h| Ok(authority(&h, resolve_port(&a.port, &t.ports)?)))
    {
        Ok(addr) => addr,
        Err(e) => return Outcome::Failure(e),
    };
    match TcpStream::connect(&addr).await {
        Ok(_) => Outcome::Success,
        Err(e) => Outcome::Failure(format!("dial tcp {addr}: {e}")),
    }
}

async fn http_get(a: &HTTPGetAction, t: &Target) -> Outcome {
    let (host, port) =
        match host_of(a.host.as_ref(), t).and_then(|h| Ok((h, resolve_port(&a.port, &t.ports)?))) {
            Ok(hp) => hp,
            Err(e) => return Outcome::Failure(e),
        };
    let https = a
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"));
    let path = match a.path.as_deref().unwrap_or("/") {
        p if p.starts_with('/') => p.to_string(),
        p => format!("/{p}"),
    };
    let addr = authority(&host, port);
    let url = format!("{}://{addr}{path}", if https { "https" } else { "http" });
    let request = match http_request(a, &addr, &path) {
        Ok(r) => r,
        Err(e) => return Outcome::Failure(format!("Get {url:?}: {e}")),
    };
    let status = match TcpStream::connect(&addr).await {
        Err(e) => Err(format!("dial tcp {addr}: {e}")),
        Ok(tcp) if https => match tls_connect(tcp, &host).await {
            Ok(tls) => send(tls, request).await,
            Err(e) => Err(e),
        },
        Ok(tcp) => send(tcp, request).await,
    };
    match status {
        Ok(code) if (200..400).contains(&code) => Outcome::Success,
        Ok(code) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        Err(e) => Outcome::Failure(format!("Get {url:?}: {e}")),
    }
}

/// The probe's GET request: its headers, a Host of `addr` unless they set one.
fn http_request(
    a: &HTTPGetAction,
    addr: &str,
    path: &str,
) -> Result<hyper::Request<Empty<Bytes>>, String> {
    let mut builder = hyper::Request::get(path)
        .header(hyper::header::USER_AGENT, USER_AGENT)
        .header(hyper::header::ACCEPT, "*/*");
    let headers = a.http_headers.as_deref().unwrap_or_default();
    if !headers.iter().any(|h| h.name.eq_ignore_ascii_case("host")) {
        builder = builder.header(hyper::header::HOST, addr);
    }
    for h in headers {
        builder = builder.header(h.name.as_str(), h.value.as_str());
    }
    builder
        .body(Empty::new())
        .map_err(|e| format!("invalid request: {e}"))
}

/// Sends `request` over `stream` (HTTP/1.1); the answer's status code.
async fn send<S>(stream: S, request: hyper::Request<Empty<Bytes>>) -> Result<u16, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string());
    conn.abort();
    Ok(answer?.status().as_u16())
}

/// TLS over `tcp` without checking the server's certificate (Kubernetes' HTTPS probes do
/// not verify it either); handshake signatures are still checked.
async fn tls_connect(
    tcp: TcpStream,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("server name {host:?}: {e}"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls handshake: {e}"))
}

/// Accepts any server certificate; verifies handshake signatures with the provider.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn grpc(a: &GRPCAction, t: &Target) -> Outcome {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    let host = match host_of(None, t) {
        Ok(h) => h,
        Err(e) => return Outcome::Failure(e),
    };
    let port = match u16::try_from(a.port).ok().filter(|p| *p > 0) {
        Some(p) => p,
        None => return Outcome::Failure(format!("port {} is out of range 1-65535", a.port)),
    };
    let addr = authority(&host, port);
    let channel = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e.connect().await,
        Err(e) => return Outcome::Failure(format!("address {addr}: {e}")),
    };
    let channel = match channel {
        Ok(c) => c,
        Err(e) => return Outcome::Failure(format!("failed to connect service {addr:?}: {e}")),
    };
    let service = a.service.clone().unwrap_or_default();
    match HealthClient::new(channel)
        .check(HealthCheckRequest { service })
        .await
    {
        Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => Outcome::Success,
        Ok(r) => {
            let status =
                ServingStatus::try_from(r.get_ref().status).map_or("UNKNOWN", |s| s.as_str_name());
            Outcome::Failure(format!("service unhealthy (responded with {status:?})"))
        }
        Err(e) => Outcome::Failure(format!("health rpc failed: {} {}", e.code(), e.message())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;

    fn target(ports: serde_json::Value) -> Target {
        Target {
            cri: CriClient::connect_lazy(Path::new("/nonexistent/cri.sock")).unwrap(),
            container_id: "c1".into(),
            pod_ip: Some("127.0.0.1".into()),
            ports: serde_json::from_value(ports).unwrap(),
        }
    }

    use std::path::Path;

    async fn serve_http() -> u16 {
        let app = axum::Router::new()
            .route(
                "/healthz",
                get(|h: HeaderMap| async move {
                    let probe = h.get("x-probe").and_then(|v| v.to_str().ok()) == Some("bpfk");
                    let agent =
                        h.get("user-agent").and_then(|v| v.to_str().ok()) == Some(USER_AGENT);
                    if probe && agent {
                        StatusCode::OK
                    } else {
                        StatusCode::BAD_REQUEST
                    }
                }),
            )
            .route("/moved", get(|| async { StatusCode::FOUND }))
            .route("/down", get(|| async { StatusCode::SERVICE_UNAVAILABLE }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    fn http(path: &str, port: IntOrString) -> Action {
        Action::HttpGet(HTTPGetAction {
            path: Some(path.into()),
            port,
            http_headers: Some(vec![k8s_openapi::api::core::v1::HTTPHeader {
                name: "X-Probe".into(),
                value: "bpfk".into(),
            }]),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn http_probes_by_named_port_with_headers() {
        let port = serve_http().await;
        let t = target(serde_json::json!([{"name": "web", "containerPort": port}]));
        let second = Duration::from_secs(1);
        let named = IntOrString::String("web".into());
        assert_eq!(
            run(&http("/healthz", named.clone()), &t, second).await,
            Outcome::Success
        );
        assert_eq!(
            run(&http("moved", named), &t, second).await,
            Outcome::Success,
            "3xx succeeds"
        );
        let down = run(&http("/down", IntOrString::Int(port as i32)), &t, second).await;
        assert_eq!(
            down,
            Outcome::Failure("HTTP probe failed with statuscode: 503".into())
        );
        let unknown = run(
            &http("/", IntOrString::String("metrics".into())),
            &t,
            second,
        )
        .await;
        assert!(
            matches!(&unknown, Outcome::Failure(m) if m.contains("\"metrics\"")),
            "{unknown:?}"
        );
    }

    #[tokio::test]
    async fn tcp_probes_connect_and_time_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port() as i32;
        let t = target(serde_json::json!([]));
        let tcp = |port| {
            Action::TcpSocket(TCPSocketAction {
                host: None,
                port: IntOrString::Int(port),
            })
        };
        let second = Duration::from_secs(1);
        assert_eq!(run(&tcp(port), &t, second).await, Outcome::Success);
        // accepted but never answered: the HTTP probe runs into its timeout
        let silent = run(
            &http("/", IntOrString::Int(port)),
            &t,
            Duration::from_millis(200),
        )
        .await;
        assert!(
            matches!(&silent, Outcome::Failure(m) if m.starts_with("timeout")),
            "{silent:?}"
        );
        drop(listener);
        let refused = run(&tcp(port), &t, second).await;
        assert!(
            matches!(&refused, Outcome::Failure(m) if m.starts_with("dial tcp 127.0.0.1:")),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn grpc_probes_ask_the_health_service() {
        use tonic_health::ServingStatus;
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("ready", ServingStatus::Serving)
            .await;
        reporter
            .set_service_status("down", ServingStatus::NotServing)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port() as i32;
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(incoming),
        );
        let t = target(serde_json::json!([]));
        let probe = |port, service: Option<&str>| {
            Action::Grpc(GRPCAction {
                port,
                service: service.map(str::to_string),
            })
        };
        let second = Duration::from_secs(2);
        // no service name: the server's overall health, which tonic-health reports serving
        assert_eq!(run(&probe(port, None), &t, second).await, Outcome::Success);
        assert_eq!(
            run(&probe(port, Some("ready")), &t, second).await,
            Outcome::Success
        );
        let down = run(&probe(port, Some("down")), &t, second).await;
        assert!(
            matches!(&down, Outcome::Failure(m) if m.contains("NOT_SERVING")),
            "{down:?}"
        );
        let unknown = run(&probe(port, Some("nope")), &t, second).await;
        assert!(
            matches!(&unknown, Outcome::Failure(m) if m.starts_with("health rpc failed")),
            "{unknown:?}"
        );
        server.abort();
        let _ = server.await;
        let gone = run(&probe(port, None), &t, second).await;
        assert!(
            matches!(&gone, Outcome::Failure(m) if m.starts_with("failed to connect")),
            "{gone:?}"
        );
    }

    #[test]
    fn ports_resolve_by_number_or_name() {
        let ports: Vec<ContainerPort> =
            serde_json::from_value(serde_json::json!([{"name": "http", "containerPort": 8080}]))
                .unwrap();
        assert_eq!(resolve_port(&IntOrString::Int(80), &ports), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &ports),
            Ok(8080)
        );
        assert_eq!(
            resolve_port(&IntOrString::String("9090".into()), &ports),
            Ok(9090)
        );
        assert!(resolve_port(&IntOrString::Int(0), &ports).is_err());
        assert!(resolve_port(&IntOrString::Int(70000), &ports).is_err());
    }

    #[test]
    fn handlers_of_probes_and_hooks() {
        let p: Probe = serde_json::from_value(serde_json::json!({"grpc": {"port": 9000}})).unwrap();
        assert!(matches!(Action::of_probe(&p), Some(Action::Grpc(g)) if g.port == 9000));
        let h: LifecycleHandler =
            serde_json::from_value(serde_json::json!({"sleep": {"seconds": 2}})).unwrap();
        assert_eq!(Action::of_hook(&h), Some(Action::Sleep(2)));
        assert_eq!(Action::of_probe(&Probe::default()), None);
    }
}
