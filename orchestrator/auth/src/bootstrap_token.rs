//! Bootstrap tokens as kubeadm makes them and kube-apiserver's bootstrap authenticator reads
//! them (`abcdef.0123456789abcdef`, stored as the kube-system Secret
//! `bootstrap-token-abcdef` of type `bootstrap.kubernetes.io/token`), and the join token a
//! new machine is given: a bootstrap token with the hash of the cluster CA's public key in
//! front (`K10<hex sha256>::abcdef.0123456789abcdef`, shaped like k3s' secure token; the hash
//! is kubeadm's `--discovery-token-ca-cert-hash`), so the machine can check it talks to the
//! right cluster before it sends the token anywhere.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use rand::Rng;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::user::{self, UserInfo, BOOTSTRAPPERS_GROUP, BOOTSTRAP_USER_PREFIX};

/// The type of a bootstrap token's Secret.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The namespace of bootstrap token Secrets.
pub const NAMESPACE: &str = "kube-system";
/// The name of a token's Secret is this and the token id.
pub const SECRET_PREFIX: &str = "bootstrap-token-";
/// The group the tokens `bpfk token create` makes give besides `system:bootstrappers`
/// (kubeadm's is `system:bootstrappers:kubeadm:default-node-token`).
pub const DEFAULT_NODE_GROUP: &str = "system:bootstrappers:bpfk:default-node-token";
/// The prefix of a join token (k3s' "K10" secure-token format).
pub const JOIN_PREFIX: &str = "K10";

const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Why a token or its Secret was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("a bootstrap token is [a-z0-9]{{6}}.[a-z0-9]{{16}}")]
    Format,
    #[error("a join token is K10<sha256 of the CA's public key, 64 hex digits>::<id>.<secret>")]
    JoinFormat,
    #[error("the token's Secret is not of type bootstrap.kubernetes.io/token")]
    SecretType,
    #[error("the token does not match its Secret")]
    Mismatch,
    #[error("the token expired at {0}")]
    Expired(String),
    #[error("the token may not be used for authentication")]
    NotForAuthentication,
    #[error("the token's Secret is being deleted")]
    Deleting,
    #[error("the token's Secret has a malformed {0}")]
    Malformed(&'static str),
}

/// A bootstrap token: its public id and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: String,
    secret: String,
}

impl fmt::Debug for BootstrapToken {
    // never the secret
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl BootstrapToken {
    /// A new random token.
    pub fn generate() -> BootstrapToken {
        let mut rng = rand::thread_rng();
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
                .collect()
        };
        BootstrapToken {
            id: pick(ID_LEN),
            secret: pick(SECRET_LEN),
        }
    }

    /// The name of its Secret in kube-system.
    pub fn secret_name(&self) -> String {
        format!("{SECRET_PREFIX}{}", self.id)
    }

    /// `id.secret`, what a client sends as its bearer token.
    pub fn expose(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

fn is_token_part(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| ALPHABET.contains(&b))
}

impl FromStr for BootstrapToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, TokenError> {
        let (id, secret) = s.split_once('.').ok_or(TokenError::Format)?;
        if !is_token_part(id, ID_LEN) || !is_token_part(secret, SECRET_LEN) {
            return Err(TokenError::Format);
        }
        Ok(BootstrapToken {
            id: id.into(),
            secret: secret.into(),
        })
    }
}

/// Whether a bearer token has the shape of a bootstrap token (then only the bootstrap
/// authenticator answers for it).
pub fn looks_like_bootstrap_token(token: &str) -> bool {
    token.parse::<BootstrapToken>().is_ok()
}

/// A join token: the CA's public-key hash (`sha256:<hex>`) and a bootstrap token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_hash: String,
    pub token: BootstrapToken,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_hash", &self.ca_hash)
            .field("token", &self.token)
            .finish()
    }
}

impl JoinToken {
    /// The text a machine is given: `K10<hex>::<id>.<secret>`.
    pub fn expose(&self) -> String {
        let hex = self.ca_hash.trim_start_matches("sha256:");
        format!("{JOIN_PREFIX}{hex}::{}", self.token.expose())
    }
}

impl FromStr for JoinToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, TokenError> {
        let rest = s
            .trim()
            .strip_prefix(JOIN_PREFIX)
            .ok_or(TokenError::JoinFormat)?;
        let (hex, token) = rest.split_once("::").ok_or(TokenError::JoinFormat)?;
        let hex_ok = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex_ok {
            return Err(TokenError::JoinFormat);
        }
        Ok(JoinToken {
            ca_hash: format!("sha256:{}", hex.to_ascii_lowercase()),
            token: token.parse()?,
        })
    }
}

/// What a token's Secret says besides the token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenOptions {
    /// When it stops working; None = never.
    pub expires: Option<OffsetDateTime>,
    pub description: String,
    /// Groups it gives besides `system:bootstrappers` (each `system:bootstrappers:...`).
    pub extra_groups: Vec<String>,
}

/// The kube-system Secret that makes `token` valid, as kubeadm writes it.
pub fn secret_for(token: &BootstrapToken, options: &TokenOptions) -> Value {
    let mut data = BTreeMap::from([
        ("token-id", token.id.clone()),
        ("token-secret", token.secret.clone()),
        ("usage-bootstrap-authentication", "true".into()),
        ("usage-bootstrap-signing", "true".into()),
    ]);
    if let Some(when) = options.expires.and_then(|t| t.format(&Rfc3339).ok()) {
        data.insert("expiration", when);
    }
    if !options.description.is_empty() {
        data.insert("description", options.description.clone());
    }
    if !options.extra_groups.is_empty() {
        data.insert("auth-extra-groups", options.extra_groups.join(","));
    }
    let encoded: serde_json::Map<String, Value> = data
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                json!(base64::engine::general_purpose::STANDARD.encode(v)),
            )
        })
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": SECRET_TYPE,
        "metadata": {"name": token.secret_name(), "namespace": NAMESPACE},
        "data": encoded,
    })
}

/// A field of a bootstrap Secret's `data`, decoded.
pub fn field<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    let bytes = &secret.data.as_ref()?.get(key)?.0;
    std::str::from_utf8(bytes).ok()
}

/// When the token of `secret` expires (None: never); Err when `expiration` is malformed.
pub fn expiration(secret: &Secret) -> Result<Option<OffsetDateTime>, TokenError> {
    match field(secret, "expiration") {
        None => Ok(None),
        Some(text) => OffsetDateTime::parse(text, &Rfc3339)
            .map(Some)
            .map_err(|_| TokenError::Malformed("expiration")),
    }
}

/// Whether the token of `secret` expired before `now` (what the token cleaner deletes).
pub fn is_expired(secret: &Secret, now: OffsetDateTime) -> bool {
    matches!(expiration(secret), Ok(Some(when)) if when <= now)
}

/// The user `token` authenticates as, given its Secret, as kube-apiserver's bootstrap
/// authenticator: `system:bootstrap:<id>` in `system:bootstrappers` and the Secret's extra
/// groups; refused when the Secret is of another type, deleting, expired, not for
/// authentication, or holds another secret.
pub fn authenticate(
    secret: &Secret,
    token: &BootstrapToken,
    now: OffsetDateTime,
) -> Result<UserInfo, TokenError> {
    if secret.type_.as_deref() != Some(SECRET_TYPE) {
        return Err(TokenError::SecretType);
    }
    if secret.metadata.deletion_timestamp.is_some() {
        return Err(TokenError::Deleting);
    }
    let stored = field(secret, "token-secret").unwrap_or_default();
    let id = field(secret, "token-id").unwrap_or_default();
    if id != token.id || !constant_time_eq(stored.as_bytes(), token.secret.as_bytes()) {
        return Err(TokenError::Mismatch);
    }
    if let Some(when) = expiration(secret)?.filter(|when| *when <= now) {
        return Err(TokenError::Expired(
            when.format(&Rfc3339).unwrap_or_default(),
        ));
    }
    if field(secret, "usage-bootstrap-authentication") != Some("true") {
        return Err(TokenError::NotForAuthentication);
    }
    let mut groups = vec![BOOTSTRAPPERS_GROUP.to_string()];
    groups.extend(extra_groups(secret)?);
    let name = format!("{BOOTSTRAP_USER_PREFIX}{}", token.id);
    Ok(user::authenticated(name, String::new(), groups))
}

/// [`authenticate`] at the current time.
pub fn authenticate_now(secret: &Secret, token: &BootstrapToken) -> Result<UserInfo, TokenError> {
    authenticate(secret, token, OffsetDateTime::now_utc())
}

/// `auth-extra-groups`: comma separated, each `system:bootstrappers:` and more.
fn extra_groups(secret: &Secret) -> Result<Vec<String>, TokenError> {
    let Some(list) = field(secret, "auth-extra-groups") else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|g| {
            let suffix = g.strip_prefix("system:bootstrappers:").unwrap_or_default();
            let ok = !suffix.is_empty()
                && suffix.len() <= 256
                && suffix.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-'
                });
            ok.then(|| g.to_string())
                .ok_or(TokenError::Malformed("auth-extra-groups"))
        })
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn secret_of(token: &BootstrapToken, options: &TokenOptions) -> Secret {
        serde_json::from_value(secret_for(token, options)).unwrap()
    }

    #[test]
    fn tokens_parse_print_and_keep_their_secret_out_of_debug() {
        let token: BootstrapToken = "abcdef.0123456789abcdef".parse().unwrap();
        assert_eq!(token.secret_name(), "bootstrap-token-abcdef");
        assert_eq!(token.expose(), "abcdef.0123456789abcdef");
        assert!(!format!("{token:?}").contains("0123456789abcdef"));
        for bad in [
            "abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde!",
        ] {
            assert_eq!(
                bad.parse::<BootstrapToken>(),
                Err(TokenError::Format),
                "{bad}"
            );
        }
        let fresh = BootstrapToken::generate();
        assert!(looks_like_bootstrap_token(&fresh.expose()));
        assert_ne!(fresh, BootstrapToken::generate());
    }

    #[test]
    fn join_tokens_carry_the_ca_hash() {
        let hash = format!("sha256:{}", "ab".repeat(32));
        let join = JoinToken {
            ca_hash: hash.clone(),
            token: "abcdef.0123456789abcdef".parse().unwrap(),
        };
        let text = join.expose();
        assert_eq!(
            text,
            format!("K10{}::abcdef.0123456789abcdef", "ab".repeat(32))
        );
        assert_eq!(text.parse::<JoinToken>().unwrap(), join);
        assert_eq!(
            "K10abc::abcdef.0123456789abcdef".parse::<JoinToken>(),
            Err(TokenError::JoinFormat)
        );
        assert_eq!(
            "abcdef.0123456789abcdef".parse::<JoinToken>(),
            Err(TokenError::JoinFormat)
        );
    }

    #[test]
    fn a_valid_token_is_a_bootstrapper_with_its_extra_groups() {
        let token = BootstrapToken::generate();
        let now = OffsetDateTime::now_utc();
        let options = TokenOptions {
            expires: Some(now + Duration::hours(1)),
            description: "for node-3".into(),
            extra_groups: vec![DEFAULT_NODE_GROUP.into()],
        };
        let secret = secret_of(&token, &options);
        let user = authenticate(&secret, &token, now).unwrap();
        assert_eq!(user.name, format!("system:bootstrap:{}", token.id));
        assert!(user.in_group(BOOTSTRAPPERS_GROUP) && user.in_group(DEFAULT_NODE_GROUP));
        assert!(user.in_group(user::AUTHENTICATED));
        assert!(!is_expired(&secret, now));
        assert!(is_expired(&secret, now + Duration::hours(2)));
        assert!(matches!(
            authenticate(&secret, &token, now + Duration::hours(2)),
            Err(TokenError::Expired(_))
        ));
    }

    #[test]
    fn wrong_secrets_types_usages_and_groups_are_refused() {
        let token = BootstrapToken::generate();
        let now = OffsetDateTime::now_utc();
        let secret = secret_of(&token, &TokenOptions::default());
        let other = BootstrapToken {
            id: token.id.clone(),
            secret: "0000000000000000".into(),
        };
        assert_eq!(
            authenticate(&secret, &other, now),
            Err(TokenError::Mismatch)
        );
        let mut opaque = secret.clone();
        opaque.type_ = Some("Opaque".into());
        assert_eq!(
            authenticate(&opaque, &token, now),
            Err(TokenError::SecretType)
        );
        let mut signing_only = secret.clone();
        signing_only
            .data
            .as_mut()
            .unwrap()
            .remove("usage-bootstrap-authentication");
        assert_eq!(
            authenticate(&signing_only, &token, now),
            Err(TokenError::NotForAuthentication)
        );
        let bad_groups = secret_of(
            &token,
            &TokenOptions {
                extra_groups: vec!["system:masters".into()],
                ..Default::default()
            },
        );
        assert_eq!(
            authenticate(&bad_groups, &token, now),
            Err(TokenError::Malformed("auth-extra-groups"))
        );
    }
}
