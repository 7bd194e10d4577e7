//! Authentication: who a request comes from, as kube-apiserver's union of authenticators:
//! the TLS client certificate (verified against the cluster CA by the TLS layer, CN = user,
//! O = groups), then a bearer token (the static token file). A request with neither is
//! anonymous, which only the health and version paths accept; a token that matches nothing
//! is 401 whatever else the request carries.

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use bpfk_auth::token_file::TokenFile;
use bpfk_auth::user::{self, UserInfo};

use crate::error::ApiError;

/// The user of a connection's verified client certificate, put on each of its requests by
/// the TLS server.
#[derive(Debug, Clone, Default)]
pub struct PeerIdentity(pub Option<Arc<UserInfo>>);

/// The user a request was authenticated as, put on the request for the handlers.
#[derive(Debug, Clone)]
pub struct RequestUser(pub Arc<UserInfo>);

/// The server's token authenticators.
#[derive(Debug, Default)]
pub struct Authenticator {
    /// `--token-auth-file`
    pub token_file: TokenFile,
}

/// Paths anyone may read (kube-apiserver's `system:public-info-viewer`).
pub fn public_path(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/livez" | "/readyz" | "/version" | "/version/"
    ) || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

impl Authenticator {
    /// The user of a request with `peer` (its connection's certificate) and `headers`;
    /// anonymous when it carries no credentials.
    pub fn authenticate(
        &self,
        peer: Option<&PeerIdentity>,
        headers: &HeaderMap,
    ) -> Result<Arc<UserInfo>, ApiError> {
        if let Some(user) = peer.and_then(|p| p.0.clone()) {
            return Ok(user);
        }
        match bearer_token(headers)? {
            Some(token) => self.token_user(token).ok_or(ApiError::Unauthorized),
            None => Ok(Arc::new(user::anonymous())),
        }
    }

    /// The user of a bearer token, if it is one of the server's.
    pub fn token_user(&self, token: &str) -> Option<Arc<UserInfo>> {
        self.token_file.user(token).cloned().map(Arc::new)
    }
}

/// The bearer token of `Authorization: Bearer ...`, if any; another scheme is 401 (basic
/// auth is not served, as Kubernetes ≥ 1.19).
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| ApiError::Unauthorized)?;
    let (scheme, token) = text.split_once(' ').ok_or(ApiError::Unauthorized)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::Unauthorized);
    }
    Ok(Some(token))
}

/// Whether `user` is the anonymous user.
pub fn is_anonymous(user: &UserInfo) -> bool {
    user.name == user::ANONYMOUS_USER
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn certificate_then_token_then_anonymous() {
        let authn = Authenticator {
            token_file: TokenFile::parse("secret-token,alice,1,dev").unwrap(),
        };
        let cert_user = Arc::new(user::authenticated("bob".into(), String::new(), vec![]));
        let peer = PeerIdentity(Some(cert_user));
        let bob = authn.authenticate(Some(&peer), &headers(None)).unwrap();
        assert_eq!(bob.name, "bob");
        let alice = authn
            .authenticate(None, &headers(Some("Bearer secret-token")))
            .unwrap();
        assert_eq!(alice.name, "alice");
        assert!(alice.in_group("dev"));
        let anon = authn.authenticate(None, &headers(None)).unwrap();
        assert!(is_anonymous(&anon));
        for bad in ["Bearer wrong", "Basic YTpi", "Bearer ", "secret-token"] {
            assert!(
                matches!(
                    authn.authenticate(None, &headers(Some(bad))),
                    Err(ApiError::Unauthorized)
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn public_paths() {
        for p in ["/healthz", "/livez", "/readyz", "/version", "/readyz/etcd"] {
            assert!(public_path(p), "{p}");
        }
        for p in ["/api", "/metrics", "/api/v1/namespaces", "/versionx"] {
            assert!(!public_path(p), "{p}");
        }
    }
}
