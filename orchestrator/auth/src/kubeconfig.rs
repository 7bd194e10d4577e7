//! Kubeconfig files for the cluster: https, the CA's data, and a client certificate or a
//! bearer token.

use base64::Engine;

/// How a kubeconfig's user proves who it is.
pub enum Credential<'a> {
    /// A client certificate and its key (PEM).
    Certificate { cert_pem: &'a str, key_pem: &'a str },
    /// A bearer token.
    Token(&'a str),
}

/// A kubeconfig for `server` trusting `ca_pem`, as user `user` with `credential`, in context
/// `bpfk` (namespace default).
pub fn render(server: &str, ca_pem: &str, user: &str, credential: Credential<'_>) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let user_body = match credential {
        Credential::Certificate { cert_pem, key_pem } => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(cert_pem),
            b64(key_pem)
        ),
        Credential::Token(token) => format!("    token: {token}\n"),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: bpfk\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n- name: bpfk\n  context:\n    cluster: bpfk\n    user: {user}\n    namespace: default\ncurrent-context: bpfk\nusers:\n- name: {user}\n  user:\n{user_body}preferences: {{}}\n",
        ca = b64(ca_pem),
    )
}
