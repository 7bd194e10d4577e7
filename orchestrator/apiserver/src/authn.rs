//! Authentication: who a request comes from, as kube-apiserver's union of authenticators:
//! the TLS client certificate (verified against the cluster CA by the TLS layer, CN = user,
//! O = groups), then a bearer token (the static token file, bootstrap tokens
//! `abcdef.0123456789abcdef` backed by kube-system Secrets, then ServiceAccount tokens
//! signed by the cluster's service-account key). A request with neither is
//! anonymous, which only the health and version paths accept; a token that matches nothing
//! is 401 whatever else the request carries.

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use bpfk_auth::token_file::TokenFile;
use bpfk_auth::user::{self, UserInfo};

use crate::error::ApiError;
use crate::state::AppState;

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
    /// ServiceAccount tokens (absent in servers built without a PKI, as some unit tests).
    pub service_accounts: Option<crate::service_accounts::ServiceAccountTokens>,
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
    pub async fn authenticate(
        &self,
        state: &AppState,
        peer: Option<&PeerIdentity>,
        headers: &HeaderMap,
    ) -> Result<Arc<UserInfo>, ApiError> {
        match presented(peer, headers)? {
            Presented::User(user) => Ok(user),
            Presented::Anonymous => Ok(Arc::new(user::anonymous())),
            Presented::Token(token) => {
                self.token_user(state, token, None).await.map_err(|reason| {
                    tracing::debug!(%reason, "bearer token refused");
                    ApiError::Unauthorized
                })
            }
        }
    }

    /// The user of a bearer token, or why it is none (never the token itself); a
    /// ServiceAccount token must be for one of `audiences` (the API server's when `None`).
    pub async fn token_user(
        &self,
        state: &AppState,
        token: &str,
        audiences: Option<&[String]>,
    ) -> Result<Arc<UserInfo>, String> {
        if let Some(user) = self.token_file.user(token) {
            return Ok(Arc::new(user.clone()));
        }
        if bpfk_auth::bootstrap_token::looks_like_bootstrap_token(token) {
            return bootstrap_user(state, token).await.map(Arc::new);
        }
        match &self.service_accounts {
            Some(sa) if bpfk_auth::service_account::looks_like_jwt(token) => {
                sa.authenticate(state, token, audiences).await.map(Arc::new)
            }
            _ => Err("the token is not known".into()),
        }
    }
}

/// The user of a bootstrap token: its kube-system Secret (watch cache, else etcd for one
/// made a moment ago) must hold it, unexpired and usable for authentication.
async fn bootstrap_user(state: &AppState, token: &str) -> Result<UserInfo, String> {
    use bpfk_auth::bootstrap_token::{self, BootstrapToken};
    let token: BootstrapToken = token
        .parse()
        .map_err(|e: bootstrap_token::TokenError| e.to_string())?;
    let res =
        bpfk_apimachinery::registry::find("", "v1", "secrets").ok_or("secrets are not served")?;
    let key = crate::state::key(res, Some(bootstrap_token::NAMESPACE), &token.secret_name());
    let cached = match state.ready_cache(res).await {
        Ok(cache) => cache.get(&key).await,
        Err(_) => None,
    };
    let stored = match cached {
        Some(kv) => Some(kv),
        None => state.store.get(&key).await.map_err(|e| e.to_string())?,
    };
    let kv = stored.ok_or("no Secret holds this bootstrap token")?;
    let secret =
        serde_json::from_slice(&kv.value).map_err(|_| "the token's Secret does not decode")?;
    bootstrap_token::authenticate_now(&secret, &token).map_err(|e| e.to_string())
}

/// The credentials a request carries, first the certificate's user.
#[derive(Debug)]
pub enum Presented<'a> {
    User(Arc<UserInfo>),
    Token(&'a str),
    Anonymous,
}

/// What `peer` and `headers` present; a malformed Authorization header is 401.
pub fn presented<'a>(
    peer: Option<&PeerIdentity>,
    headers: &'a HeaderMap,
) -> Result<Presented<'a>, ApiError> {
    if let Some(user) = peer.and_then(|p| p.0.clone()) {
        return Ok(Presented::User(user));
    }
    Ok(match bearer_token(headers)? {
        Some(token) => Presented::Token(token),
        None => Presented::Anonymous,
    })
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
        let tokens = TokenFile::parse("secret-token,alice,1,dev").unwrap();
        let cert_user = Arc::new(user::authenticated("bob".into(), String::new(), vec![]));
        let peer = PeerIdentity(Some(cert_user));
        let h = headers(Some("Bearer secret-token"));
        match presented(Some(&peer), &h).unwrap() {
            Presented::User(bob) => assert_eq!(bob.name, "bob"),
            other => panic!("{other:?}"),
        }
        match presented(None, &h).unwrap() {
            Presented::Token(t) => {
                let alice = tokens.user(t).unwrap();
                assert_eq!(alice.name, "alice");
                assert!(alice.in_group("dev"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            presented(None, &headers(None)),
            Ok(Presented::Anonymous)
        ));
        assert!(tokens.user("wrong").is_none());
        for bad in ["Basic YTpi", "Bearer ", "secret-token"] {
            let h = headers(Some(bad));
            assert!(
                matches!(presented(None, &h), Err(ApiError::Unauthorized)),
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
