//! `/metrics` in the Prometheus text format, under kube-apiserver's metric names: requests by
//! verb, resource and code with their latency, requests in flight, open watches, etcd request
//! latency by operation and resource, and the watch caches' sizes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bpfk_store::{
    EventStream, KeyValue, ListOptions, ListResult, PrefixSummary, Result as StoreResult, Revision,
    Store, WatchItemStream,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::path::{self, Target};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a request addressed, as kube-apiserver labels it.
#[derive(Debug, Clone, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`, `APPLY`, `DELETE`.
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    /// `resource`, `namespace`, `cluster` (or empty for non-resource paths).
    pub scope: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodedLabels {
    #[prometheus(flatten)]
    request: RequestLabels,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    request_kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EtcdLabels {
    operation: String,
    /// The resource (kube-apiserver's label name).
    r#type: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to ~65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// The API server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<CodedLabels, Counter>,
    durations: HistogramFamily<RequestLabels>,
    inflight: Family<KindLabels, Gauge>,
    watches: Family<ResourceLabels, Gauge>,
    etcd: HistogramFamily<EtcdLabels>,
    stored_objects: Family<ResourceLabels, Gauge>,
    buffered_events: Family<ResourceLabels, Gauge>,
    cache_watchers: Family<ResourceLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            durations: Family::new_with_constructor(latency_histogram),
            inflight: Family::default(),
            watches: Family::default(),
            etcd: Family::new_with_constructor(latency_histogram),
            stored_objects: Family::default(),
            buffered_events: Family::default(),
            cache_watchers: Family::default(),
        };
        m.register_all();
        m
    }

    fn register_all(&mut self) {
        let r = &mut self.registry;
        r.register("apiserver_request", "Counter of apiserver requests broken out for each verb, group, version, resource, scope, subresource and HTTP response code.", self.requests.clone());
        r.register("apiserver_request_duration_seconds", "Response latency distribution in seconds for each verb, group, version, resource, subresource and scope (watches: until the response starts).", self.durations.clone());
        r.register("apiserver_current_inflight_requests", "Maximal number of currently used inflight request limit of this apiserver per request kind.", self.inflight.clone());
        r.register(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests (watches) broken out by resource.",
            self.watches.clone(),
        );
        r.register(
            "etcd_request_duration_seconds",
            "Etcd request latency in seconds for each operation and object type.",
            self.etcd.clone(),
        );
        r.register(
            "apiserver_storage_objects",
            "Number of stored objects at the time of last check split by kind.",
            self.stored_objects.clone(),
        );
        r.register(
            "apiserver_watch_cache_events",
            "Events the watch cache holds for watches that resume, by resource.",
            self.buffered_events.clone(),
        );
        r.register(
            "apiserver_registered_watchers",
            "Number of currently registered watchers of the watch cache, by resource.",
            self.cache_watchers.clone(),
        );
    }

    /// A request starts: counted in flight until the guard drops.
    pub fn start(&self, mutating: bool) -> InflightGuard {
        let kind = if mutating { "mutating" } else { "readOnly" };
        let gauge = self
            .inflight
            .get_or_create(&KindLabels {
                request_kind: kind.into(),
            })
            .clone();
        gauge.inc();
        InflightGuard(gauge)
    }

    /// A request was answered with `code` after `elapsed`.
    pub fn observe(&self, labels: &RequestLabels, code: u16, elapsed: Duration) {
        let coded = CodedLabels {
            request: labels.clone(),
            code: code.to_string(),
        };
        self.requests.get_or_create(&coded).inc();
        self.durations
            .get_or_create(labels)
            .observe(elapsed.as_secs_f64());
    }

    /// A watch of `resource` is open until the guard drops.
    pub fn watch_opened(&self, resource: &str) -> InflightGuard {
        let gauge = self
            .watches
            .get_or_create(&ResourceLabels {
                resource: resource.into(),
            })
            .clone();
        gauge.inc();
        InflightGuard(gauge)
    }

    fn observe_etcd(&self, operation: &str, key: &str, started: Instant) {
        let labels = EtcdLabels {
            operation: operation.into(),
            r#type: key_resource(key).into(),
        };
        self.etcd
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }

    /// The exposition text, with the watch caches' sizes read now.
    pub fn render(&self, state: &crate::AppState) -> String {
        for (resource, stats) in state.cache_stats() {
            let labels = ResourceLabels {
                resource: resource.into(),
            };
            let set = |family: &Family<ResourceLabels, Gauge>, value: usize| {
                family
                    .get_or_create(&labels)
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            };
            set(&self.stored_objects, stats.objects);
            set(&self.buffered_events, stats.buffered_events);
            set(&self.cache_watchers, stats.live_watchers);
        }
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        with_components(text, &bpfk_common::metrics::encode())
    }
}

/// `own` (ending in `# EOF`) with the in-process components' families (the scheduler's and
/// controllers') before that line.
fn with_components(own: String, components: &str) -> String {
    match own.strip_suffix("# EOF\n") {
        Some(body) => format!("{body}{components}# EOF\n"),
        None => format!("{own}{components}"),
    }
}

/// Decrements its gauge when dropped.
pub struct InflightGuard(Gauge);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The labels of a request to `path` with `method` (`watch`: the `watch` query parameter).
pub fn request_labels(method: &http::Method, path: &str, watch: bool) -> RequestLabels {
    let Some(Target::Resource(rp)) = path::parse(path) else {
        return RequestLabels {
            verb: method.as_str().into(),
            ..Default::default()
        };
    };
    let verb = match *method {
        http::Method::GET if watch || rp.watch => "WATCH",
        http::Method::GET if rp.name.is_none() => "LIST",
        ref other => other.as_str(),
    };
    let scope = match (&rp.name, &rp.namespace) {
        (Some(_), _) => "resource",
        (None, Some(_)) => "namespace",
        (None, None) => "cluster",
    };
    RequestLabels {
        verb: verb.into(),
        group: rp.group,
        version: rp.version,
        resource: rp.resource,
        subresource: rp.subresource.unwrap_or_default(),
        scope: scope.into(),
    }
}

/// The resource a storage key belongs to (`/registry/pods/ns/name` → `pods`).
fn key_resource(key: &str) -> &str {
    let rest = key.strip_prefix("/registry/").unwrap_or(key);
    rest.split('/').next().unwrap_or_default()
}

/// A [`Store`] that times every request to the backend.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> MeteredStore {
        MeteredStore { inner, metrics }
    }

    async fn timed<T>(&self, op: &str, key: &str, call: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        self.metrics.observe_etcd(op, key, started);
        out
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn get(&self, key: &str) -> StoreResult<Option<KeyValue>> {
        self.timed("get", key, self.inner.get(key)).await
    }

    async fn create_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<std::time::Duration>,
    ) -> StoreResult<Revision> {
        let call = self.inner.create_with_ttl(key, value, ttl);
        self.timed("create", key, call).await
    }

    async fn update_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
        ttl: Option<std::time::Duration>,
    ) -> StoreResult<Revision> {
        let call = self.inner.update_with_ttl(key, value, expected, ttl);
        self.timed("update", key, call).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> StoreResult<KeyValue> {
        self.timed("delete", key, self.inner.delete(key, expected))
            .await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> StoreResult<ListResult> {
        self.timed("list", prefix, self.inner.list(prefix, opts))
            .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> StoreResult<EventStream> {
        self.inner.watch(prefix, after).await
    }

    async fn current_revision(&self) -> StoreResult<Revision> {
        self.timed("revision", "", self.inner.current_revision())
            .await
    }

    async fn compact(&self, revision: Revision) -> StoreResult<()> {
        self.timed("compact", "", self.inner.compact(revision))
            .await
    }

    async fn health(&self) -> StoreResult<()> {
        self.inner.health().await
    }

    async fn watch_with_progress(
        &self,
        prefix: &str,
        after: Revision,
    ) -> StoreResult<WatchItemStream> {
        self.inner.watch_with_progress(prefix, after).await
    }

    async fn summary(&self, prefix: &str) -> StoreResult<PrefixSummary> {
        self.timed("summary", prefix, self.inner.summary(prefix))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_labelled_as_kube_apiserver_does() {
        let get = |m: http::Method, path: &str, watch: bool| request_labels(&m, path, watch);
        let list = get(http::Method::GET, "/api/v1/namespaces/default/pods", false);
        assert_eq!(
            (list.verb.as_str(), list.scope.as_str()),
            ("LIST", "namespace")
        );
        assert_eq!(list.resource, "pods");
        let watch = get(http::Method::GET, "/apis/apps/v1/deployments", true);
        assert_eq!(
            (
                watch.verb.as_str(),
                watch.group.as_str(),
                watch.scope.as_str()
            ),
            ("WATCH", "apps", "cluster")
        );
        let status = get(
            http::Method::PATCH,
            "/api/v1/namespaces/a/pods/p/status",
            false,
        );
        assert_eq!(
            (
                status.verb.as_str(),
                status.subresource.as_str(),
                status.scope.as_str()
            ),
            ("PATCH", "status", "resource")
        );
        let other = get(http::Method::GET, "/healthz", false);
        assert_eq!((other.verb.as_str(), other.resource.as_str()), ("GET", ""));
        assert_eq!(key_resource("/registry/pods/default/x"), "pods");
    }

    #[test]
    fn counters_histograms_and_gauges_render_as_prometheus_text() {
        let m = Metrics::new();
        let labels = request_labels(&http::Method::POST, "/api/v1/namespaces/d/pods", false);
        m.observe(&labels, 201, Duration::from_millis(3));
        let guard = m.watch_opened("pods");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry).unwrap();
        assert!(text.contains("apiserver_request_total{verb=\"POST\",group=\"\",version=\"v1\",resource=\"pods\",subresource=\"\",scope=\"namespace\",code=\"201\"} 1"), "{text}");
        assert!(
            text.contains("apiserver_request_duration_seconds_count{verb=\"POST\""),
            "{text}"
        );
        assert!(
            text.contains("apiserver_longrunning_requests{resource=\"pods\"} 1"),
            "{text}"
        );
        drop(guard);
        text.clear();
        prometheus_client::encoding::text::encode(&mut text, &m.registry).unwrap();
        assert!(
            text.contains("apiserver_longrunning_requests{resource=\"pods\"} 0"),
            "{text}"
        );
    }
}
