//! Reaching the lab's API server as its tests do: over TLS, trusting the cluster CA of the
//! kubeconfig the server wrote, as the admin of that kubeconfig, as a bearer of a token, or
//! anonymously. kube-rs clients ([`kube_client`]) and single blocking HTTPS requests
//! ([`ApiCredentials::request`]) for what kube-rs would hide (status codes, raw bodies).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;

/// What a kubeconfig written by `bpfk-server` holds.
#[derive(Clone)]
pub struct ApiCredentials {
    /// `https://A:P`
    pub server: String,
    pub ca_pem: String,
    /// The client certificate and key (PEM), absent for a token or anonymous.
    pub identity: Option<(String, String)>,
    /// A bearer token, sent when there is no certificate.
    pub token: Option<String>,
}

impl std::fmt::Debug for ApiCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiCredentials")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// A client certificate of the cluster CA under `pki_dir` (a server's `--data-dir`/pki) for
/// `user` in `groups`: the lab acts as the cluster's operator, as `kubeadm kubeconfig user`
/// does with the CA key.
pub fn issue_client_cert(pki_dir: &Path, user: &str, groups: &[&str]) -> bpfk_auth::pki::CertKey {
    let read = |f: &str| std::fs::read_to_string(pki_dir.join(f)).expect("the server's PKI");
    let ca = bpfk_auth::pki::ClusterCa::from_pem(&read("ca.crt"), &read("ca.key"))
        .expect("the cluster CA");
    ca.issue_client(user, groups, Duration::from_secs(3600))
        .expect("a client certificate")
}

/// A kubeconfig like `admin`'s (same server and CA) for `user` in `groups`, with a client
/// certificate from the CA under `pki_dir`.
pub fn user_kubeconfig(
    admin: &ApiCredentials,
    pki_dir: &Path,
    user: &str,
    groups: &[&str],
) -> String {
    let cert = issue_client_cert(pki_dir, user, groups);
    let credential = bpfk_auth::kubeconfig::Credential::Certificate {
        cert_pem: &cert.cert_pem,
        key_pem: &cert.key_pem,
    };
    bpfk_auth::kubeconfig::render(&admin.server, &admin.ca_pem, user, credential)
}

fn field<'a>(kubeconfig: &'a str, key: &str) -> Option<&'a str> {
    kubeconfig.lines().find_map(|l| {
        let value = l.trim().strip_prefix(key)?.strip_prefix(':')?;
        Some(value.trim().trim_matches('"'))
    })
}

fn decoded(kubeconfig: &str, key: &str) -> Option<String> {
    let b64 = field(kubeconfig, key)?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

impl ApiCredentials {
    /// The credentials of a kubeconfig's text; None when it is not one the server wrote.
    pub fn parse(kubeconfig: &str) -> Option<ApiCredentials> {
        let server = field(kubeconfig, "server")?.to_string();
        let ca_pem = decoded(kubeconfig, "certificate-authority-data")?;
        let identity = decoded(kubeconfig, "client-certificate-data")
            .zip(decoded(kubeconfig, "client-key-data"));
        let token = field(kubeconfig, "token").map(String::from);
        Some(ApiCredentials {
            server,
            ca_pem,
            identity,
            token,
        })
    }

    /// The credentials of the kubeconfig at `path`.
    pub fn read(path: &Path) -> Option<ApiCredentials> {
        Self::parse(&std::fs::read_to_string(path).ok()?)
    }

    /// The same server and CA, with no credentials at all.
    pub fn anonymous(&self) -> ApiCredentials {
        ApiCredentials {
            identity: None,
            token: None,
            ..self.clone()
        }
    }

    /// The same server and CA, with bearer `token` instead.
    pub fn with_token(&self, token: &str) -> ApiCredentials {
        ApiCredentials {
            identity: None,
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    /// The same credentials for the server at `addr` (another server of the same cluster).
    pub fn at(&self, addr: SocketAddr) -> ApiCredentials {
        ApiCredentials {
            server: format!("https://{addr}"),
            ..self.clone()
        }
    }

    /// The server's address.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.server.strip_prefix("https://")?.parse().ok()
    }

    /// A kube-rs client with these credentials.
    pub fn kube_client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.server.parse().expect("server URL"));
        let ca = bpfk_auth::tls::certificates(&self.ca_pem, "CA").expect("CA certificate");
        config.root_cert = Some(ca.iter().map(|c| c.to_vec()).collect());
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        if let Some((cert, key)) = &self.identity {
            config.auth_info.client_certificate_data = Some(b64(cert));
            config.auth_info.client_key_data = Some(b64(key).into());
        } else if let Some(token) = &self.token {
            config.auth_info.token = Some(token.clone().into());
        }
        kube::Client::try_from(config).expect("kube client")
    }

    /// One HTTPS/1.1 request with an optional JSON body: (status code, body). No retries.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        json_body: Option<&str>,
    ) -> std::io::Result<(u16, String)> {
        let body = json_body.unwrap_or_default();
        let raw = self.exchange(
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )?;
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunked(body)
        } else {
            body.to_string()
        };
        Ok((code, body))
    }

    /// One HTTPS/1.1 exchange with `headers` (Content-Length is added unless given) and
    /// `body`: the whole answer as text, head and body, as the server sent it.
    pub fn exchange(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<String> {
        let addr = self
            .addr()
            .ok_or_else(|| std::io::Error::other(format!("not https://A:P: {}", self.server)))?;
        let tls = bpfk_auth::tls::client_config(
            &self.ca_pem,
            self.identity
                .as_ref()
                .map(|(c, k)| (c.as_str(), k.as_str())),
        )
        .map_err(std::io::Error::other)?;
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let conn =
            rustls::ClientConnection::new(Arc::new(tls), name).map_err(std::io::Error::other)?;
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        tcp.set_read_timeout(Some(Duration::from_secs(40)))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if let (None, Some(token)) = (&self.identity, &self.token) {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        stream.flush()?;
        let mut raw = Vec::new();
        match stream.read_to_end(&mut raw) {
            Ok(_) => {}
            // a peer that closes without close_notify: what arrived is the answer
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            Err(e) => return Err(e),
        }
        Ok(String::from_utf8_lossy(&raw).into_owned())
    }
}

/// The data of a chunked HTTP/1.1 body.
fn dechunked(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunked("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }

    #[test]
    fn kubeconfig_fields() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let text = format!(
            "clusters:\n- cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: {}\nusers:\n- name: a\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            b64("CA"),
            b64("CERT"),
            b64("KEY")
        );
        let creds = ApiCredentials::parse(&text).unwrap();
        assert_eq!(creds.addr(), Some("127.0.0.1:6443".parse().unwrap()));
        assert_eq!(creds.ca_pem, "CA");
        assert_eq!(creds.identity, Some(("CERT".into(), "KEY".into())));
        assert!(creds.anonymous().identity.is_none());
    }
}
