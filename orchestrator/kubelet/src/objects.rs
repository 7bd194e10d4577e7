//! The ConfigMaps and Secrets pods refer to (env, envFrom, volumes, projected sources,
//! imagePullSecrets): which ones a pod needs ([`references`]), read from the API on demand
//! through a short per-object cache shared by all pod workers ([`ObjectCache`], like
//! Kubernetes' TTL-based manager), and handed to the pure env and volume code as one
//! [`Objects`] snapshot. Objects are never logged (a Secret's values must not leak).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::Client;
use serde::de::DeserializeOwned;

pub use bpfk_apimachinery::pod_references::{references, References};

/// A pod's ConfigMaps and Secrets as read for one sync; a name mapped to None (or not
/// mapped) does not exist.
#[derive(Clone, Default)]
pub struct Objects {
    pub config_maps: HashMap<String, Option<Arc<ConfigMap>>>,
    pub secrets: HashMap<String, Option<Arc<Secret>>>,
}

impl Objects {
    pub fn config_map(&self, name: &str) -> Option<&ConfigMap> {
        self.config_maps.get(name).and_then(|o| o.as_deref())
    }

    pub fn secret(&self, name: &str) -> Option<&Secret> {
        self.secrets.get(name).and_then(|o| o.as_deref())
    }
}

impl std::fmt::Debug for Objects {
    /// Names only: a Secret's data never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects")
            .field("config_maps", &self.config_maps.keys().collect::<Vec<_>>())
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A read that failed for another reason than "not found" (the message names the object,
/// never its contents).
#[derive(Debug, thiserror::Error)]
#[error("cannot get {kind} {namespace}/{name}: {source}")]
pub struct FetchError {
    kind: &'static str,
    namespace: String,
    name: String,
    source: kube::Error,
}

type Entries<K> = Mutex<HashMap<(String, String), (Instant, Option<Arc<K>>)>>;

/// Objects of one kind by (namespace, name), each reused for `ttl` after it was read.
struct TtlCache<K> {
    entries: Entries<K>,
}

impl<K> TtlCache<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    fn new() -> TtlCache<K> {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, key: &(String, String), ttl: Duration) -> Option<Option<Arc<K>>> {
        let entries = self.entries.lock().ok()?;
        let (at, value) = entries.get(key)?;
        (at.elapsed() < ttl).then(|| value.clone())
    }

    async fn get(
        &self,
        client: &Client,
        ttl: Duration,
        namespace: &str,
        name: &str,
        kind: &'static str,
    ) -> Result<Option<Arc<K>>, FetchError> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(hit) = self.cached(&key, ttl) {
            return Ok(hit);
        }
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        let value = api
            .get_opt(name)
            .await
            .map_err(|source| FetchError {
                kind,
                namespace: namespace.into(),
                name: name.into(),
                source,
            })?
            .map(Arc::new);
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            entries.insert(key, (Instant::now(), value.clone()));
        }
        Ok(value)
    }
}

/// ConfigMaps and Secrets read from the API, each kept for `ttl` (shared by all workers).
pub struct ObjectCache {
    client: Client,
    ttl: Duration,
    config_maps: TtlCache<ConfigMap>,
    secrets: TtlCache<Secret>,
}

impl ObjectCache {
    pub fn new(client: Client, ttl: Duration) -> ObjectCache {
        ObjectCache {
            client,
            ttl,
            config_maps: TtlCache::new(),
            secrets: TtlCache::new(),
        }
    }

    /// The objects `refs` names, in `namespace`.
    pub async fn fetch(&self, namespace: &str, refs: &References) -> Result<Objects, FetchError> {
        let mut out = Objects::default();
        for name in &refs.config_maps {
            let cm = self
                .config_maps
                .get(&self.client, self.ttl, namespace, name, "configmap")
                .await?;
            out.config_maps.insert(name.clone(), cm);
        }
        for name in &refs.secrets {
            let secret = self
                .secrets
                .get(&self.client, self.ttl, namespace, name, "secret")
                .await?;
            out.secrets.insert(name.clone(), secret);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_names_not_data() {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s"}, "data": {"password": "aHVudGVyMg=="}
        }))
        .unwrap();
        let objects = Objects {
            secrets: HashMap::from([("s".to_string(), Some(Arc::new(secret)))]),
            ..Default::default()
        };
        let shown = format!("{objects:?}");
        assert!(shown.contains("\"s\"") && !shown.contains("hunter2") && !shown.contains("aHVud"));
    }
}
