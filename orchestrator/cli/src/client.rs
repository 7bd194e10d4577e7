//! Connecting to the API server (kubeconfig or `--server`) and the raw REST
//! calls the commands make through kube-rs.

use std::path::PathBuf;

use base64::Engine;
use http::{header, Method, Request};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::Status;
use kube::{Client, Config};
use serde_json::Value;

use crate::error::{reason_for_code, Error, Result};

/// `Accept` header asking for server-side Table output, like kubectl.
pub const ACCEPT_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
/// JSON merge patch content type.
pub const MERGE_PATCH: &str = "application/merge-patch+json";

/// How to find the API server.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub kubeconfig: Option<PathBuf>,
    pub server: Option<String>,
    pub context: Option<String>,
    pub namespace: Option<String>,
    /// With `server`: the CA file, a client certificate and key, a bearer token.
    pub certificate_authority: Option<PathBuf>,
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub token: Option<String>,
}

/// A connected client plus what commands need to know about the connection.
#[derive(Clone)]
pub struct Ctx {
    pub client: Client,
    /// The server URL, for error messages.
    pub server: String,
    /// `-n`, else the kubeconfig context's namespace, else `default`.
    pub namespace: String,
    /// Whether `-n` was given explicitly.
    pub namespace_explicit: bool,
    /// The CA certificate (DER) the server's certificate is checked against, if any.
    pub ca_der: Option<Vec<u8>>,
}

fn kubeconfig_paths(explicit: Option<&PathBuf>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.clone()];
    }
    if let Some(env) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        return std::env::split_paths(&env).filter(|p| p.exists()).collect();
    }
    match std::env::var_os("HOME") {
        Some(home) => {
            let p = PathBuf::from(home).join(".kube").join("config");
            if p.exists() {
                vec![p]
            } else {
                Vec::new()
            }
        }
        None => Vec::new(),
    }
}

/// The configuration of `--server` with the credentials of the other flags.
fn server_config(uri: http::Uri, opts: &ConnectOptions) -> Result<Config> {
    let mut config = Config::new(uri);
    let read = |flag: &str, path: &PathBuf| {
        std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("--{flag} {}: {e}", path.display())))
    };
    if let Some(ca) = &opts.certificate_authority {
        let pem = read("certificate-authority", ca)?;
        let certs = bpfk_auth::tls::certificates(&pem, "CA")
            .map_err(|e| Error::Config(format!("--certificate-authority {}: {e}", ca.display())))?;
        config.root_cert = Some(certs.iter().map(|c| c.to_vec()).collect());
    }
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    if let (Some(cert), Some(key)) = (&opts.client_certificate, &opts.client_key) {
        config.auth_info.client_certificate_data = Some(b64(read("client-certificate", cert)?));
        config.auth_info.client_key_data = Some(b64(read("client-key", key)?).into());
    }
    if let Some(token) = &opts.token {
        config.auth_info.token = Some(token.clone().into());
    }
    Ok(config)
}

/// Build the kube-rs configuration from the options.
pub async fn load_config(opts: &ConnectOptions) -> Result<Config> {
    if let Some(server) = &opts.server {
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            return Err(Error::Config(format!(
                "--server must be a URL with a scheme, like http://127.0.0.1:6443 (got {server:?})"
            )));
        }
        let uri: http::Uri = server
            .parse()
            .map_err(|e| Error::Config(format!("invalid --server URL {server:?}: {e}")))?;
        return server_config(uri, opts);
    }
    let paths = kubeconfig_paths(opts.kubeconfig.as_ref());
    if paths.is_empty() {
        return Err(Error::Config(
            "no API server configured: pass --server URL or --kubeconfig PATH, set KUBECONFIG, or create ~/.kube/config"
                .to_string(),
        ));
    }
    let mut merged: Option<Kubeconfig> = None;
    for p in &paths {
        let kc = Kubeconfig::read_from(p)
            .map_err(|e| Error::Config(format!("cannot load kubeconfig {}: {e}", p.display())))?;
        merged = Some(match merged {
            None => kc,
            Some(m) => m.merge(kc).map_err(|e| {
                Error::Config(format!("cannot merge kubeconfig {}: {e}", p.display()))
            })?,
        });
    }
    let kc = merged.ok_or_else(|| Error::Config("no kubeconfig loaded".into()))?;
    let options = KubeConfigOptions {
        context: opts.context.clone(),
        ..Default::default()
    };
    Config::from_custom_kubeconfig(kc, &options)
        .await
        .map_err(|e| Error::Config(format!("invalid kubeconfig: {e}")))
}

impl Ctx {
    /// Connect (lazily: no request is made until a command needs one).
    pub async fn connect(opts: &ConnectOptions) -> Result<Self> {
        let config = load_config(opts).await?;
        let server = config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string();
        let namespace = opts
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let ca_der = config.root_cert.as_ref().and_then(|c| c.first().cloned());
        let client = Client::try_from(config)
            .map_err(|e| Error::Config(format!("cannot build a client for {server}: {e}")))?;
        Ok(Ctx {
            client,
            server,
            namespace,
            namespace_explicit: opts.namespace.is_some(),
            ca_der,
        })
    }

    /// Translate a kube-rs error into ours: connection failures become
    /// [`Error::Unreachable`], error bodies that were not a `Status` get the
    /// reason kubectl would show for their HTTP code.
    pub fn map_err(&self, e: kube::Error) -> Error {
        match e {
            kube::Error::Api(status) => Error::Api(normalize_status(status)),
            kube::Error::SerdeError(e) => Error::Decode(e.to_string()),
            other => match io_reason(&other) {
                Some(reason) => Error::Unreachable {
                    url: self.server.clone(),
                    reason,
                },
                None => match other {
                    kube::Error::HyperError(_) | kube::Error::Service(_) => Error::Unreachable {
                        url: self.server.clone(),
                        reason: chain_text(&other),
                    },
                    other => Error::Decode(chain_text(&other)),
                },
            },
        }
    }

    fn request(
        &self,
        method: Method,
        uri: &str,
        accept: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Request<Vec<u8>>> {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(a) = accept {
            b = b.header(header::ACCEPT, a);
        }
        if let Some(c) = content_type {
            b = b.header(header::CONTENT_TYPE, c);
        }
        b.body(body)
            .map_err(|e| Error::Usage(format!("cannot build a request for {uri}: {e}")))
    }

    /// GET `uri` and parse the JSON answer.
    pub async fn get_json(&self, uri: &str, accept: Option<&str>) -> Result<Value> {
        let req = self.request(
            Method::GET,
            uri,
            accept.or(Some("application/json")),
            None,
            Vec::new(),
        )?;
        let text = self
            .client
            .request_text(req)
            .await
            .map_err(|e| self.map_err(e))?;
        parse_json(&text)
    }

    /// GET `uri` as text (pod logs).
    pub async fn get_text(&self, uri: &str) -> Result<String> {
        let req = self.request(Method::GET, uri, Some("*/*"), None, Vec::new())?;
        self.client
            .request_text(req)
            .await
            .map_err(|e| self.map_err(e))
    }

    /// GET `uri` and hand each line of the answer to `on_line` as it arrives
    /// (`logs -f`). Ends when the server closes the response.
    pub async fn stream_text(&self, uri: &str, mut on_line: impl FnMut(&str)) -> Result<()> {
        let req = self.request(Method::GET, uri, Some("*/*"), None, Vec::new())?;
        let reader = self
            .client
            .request_stream(req)
            .await
            .map_err(|e| self.map_err(e))?;
        let mut lines = futures::io::AsyncBufReadExt::lines(reader);
        while let Some(line) = futures::StreamExt::next(&mut lines).await {
            match line {
                Ok(line) => on_line(&format!("{line}\n")),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(Error::Decode(format!("reading the log stream: {e}"))),
            }
        }
        Ok(())
    }

    /// Send `body` as JSON (`content_type` for PATCH) and parse the JSON answer.
    pub async fn send_json(
        &self,
        method: Method,
        uri: &str,
        content_type: &str,
        body: &Value,
    ) -> Result<Value> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::Decode(e.to_string()))?;
        let req = self.request(
            method,
            uri,
            Some("application/json"),
            Some(content_type),
            bytes,
        )?;
        let text = self
            .client
            .request_text(req)
            .await
            .map_err(|e| self.map_err(e))?;
        parse_json(&text)
    }

    /// Open a watch and yield its events as they arrive. Events are parsed
    /// leniently (`{"type": ..., "object": ...}` with any object), so a Table
    /// bookmark or an unknown event type never ends the watch. The stream ends when
    /// the server closes the watch (or the client's read timeout passes).
    pub async fn watch(
        &self,
        uri: &str,
        accept: &str,
    ) -> Result<impl futures::Stream<Item = Result<RawEvent>> + use<>> {
        let mut req = self.request(Method::GET, uri, Some(accept), None, Vec::new())?;
        // One JSON document per line; compression would only delay events.
        req.headers_mut().insert(
            header::ACCEPT_ENCODING,
            http::HeaderValue::from_static("identity"),
        );
        let reader = self
            .client
            .request_stream(req)
            .await
            .map_err(|e| self.map_err(e))?;
        let lines = futures::io::AsyncBufReadExt::lines(reader);
        Ok(futures::StreamExt::filter_map(lines, |line| async move {
            match line {
                Ok(line) if line.trim().is_empty() => None,
                Ok(line) => Some(
                    serde_json::from_str::<RawEvent>(&line)
                        .map_err(|e| Error::Decode(format!("invalid watch event ({e}): {line}"))),
                ),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    None
                }
                Err(e) => Some(Err(Error::Decode(format!("reading the watch stream: {e}")))),
            }
        }))
    }
}

/// One watch event as sent on the wire.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RawEvent {
    /// ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub object: Value,
}

/// What a watch event means for a printer.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchStep {
    /// An object (or a Table of it) was added or modified.
    Changed(Value),
    /// An object was deleted.
    Deleted(Value),
    /// Only the resourceVersion moved on.
    Bookmark(String),
    /// The resourceVersion is too old (410 Gone): list again and resume.
    Expired,
    /// An event type this client does not know: ignored.
    Ignore,
}

impl RawEvent {
    /// Interpret the event; an ERROR event other than 410 Gone becomes an error.
    pub fn step(self) -> Result<WatchStep> {
        match self.kind.as_str() {
            "ADDED" | "MODIFIED" => Ok(WatchStep::Changed(self.object)),
            "DELETED" => Ok(WatchStep::Deleted(self.object)),
            "BOOKMARK" => Ok(WatchStep::Bookmark(
                self.object
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            )),
            "ERROR" => {
                let status: Status = serde_json::from_value(self.object)
                    .map_err(|e| Error::Decode(format!("invalid watch error event ({e})")))?;
                if status.code == 410 {
                    Ok(WatchStep::Expired)
                } else {
                    Err(Error::Api(normalize_status(Box::new(status))))
                }
            }
            _ => Ok(WatchStep::Ignore),
        }
    }
}

fn parse_json(text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::Decode(format!("invalid JSON ({e})")))
}

/// A `Status` kube-rs reconstructed from a non-JSON error body gets the reason
/// and message kubectl shows for that HTTP code.
pub fn normalize_status(mut status: Box<Status>) -> Box<Status> {
    if status.reason == "Failed to parse error data" {
        status.reason = reason_for_code(status.code).to_string();
        let body = status.message.trim().to_string();
        status.message = if body.is_empty() || body.len() > 300 || body.starts_with('<') {
            String::new()
        } else {
            body
        };
    }
    status
}

/// Build `path?k=v&...` with the values URL-encoded; empty values are left out.
pub fn with_query(path: &str, params: &[(&str, String)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in params {
        if !v.is_empty() {
            ser.append_pair(k, v);
            any = true;
        }
    }
    if any {
        format!("{path}?{}", ser.finish())
    } else {
        path.to_string()
    }
}

fn io_reason(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                std::io::ErrorKind::ConnectionReset => "connection reset by peer".to_string(),
                std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
                std::io::ErrorKind::HostUnreachable => "no route to host".to_string(),
                _ => io.to_string(),
            });
        }
        cur = err.source();
    }
    None
}

fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_events_are_interpreted() {
        let ev = |v: serde_json::Value| serde_json::from_value::<RawEvent>(v).unwrap().step();
        assert_eq!(
            ev(serde_json::json!({"type": "ADDED", "object": {"kind": "Table"}})).unwrap(),
            WatchStep::Changed(serde_json::json!({"kind": "Table"}))
        );
        assert_eq!(
            ev(serde_json::json!({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}})).unwrap(),
            WatchStep::Bookmark("9".into())
        );
        assert_eq!(
            ev(serde_json::json!({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}})).unwrap(),
            WatchStep::Expired
        );
        let err = ev(serde_json::json!({"type": "ERROR", "object": {"code": 500, "reason": "InternalError", "message": "boom"}})).unwrap_err();
        assert_eq!(err.report(), "Error from server (InternalError): boom");
        assert_eq!(
            ev(serde_json::json!({"type": "FUTURE"})).unwrap(),
            WatchStep::Ignore
        );
    }

    #[test]
    fn query_strings_are_encoded() {
        assert_eq!(
            with_query(
                "/api/v1/pods",
                &[
                    ("labelSelector", "app=nginx,tier in (a,b)".into()),
                    ("fieldSelector", String::new())
                ]
            ),
            "/api/v1/pods?labelSelector=app%3Dnginx%2Ctier+in+%28a%2Cb%29"
        );
        assert_eq!(with_query("/x", &[]), "/x");
    }

    #[test]
    fn bare_http_errors_get_kubectl_reasons() {
        let s = Status::failure("404 page not found", "Failed to parse error data").with_code(404);
        let s = normalize_status(Box::new(s));
        assert_eq!(s.reason, "NotFound");
        assert_eq!(s.message, "404 page not found");
        let s = Status::failure("", "Failed to parse error data").with_code(405);
        assert_eq!(normalize_status(Box::new(s)).reason, "MethodNotAllowed");
    }

    #[tokio::test]
    async fn server_flag_needs_a_scheme() {
        let opts = ConnectOptions {
            server: Some("127.0.0.1:1".into()),
            ..Default::default()
        };
        let err = load_config(&opts).await.err().unwrap();
        assert!(
            err.report().starts_with("error: --server must be a URL"),
            "{}",
            err.report()
        );
    }

    #[tokio::test]
    async fn connection_refused_is_one_clear_line() {
        // Bind then drop a listener so the port is (almost certainly) closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let ctx = Ctx::connect(&ConnectOptions {
            server: Some(format!("http://127.0.0.1:{port}")),
            ..Default::default()
        })
        .await
        .unwrap();
        let err = ctx.get_json("/version", None).await.unwrap_err();
        assert_eq!(
            err.report(),
            format!(
                "error: cannot reach the API server at http://127.0.0.1:{port}: connection refused"
            )
        );
    }
}
