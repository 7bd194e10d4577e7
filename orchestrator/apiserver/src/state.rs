//! Shared server state: the store, one watch cache per resource, and object (de)coding.

use std::collections::HashMap;
use std::sync::Arc;

use bpfk_apimachinery::kinds::Allocates;
use bpfk_apimachinery::registry::{self, ResourceInfo};
use bpfk_store::watch_cache::WatchCache;
use bpfk_store::{KeyValue, Store};
use serde_json::Value;

use crate::error::{ApiError, Result};

/// Events kept per resource for watches that resume from a recent resourceVersion.
const WATCH_HISTORY: usize = 10_000;

/// `--event-ttl`'s default (kube-apiserver's: one hour).
pub const DEFAULT_EVENT_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// How long a request served from a watch cache waits for the cache's first load.
pub const CACHE_READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

pub struct AppState {
    pub store: Arc<dyn Store>,
    caches: HashMap<&'static str, Arc<WatchCache>>,
    /// Service writes (which claim and release ClusterIP/NodePort keys) hold this shared;
    /// the allocation repair holds it exclusively, so it never sees a claim whose Service is
    /// not stored yet.
    pub allocations: tokio::sync::RwLock<()>,
    /// Watch events decoded and encoded once for all their watches.
    pub renders: crate::rest::rendered::RenderMemo,
    /// Client of the kubelets' endpoints (pods/log).
    pub kubelets: crate::rest::pod_log::KubeletClient,
    /// What the admission of writes was configured with.
    pub admission: crate::admission::AdmissionSettings,
    /// `/metrics`: requests, watches, etcd latency, watch cache sizes.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// How long Events live after their last write (`--event-ttl`).
    pub event_ttl: std::time::Duration,
    /// Who a request comes from.
    pub authn: crate::authn::Authenticator,
    /// What a request may do.
    pub authz: crate::authz::Authorizer,
    /// The system namespaces and the bootstrap RBAC policy exist (`/readyz` waits for it).
    pub bootstrapped: std::sync::atomic::AtomicBool,
}

impl AppState {
    /// Build the state and start one watch cache per served resource, with the default
    /// admission settings.
    pub fn new(store: Arc<dyn Store>) -> Arc<AppState> {
        Self::with_admission(store, Default::default())
    }

    /// Build the state with `admission` settings and start one watch cache per resource.
    pub fn with_admission(
        store: Arc<dyn Store>,
        admission: crate::admission::AdmissionSettings,
    ) -> Arc<AppState> {
        Self::with_settings(store, admission, DEFAULT_EVENT_TTL)
    }

    /// Build the state with `admission` settings and Events that live `event_ttl`, and start
    /// one watch cache per stored resource.
    pub fn with_settings(
        store: Arc<dyn Store>,
        admission: crate::admission::AdmissionSettings,
        event_ttl: std::time::Duration,
    ) -> Arc<AppState> {
        Self::with_authenticator(
            store,
            admission,
            event_ttl,
            Default::default(),
            Default::default(),
        )
    }

    /// [`with_settings`](Self::with_settings), authenticating requests with `authn` and
    /// reaching kubelets with `kubelets`.
    pub fn with_authenticator(
        store: Arc<dyn Store>,
        admission: crate::admission::AdmissionSettings,
        event_ttl: std::time::Duration,
        authn: crate::authn::Authenticator,
        kubelets: crate::rest::pod_log::KubeletClient,
    ) -> Arc<AppState> {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let store: Arc<dyn Store> =
            Arc::new(crate::metrics::MeteredStore::new(store, metrics.clone()));
        let caches = registry::resources()
            .iter()
            .filter(|r| r.supports("watch") && !r.strategy.stored_elsewhere())
            .map(|r| {
                (
                    r.plural,
                    WatchCache::start(store.clone(), prefix(r, None), WATCH_HISTORY),
                )
            })
            .collect();
        Arc::new(AppState {
            store,
            caches,
            allocations: tokio::sync::RwLock::new(()),
            renders: Default::default(),
            kubelets,
            admission,
            metrics,
            event_ttl,
            authn,
            authz: Default::default(),
            bootstrapped: Default::default(),
        })
    }

    /// How long objects of `res` live after a write (`None`: until deleted).
    pub fn ttl_of(&self, res: &ResourceInfo) -> Option<std::time::Duration> {
        res.strategy.expires().then_some(self.event_ttl)
    }

    /// Each watch cache's counters, by resource.
    pub fn cache_stats(&self) -> Vec<(&'static str, bpfk_store::watch_cache::CacheStats)> {
        let mut stats: Vec<_> = self.caches.iter().map(|(r, c)| (*r, c.stats())).collect();
        stats.sort_by_key(|(r, _)| *r);
        stats
    }

    pub fn cache(&self, res: &ResourceInfo) -> Result<&Arc<WatchCache>> {
        self.caches
            .get(res.plural)
            .ok_or_else(|| ApiError::MethodNotAllowed {
                message: format!("{} cannot be watched", res.plural),
            })
    }

    /// The watch cache of `res` once it has loaded; 503 when it has not loaded within
    /// [`CACHE_READY_TIMEOUT`] (etcd unreachable since startup) instead of hanging the request.
    pub async fn ready_cache(&self, res: &ResourceInfo) -> Result<&Arc<WatchCache>> {
        let cache = self.cache(res)?;
        if !cache.is_ready()
            && tokio::time::timeout(CACHE_READY_TIMEOUT, cache.wait_ready())
                .await
                .is_err()
        {
            return Err(ApiError::Unavailable {
                message: format!(
                    "the watch cache of {} is not ready yet (storage unreachable)",
                    res.plural
                ),
            });
        }
        Ok(cache)
    }

    /// For a write of `res`: a shared hold on the allocation keys when `res` allocates any.
    pub async fn allocation_guard(
        &self,
        res: &ResourceInfo,
    ) -> Option<tokio::sync::RwLockReadGuard<'_, ()>> {
        if res.strategy.allocation() != Allocates::Nothing {
            Some(self.allocations.read().await)
        } else {
            None
        }
    }

    /// Wait until every watch cache has loaded.
    pub async fn wait_caches_ready(&self) {
        for cache in self.caches.values() {
            cache.wait_ready().await;
        }
    }
}

/// `/registry/<resource>/` or `/registry/<resource>/<namespace>/`.
pub fn prefix(res: &ResourceInfo, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if res.namespaced => format!("/registry/{}/{}/", res.plural, ns),
        _ => format!("/registry/{}/", res.plural),
    }
}

/// `/registry/<resource>/<namespace>/<name>` (cluster-scoped: `/registry/<resource>/<name>`).
pub fn key(res: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    format!("{}{}", prefix(res, namespace), name)
}

/// Decode a stored object of `res` (in `res`'s version) and stamp its resourceVersion from
/// the store revision.
pub fn decode(res: &ResourceInfo, kv: &KeyValue) -> Result<Value> {
    decode_at(res, &kv.value, kv.mod_revision)
}

pub fn decode_at(res: &ResourceInfo, bytes: &[u8], revision: i64) -> Result<Value> {
    let stored: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::internal(format!("stored object is not valid JSON: {e}")))?;
    let mut obj = res.strategy.served_form(stored);
    crate::object::set_meta(
        &mut obj,
        "resourceVersion",
        Value::String(revision.to_string()),
    );
    Ok(obj)
}

/// Encode an object of `res` for storage, in the version it is stored in (the
/// resourceVersion is never stored: it is the revision).
pub fn encode(res: &ResourceInfo, obj: &Value) -> Result<Vec<u8>> {
    let mut obj = res.strategy.stored_form(obj.clone());
    crate::object::remove_meta(&mut obj, "resourceVersion");
    serde_json::to_vec(&obj).map_err(|e| ApiError::internal(format!("cannot encode object: {e}")))
}
