//! ServiceAccount tokens as Kubernetes issues them: JWTs signed with the cluster's
//! service-account key (ES256 here), either bound (TokenRequest: issuer, audiences, expiry,
//! and the pod, Secret or Node they are bound to under the `kubernetes.io` claim) or legacy
//! (the `kubernetes/serviceaccount` issuer, no expiry, tied to a
//! `kubernetes.io/service-account-token` Secret). This module signs and checks the JWT;
//! whether the bound objects still exist is the API server's question.

use std::collections::BTreeMap;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rcgen::PublicKeyData;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::user::{self, UserInfo, SERVICE_ACCOUNTS_GROUP, SERVICE_ACCOUNT_PREFIX};

/// The issuer of Secret-based (legacy) tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";
/// kube-apiserver's usual `--service-account-issuer` (kubeadm's default).
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The `extra` keys of a bound token's user, as Kubernetes sets them.
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
pub const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
pub const EXTRA_NODE_UID: &str = "authentication.kubernetes.io/node-uid";
pub const EXTRA_CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the service-account key cannot be used: {0}")]
    Key(String),
    #[error("cannot sign the token: {0}")]
    Sign(String),
    /// Why a presented token is not accepted (never the token itself).
    #[error("invalid service account token: {0}")]
    Invalid(String),
}

/// An object a token names: its name and uid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

/// Whom a token speaks for and what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenSubject {
    pub namespace: String,
    pub service_account: ObjectRef,
    pub pod: Option<ObjectRef>,
    pub secret: Option<ObjectRef>,
    pub node: Option<ObjectRef>,
}

impl TokenSubject {
    /// `system:serviceaccount:<ns>:<name>`.
    pub fn username(&self) -> String {
        format!(
            "{SERVICE_ACCOUNT_PREFIX}{}:{}",
            self.namespace, self.service_account.name
        )
    }
}

/// A token accepted by [`ServiceAccountKey::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub subject: TokenSubject,
    /// The JWT id of a bound token.
    pub credential_id: Option<String>,
    /// A Secret-based token (its Secret must still hold it).
    pub legacy: bool,
}

impl VerifiedToken {
    /// The user the token authenticates, with Kubernetes' groups and extra.
    pub fn user(&self) -> UserInfo {
        let s = &self.subject;
        let groups = vec![
            SERVICE_ACCOUNTS_GROUP.to_string(),
            format!("{SERVICE_ACCOUNTS_GROUP}:{}", s.namespace),
        ];
        let mut info = user::authenticated(s.username(), s.service_account.uid.clone(), groups);
        let mut extra = BTreeMap::new();
        if let Some(pod) = &s.pod {
            extra.insert(EXTRA_POD_NAME.to_string(), vec![pod.name.clone()]);
            extra.insert(EXTRA_POD_UID.to_string(), vec![pod.uid.clone()]);
        }
        if let Some(node) = &s.node {
            extra.insert(EXTRA_NODE_NAME.to_string(), vec![node.name.clone()]);
            extra.insert(EXTRA_NODE_UID.to_string(), vec![node.uid.clone()]);
        }
        if let Some(jti) = &self.credential_id {
            extra.insert(EXTRA_CREDENTIAL_ID.to_string(), vec![format!("JTI={jti}")]);
        }
        info.extra = extra;
        info
    }
}

/// A freshly issued bound token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// The `kubernetes.io` claim of a bound token.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct KubernetesClaim {
    namespace: String,
    serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<ObjectRef>,
}

#[derive(Debug, Serialize, Deserialize)]
struct BoundClaims {
    iss: String,
    sub: String,
    aud: Vec<String>,
    exp: i64,
    iat: i64,
    nbf: i64,
    jti: String,
    #[serde(rename = "kubernetes.io")]
    kubernetes: KubernetesClaim,
}

#[derive(Debug, Serialize, Deserialize)]
struct LegacyClaims {
    iss: String,
    sub: String,
    #[serde(rename = "kubernetes.io/serviceaccount/namespace")]
    namespace: String,
    #[serde(rename = "kubernetes.io/serviceaccount/secret.name")]
    secret_name: String,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.name")]
    service_account_name: String,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.uid")]
    service_account_uid: String,
}

/// Just the issuer, to choose how to check a token.
#[derive(Deserialize)]
struct IssuerOnly {
    #[serde(default)]
    iss: String,
}

/// The cluster's service-account signing key.
pub struct ServiceAccountKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    key_id: String,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// The key from its PKCS#8 PEM (`pki/sa.key`, a P-256 key).
    pub fn from_pem(pem: &str) -> Result<Self, TokenError> {
        let pair = rcgen::KeyPair::from_pem(pem).map_err(|e| TokenError::Key(e.to_string()))?;
        if pair.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(TokenError::Key("not a P-256 ECDSA key".into()));
        }
        let spki = pair.subject_public_key_info();
        let key_id =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&spki));
        Ok(ServiceAccountKey {
            encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
            decoding: DecodingKey::from_ec_der(pair.public_key_raw()),
            key_id,
        })
    }

    /// The key id put in every token's header (the SHA-256 of the public key, as
    /// Kubernetes derives it).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    fn header(&self) -> Header {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        header
    }

    /// A bound token for `subject`, valid for `audiences` from `now` (unix seconds) for
    /// `lifetime` seconds.
    pub fn issue(
        &self,
        issuer: &str,
        audiences: &[String],
        subject: &TokenSubject,
        now: i64,
        lifetime: i64,
    ) -> Result<IssuedToken, TokenError> {
        let claims = BoundClaims {
            iss: issuer.to_string(),
            sub: subject.username(),
            aud: audiences.to_vec(),
            exp: now + lifetime,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes: KubernetesClaim {
                namespace: subject.namespace.clone(),
                serviceaccount: subject.service_account.clone(),
                pod: subject.pod.clone(),
                secret: subject.secret.clone(),
                node: subject.node.clone(),
            },
        };
        let token = jsonwebtoken::encode(&self.header(), &claims, &self.encoding)
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok(IssuedToken {
            token,
            expires_at: claims.exp,
        })
    }

    /// A legacy token for the Secret `subject.secret` (no expiry, no audience).
    pub fn issue_legacy(&self, subject: &TokenSubject) -> Result<String, TokenError> {
        let secret = subject
            .secret
            .as_ref()
            .ok_or_else(|| TokenError::Sign("a legacy token needs its Secret".into()))?;
        let claims = LegacyClaims {
            iss: LEGACY_ISSUER.to_string(),
            sub: subject.username(),
            namespace: subject.namespace.clone(),
            secret_name: secret.name.clone(),
            service_account_name: subject.service_account.name.clone(),
            service_account_uid: subject.service_account.uid.clone(),
        };
        jsonwebtoken::encode(&self.header(), &claims, &self.encoding)
            .map_err(|e| TokenError::Sign(e.to_string()))
    }

    /// Whether `token` was signed by this key for `issuer` and one of `audiences`, is within
    /// its validity at `now`, or is a legacy token of this key.
    pub fn verify(
        &self,
        token: &str,
        issuer: &str,
        audiences: &[String],
        now: i64,
    ) -> Result<VerifiedToken, TokenError> {
        let unverified = unverified_issuer(token)?;
        if unverified == LEGACY_ISSUER {
            return self.verify_legacy(token);
        }
        if unverified != issuer {
            return Err(TokenError::Invalid(
                "the issuer is not this cluster's".into(),
            ));
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[issuer]);
        validation.validate_aud = false;
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let data = jsonwebtoken::decode::<BoundClaims>(token, &self.decoding, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let c = data.claims;
        if now >= c.exp {
            return Err(TokenError::Invalid("the token has expired".into()));
        }
        if now < c.nbf {
            return Err(TokenError::Invalid("the token is not valid yet".into()));
        }
        if !c.aud.iter().any(|a| audiences.contains(a)) {
            return Err(TokenError::Invalid(
                "the token's audiences are not accepted here".into(),
            ));
        }
        let k = c.kubernetes;
        let subject = TokenSubject {
            namespace: k.namespace,
            service_account: k.serviceaccount,
            pod: k.pod,
            secret: k.secret,
            node: k.node,
        };
        check_subject(&c.sub, &subject)?;
        Ok(VerifiedToken {
            subject,
            credential_id: Some(c.jti).filter(|j| !j.is_empty()),
            legacy: false,
        })
    }

    fn verify_legacy(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[LEGACY_ISSUER]);
        validation.validate_aud = false;
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["iss", "sub"]);
        let data = jsonwebtoken::decode::<LegacyClaims>(token, &self.decoding, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let c = data.claims;
        let subject = TokenSubject {
            namespace: c.namespace,
            service_account: ObjectRef {
                name: c.service_account_name,
                uid: c.service_account_uid,
            },
            secret: Some(ObjectRef {
                name: c.secret_name,
                uid: String::new(),
            }),
            ..Default::default()
        };
        check_subject(&c.sub, &subject)?;
        Ok(VerifiedToken {
            subject,
            credential_id: None,
            legacy: true,
        })
    }
}

/// Whether `token` looks like a JWT (three dot-separated parts), so other bearer tokens
/// are not parsed as one.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("ey")
}

/// The `iss` claim before the signature is checked (only to pick the validation).
fn unverified_issuer(token: &str) -> Result<String, TokenError> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| TokenError::Invalid("not a JWT".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| TokenError::Invalid("the payload is not base64url".into()))?;
    let claims: IssuerOnly = serde_json::from_slice(&bytes)
        .map_err(|_| TokenError::Invalid("the payload is not a JSON object".into()))?;
    Ok(claims.iss)
}

fn check_subject(sub: &str, subject: &TokenSubject) -> Result<(), TokenError> {
    if subject.namespace.is_empty() || subject.service_account.name.is_empty() {
        return Err(TokenError::Invalid("it names no service account".into()));
    }
    if sub != subject.username() {
        return Err(TokenError::Invalid(
            "its subject does not match its service account".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_key() -> ServiceAccountKey {
        let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
        ServiceAccountKey::from_pem(&pem).unwrap()
    }

    fn subject() -> TokenSubject {
        TokenSubject {
            namespace: "apps".into(),
            service_account: ObjectRef {
                name: "web".into(),
                uid: "sa-uid".into(),
            },
            pod: Some(ObjectRef {
                name: "web-1".into(),
                uid: "pod-uid".into(),
            }),
            node: Some(ObjectRef {
                name: "node-1".into(),
                uid: "node-uid".into(),
            }),
            secret: None,
        }
    }

    #[test]
    fn a_bound_token_round_trips_with_its_user() {
        let key = new_key();
        let aud = vec![DEFAULT_ISSUER.to_string()];
        let issued = key
            .issue(DEFAULT_ISSUER, &aud, &subject(), 1_000, 3600)
            .unwrap();
        assert_eq!(issued.expires_at, 4_600);
        assert!(looks_like_jwt(&issued.token));
        let verified = key
            .verify(&issued.token, DEFAULT_ISSUER, &aud, 2_000)
            .unwrap();
        assert_eq!(verified.subject, subject());
        let user = verified.user();
        assert_eq!(user.name, "system:serviceaccount:apps:web");
        assert_eq!(user.uid, "sa-uid");
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:apps",
                "system:authenticated"
            ]
        );
        assert_eq!(user.extra[EXTRA_POD_NAME], ["web-1"]);
        assert_eq!(user.extra[EXTRA_NODE_NAME], ["node-1"]);
        assert!(user.extra[EXTRA_CREDENTIAL_ID][0].starts_with("JTI="));
    }

    #[test]
    fn expired_wrong_audience_wrong_issuer_or_key_are_refused() {
        let key = new_key();
        let aud = vec![DEFAULT_ISSUER.to_string()];
        let issued = key
            .issue(DEFAULT_ISSUER, &aud, &subject(), 1_000, 600)
            .unwrap();
        let err = |r: Result<VerifiedToken, TokenError>| r.unwrap_err().to_string();
        assert!(err(key.verify(&issued.token, DEFAULT_ISSUER, &aud, 1_600)).contains("expired"));
        let other_aud = vec!["vault".to_string()];
        assert!(
            err(key.verify(&issued.token, DEFAULT_ISSUER, &other_aud, 1_100)).contains("audiences")
        );
        assert!(err(key.verify(&issued.token, "https://other", &aud, 1_100)).contains("issuer"));
        assert!(
            err(new_key().verify(&issued.token, DEFAULT_ISSUER, &aud, 1_100)).contains("Invalid")
        );
        let mut tampered = issued.token.clone();
        tampered.pop();
        assert!(key.verify(&tampered, DEFAULT_ISSUER, &aud, 1_100).is_err());
        assert!(key
            .verify("not.a.jwt", DEFAULT_ISSUER, &aud, 1_100)
            .is_err());
        assert!(key.verify("", DEFAULT_ISSUER, &aud, 1_100).is_err());
    }

    #[test]
    fn a_legacy_token_names_its_secret_and_never_expires() {
        let key = new_key();
        let mut s = subject();
        s.pod = None;
        s.node = None;
        s.secret = Some(ObjectRef {
            name: "web-token".into(),
            uid: String::new(),
        });
        let token = key.issue_legacy(&s).unwrap();
        let verified = key
            .verify(&token, DEFAULT_ISSUER, &[], i64::MAX / 2)
            .unwrap();
        assert!(verified.legacy);
        assert_eq!(verified.subject.secret.unwrap().name, "web-token");
        assert!(key.issue_legacy(&subject()).is_err(), "no secret named");
    }

    #[test]
    fn the_key_id_is_stable_and_a_wrong_key_is_refused() {
        let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let a = ServiceAccountKey::from_pem(&pem).unwrap();
        let b = ServiceAccountKey::from_pem(&pem).unwrap();
        assert_eq!(a.key_id(), b.key_id());
        assert!(ServiceAccountKey::from_pem("not a key").is_err());
    }
}
