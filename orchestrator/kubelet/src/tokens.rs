//! Service account tokens for `serviceAccountToken` projections, as Kubernetes' kubelet
//! token manager: requested through the TokenRequest API (`serviceaccounts/NAME/token`)
//! bound to the pod, cached per (namespace, account, audience, lifetime, pod) and requested
//! again once 80% of their lifetime has passed (or 24 h), so the files in the pod's volume
//! are renewed before they expire. Tokens are never logged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection};
use kube::api::{Api, PostParams};
use kube::Client;

use crate::volumes::TokenSource;

/// Kubernetes' default `expirationSeconds` of a projection.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// A token is renewed after this much of its lifetime.
const RENEW_FRACTION: f64 = 0.8;
/// …or after this long, whichever comes first.
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// What a token is requested for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    namespace: String,
    account: String,
    audience: Option<String>,
    expiration_seconds: i64,
    pod_uid: String,
}

struct Cached {
    token: String,
    renew_at: Instant,
    expires_at: Instant,
}

/// The tokens of one pod's projections, by (audience, lifetime).
#[derive(Default)]
pub struct PodTokens(HashMap<(Option<String>, i64), Result<String, String>>);

fn projection_key(p: &ServiceAccountTokenProjection) -> (Option<String>, i64) {
    let audience = p.audience.clone().filter(|a| !a.is_empty());
    (
        audience,
        p.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
    )
}

impl TokenSource for PodTokens {
    fn token(&self, p: &ServiceAccountTokenProjection) -> Result<String, String> {
        match self.0.get(&projection_key(p)) {
            Some(result) => result.clone(),
            None => Err(format!(
                "serviceAccountToken projection {:?}: no token requested",
                p.path
            )),
        }
    }
}

/// Requests and caches tokens; shared by all pod workers.
pub struct TokenManager {
    client: Client,
    cache: Mutex<HashMap<TokenKey, Cached>>,
}

/// Every serviceAccountToken projection of the pod's volumes.
fn projections(pod: &Pod) -> Vec<&ServiceAccountTokenProjection> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    let sources = volumes.flat_map(|v| v.projected.iter().flat_map(|p| p.sources.iter().flatten()));
    sources
        .filter_map(|s| s.service_account_token.as_ref())
        .collect()
}

impl TokenManager {
    pub fn new(client: Client) -> Self {
        TokenManager {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The tokens `pod`'s projections need: cached ones while fresh, new ones otherwise (a
    /// failed request keeps a cached token that has not expired).
    pub async fn for_pod(&self, pod: &Pod) -> PodTokens {
        let mut out = PodTokens::default();
        for p in projections(pod) {
            let (audience, expiration_seconds) = projection_key(p);
            let key = TokenKey {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                account: account_of(pod),
                audience: audience.clone(),
                expiration_seconds,
                pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
            };
            let token = self.token(&key, pod).await;
            out.0.insert((audience, expiration_seconds), token);
        }
        out
    }

    async fn token(&self, key: &TokenKey, pod: &Pod) -> Result<String, String> {
        let now = Instant::now();
        let cached = self.cached(key, now);
        if let Some((token, false)) = &cached {
            return Ok(token.clone());
        }
        match self.request(key, pod).await {
            Ok((token, lifetime)) => {
                let renew_after = lifetime.mul_f64(RENEW_FRACTION).min(MAX_AGE);
                let entry = Cached {
                    token: token.clone(),
                    renew_at: now + renew_after,
                    expires_at: now + lifetime,
                };
                if let Ok(mut cache) = self.cache.lock() {
                    cache.retain(|_, c| c.expires_at > now);
                    cache.insert(key.clone(), entry);
                }
                Ok(token)
            }
            Err(e) => match cached {
                Some((token, _)) => {
                    tracing::warn!(namespace = %key.namespace, account = %key.account, error = %e, "token renewal failed; the current one is kept");
                    Ok(token)
                }
                None => Err(e),
            },
        }
    }

    /// A cached unexpired token and whether it is due for renewal.
    fn cached(&self, key: &TokenKey, now: Instant) -> Option<(String, bool)> {
        let cache = self.cache.lock().ok()?;
        let c = cache.get(key).filter(|c| c.expires_at > now)?;
        Some((c.token.clone(), now >= c.renew_at))
    }

    /// A new token and its lifetime, from the API.
    async fn request(&self, key: &TokenKey, pod: &Pod) -> Result<(String, Duration), String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &key.namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: key.audience.iter().cloned().collect(),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
                expiration_seconds: Some(key.expiration_seconds),
            },
            ..Default::default()
        };
        let answer = api
            .create_token_request(&key.account, &PostParams::default(), &request)
            .await
            .map_err(|e| {
                format!(
                    "cannot get a token of service account {:?}: {e}",
                    key.account
                )
            })?;
        let status = answer
            .status
            .ok_or("the TokenRequest answer has no status")?;
        let until = status.expiration_timestamp.0;
        let left = until
            .duration_since(k8s_openapi::jiff::Timestamp::now())
            .as_secs()
            .max(0);
        Ok((status.token, Duration::from_secs(left as u64)))
    }
}

fn account_of(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    let name = spec
        .and_then(|s| s.service_account_name.clone())
        .filter(|n| !n.is_empty());
    name.unwrap_or_else(|| "default".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_with(projections: &[(Option<&str>, Option<i64>)]) -> Pod {
        let sources: Vec<serde_json::Value> = projections
            .iter()
            .map(|(aud, exp)| {
                serde_json::json!({"serviceAccountToken": {"path": "token", "audience": aud, "expirationSeconds": exp}})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"serviceAccountName": "robot", "containers": [],
                     "volumes": [{"name": "v", "projected": {"sources": sources}}]}
        }))
        .unwrap()
    }

    #[test]
    fn projections_are_found_and_keyed_with_kubernetes_defaults() {
        let pod = pod_with(&[(None, None), (Some("vault"), Some(600)), (Some(""), None)]);
        let found = projections(&pod);
        assert_eq!(found.len(), 3);
        assert_eq!(projection_key(found[0]), (None, 3600));
        assert_eq!(projection_key(found[1]), (Some("vault".into()), 600));
        // an empty audience is the API server's own, as no audience
        assert_eq!(projection_key(found[2]), (None, 3600));
        assert_eq!(account_of(&pod), "robot");
    }

    #[test]
    fn a_missing_token_names_the_projection_path() {
        let pod = pod_with(&[(None, None)]);
        let err = PodTokens::default()
            .token(projections(&pod)[0])
            .unwrap_err();
        assert!(err.contains("\"token\""), "{err}");
        let mut tokens = PodTokens::default();
        tokens.0.insert((None, 3600), Ok("t".into()));
        assert_eq!(tokens.token(projections(&pod)[0]).unwrap(), "t");
    }
}
